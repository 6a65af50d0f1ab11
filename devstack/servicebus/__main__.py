"""`python -m devstack.servicebus`: run the broker alone until interrupted (usually via devstack.__main__)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from . import add_arguments, from_args


async def _serve(args: argparse.Namespace) -> None:
    async with from_args(args) as broker:
        for name, value in broker.env().items():
            print(f"{name}={value}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.servicebus", description=__doc__)
    add_arguments(parser)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
