"""`python -m devstack.voicelive [--port P]`: run the simulator standalone until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from .cli import add_arguments, from_args


async def _main(args: argparse.Namespace) -> None:
    async with from_args(args) as sim:
        for key, value in sim.env().items():
            print(f"{key}={value}", flush=True)
        await asyncio.Event().wait()  # until Ctrl-C cancels the run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.voicelive", description=__doc__)
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
