"""Start every local stand-in on free loopback ports and describe them as worker settings."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from devstack._standin import StandIn
from devstack.azurite import DEV_ACCOUNT, Azurite

__all__ = ["INPUT_CONTAINER", "RESULTS_CONTAINER", "DevStack", "write_env_file"]

log = logging.getLogger(__name__)

INPUT_CONTAINER = "audio-in"
RESULTS_CONTAINER = "results"
#: Stand-ins that join the stack when their module exists (built as separate devstack packages).
OPTIONAL_STAND_INS = ("devstack.servicebus", "devstack.voicelive")


class DevStack:
    """Azurite plus the Service Bus broker and Voice Live simulator, each on a free loopback port.

    `start()` starts them in order and stops whatever started if a later one fails; `aclose()` stops
    them in reverse order and is safe to call twice. `env()` is the settings a worker needs.
    """

    def __init__(self, *, stand_ins: list[StandIn] | None = None) -> None:
        self.stand_ins = stand_ins if stand_ins is not None else default_stand_ins()
        self._started: list[StandIn] = []

    async def start(self) -> None:
        try:
            for stand_in in self.stand_ins:
                await stand_in.start()
                self._started.append(stand_in)
                log.info("devstack: %s up", stand_in.name)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        while self._started:
            stand_in = self._started.pop()
            try:
                await stand_in.aclose()
            except Exception:
                log.exception("devstack: stopping %s failed", stand_in.name)

    def env(self) -> dict[str, str]:
        env = {
            "ALLOWED_INPUT_CONTAINERS": f"{DEV_ACCOUNT}/{INPUT_CONTAINER}",
            "RESULTS_CONTAINER": RESULTS_CONTAINER,
        }
        for stand_in in self._started:
            env.update(stand_in.env())
        return env

    def get(self, name: str) -> StandIn | None:
        return next((s for s in self._started if s.name == name), None)

    async def __aenter__(self) -> DevStack:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def default_stand_ins() -> list[StandIn]:
    stand_ins: list[StandIn] = [Azurite(containers=(INPUT_CONTAINER, RESULTS_CONTAINER))]
    for module_name in OPTIONAL_STAND_INS:
        with contextlib.suppress(ModuleNotFoundError):
            module = importlib.import_module(module_name)
            if not hasattr(module, "from_args"):  # a stand-in still being built
                continue
            stand_ins.append(module.from_args(_defaults(module)))
    return stand_ins


def _defaults(module: object) -> object:
    import argparse

    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    args = parser.parse_args([])
    if hasattr(args, "port"):
        args.port = 0
    return args


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """Write settings as a dotenv file (`KEY=value` lines) readable by the worker and by `source`."""
    lines = ["# Written by `python -m devstack up`; valid while it runs."]
    lines += [f"{key}='{value}'" for key, value in sorted(env.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
