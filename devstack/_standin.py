"""The tiny contract every local stand-in (broker, simulator, Azurite) follows, so `stack.py` can run them."""

from __future__ import annotations

import argparse
from typing import Protocol, runtime_checkable

__all__ = ["StandIn", "StandInFactory"]


@runtime_checkable
class StandIn(Protocol):
    """A local server on loopback. `start()` binds (port 0 = pick a free one); `aclose()` stops it fully."""

    name: str

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def env(self) -> dict[str, str]:
        """Settings (DESIGN.md §14 names) a worker needs to reach this stand-in. Valid after `start()`."""
        ...


class StandInFactory(Protocol):
    """What each stand-in module exposes for `python -m devstack <name>` and `python -m devstack up`."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def from_args(self, args: argparse.Namespace) -> StandIn: ...
