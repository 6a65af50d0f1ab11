"""A stand-in in its own process (`python -m devstack NAME --port 0 ...`): its CPU work (e.g. the
simulator's speech recogniser) cannot stall the caller's event loop, just as a remote service could not."""

from __future__ import annotations

import asyncio
import signal
import sys
from types import TracebackType

from devstack._process import discard, stop_group, stop_task

__all__ = ["RemoteStandIn"]


class RemoteStandIn:
    """Runs `python -m devstack <name> --port 0 <args>` and reads the settings it prints.

    Args:
        name: the stand-in (`servicebus`, `voicelive`, `azurite`).
        args: extra command-line options for it.
        start_timeout_s: how long to wait for its "Ctrl-C to stop." line.
    """

    def __init__(self, name: str, *args: str, start_timeout_s: float = 30.0) -> None:
        self.name = name
        self._args = args
        self._start_timeout_s = start_timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._env: dict[str, str] = {}
        self._drain: asyncio.Task[None] | None = None

    def env(self) -> dict[str, str]:
        return dict(self._env)

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devstack", self.name, "--port", "0", *self._args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            await asyncio.wait_for(self._read_settings(), self._start_timeout_s)
        except BaseException:
            await self.aclose()
            raise
        assert self._proc.stdout is not None
        self._drain = asyncio.create_task(discard(self._proc.stdout), name=f"{self.name}-output")

    async def _read_settings(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while line := (await self._proc.stdout.readline()).decode():
            if line.startswith("Ctrl-C to stop"):
                return
            key, sep, value = line.rstrip("\n").partition("=")
            if sep and key.isupper():
                self._env[key] = value
        raise RuntimeError(f"devstack {self.name} exited before it was up")

    async def aclose(self) -> None:
        """SIGINT (a clean stop), then SIGKILL to the whole group after 10 s. Safe to call twice."""
        proc, self._proc = self._proc, None
        await stop_group(proc, sig=signal.SIGINT, grace_s=10.0)
        drain, self._drain = self._drain, None
        await stop_task(drain)

    async def __aenter__(self) -> RemoteStandIn:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
