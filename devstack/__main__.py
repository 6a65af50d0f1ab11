"""`python -m devstack up|azurite|servicebus|voicelive`: run the local stand-ins until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from pathlib import Path

from devstack.stack import DevStack, write_env_file

STAND_IN_MODULES = {
    "azurite": "devstack.azurite",
    "servicebus": "devstack.servicebus",
    "voicelive": "devstack.voicelive",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every stand-in on free loopback ports")
    up.add_argument("--env-file", type=Path, default=Path(".env.devstack"), help="where to write settings")
    for name, module_name in STAND_IN_MODULES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        if not hasattr(module, "from_args"):  # a stand-in still being built
            continue
        module.add_arguments(sub.add_parser(name, help=f"start the {name} stand-in alone"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)

    if args.command == "up":
        stack = DevStack()
        return asyncio.run(_serve(stack, env_file=args.env_file))
    stand_in = importlib.import_module(STAND_IN_MODULES[args.command]).from_args(args)
    return asyncio.run(_serve(DevStack(stand_ins=[stand_in]), env_file=None))


async def _serve(stack: DevStack, *, env_file: Path | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with stack:
        env = stack.env()
        if env_file is not None:
            write_env_file(env_file, env)
            print(f"devstack up; settings written to {env_file}", flush=True)
        for key, value in sorted(env.items()):
            print(f"{key}={value}", flush=True)
        print("Ctrl-C to stop.", flush=True)
        await stop.wait()
    with contextlib.suppress(Exception):
        if env_file is not None:
            env_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
