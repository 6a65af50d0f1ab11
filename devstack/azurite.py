"""Azurite (npm, pinned in devstack/azurite_npm) as the local Blob Storage stand-in.

Started blob-only, in memory, with telemetry off and the API-version check skipped (the SDK is newer
than Azurite). It runs in its own process group so `aclose()` can stop the node server and anything it
spawned, even when it was started through a wrapper.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType

from devstack._process import discard, stop_group, stop_task

__all__ = ["DEV_ACCOUNT", "DEV_KEY", "Azurite", "AzuriteError", "add_arguments", "from_args"]

#: Azurite's well-known development account (public, documented by Microsoft).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
NPM_DIR = Path(__file__).with_name("azurite_npm")
MAIN_JS = NPM_DIR / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
_LISTENING = re.compile(rb"listens on https?://[^:]+:(\d+)")


class AzuriteError(RuntimeError):
    """Azurite is not installed or did not come up."""


class Azurite:
    """One Azurite blob server on loopback.

    Args:
        host: interface to bind; loopback only.
        port: TCP port; 0 lets Azurite pick a free one (read back from its start-up line).
        containers: containers created right after start (e.g. the input and results containers).
        start_timeout_s: how long to wait for the listening line before giving up.
    """

    name = "azurite"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        containers: tuple[str, ...] = (),
        start_timeout_s: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.containers = containers
        self._start_timeout_s = start_timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{DEV_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    def env(self) -> dict[str, str]:
        return {"STORAGE_CONNECTION_STRING": self.connection_string}

    async def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("Azurite already started")
        node = shutil.which("node")
        if node is None or not MAIN_JS.exists():
            raise AzuriteError(f"Azurite is not installed: run `npm ci --prefix {NPM_DIR}` (needs node)")
        self._proc = await asyncio.create_subprocess_exec(
            node, str(MAIN_JS),
            "--blobHost", self.host, "--blobPort", str(self.port),
            "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: aclose() kills the whole group
        )  # fmt: skip
        try:
            self.port = await asyncio.wait_for(self._read_port(), self._start_timeout_s)
        except BaseException:
            await self.aclose()
            raise
        assert self._proc.stdout is not None
        self._drain = asyncio.create_task(discard(self._proc.stdout), name="azurite-output")
        if self.containers:
            await self._create_containers()

    async def _read_port(self) -> int:
        assert self._proc is not None
        assert self._proc.stdout is not None
        seen = b""
        while line := await self._proc.stdout.readline():
            seen += line
            if match := _LISTENING.search(line):
                return int(match.group(1))
        raise AzuriteError(f"Azurite exited before listening: {seen.decode(errors='replace')[-500:]}")

    async def _create_containers(self) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob.aio import BlobServiceClient

        async with BlobServiceClient.from_connection_string(self.connection_string) as client:
            for name in self.containers:
                with contextlib.suppress(ResourceExistsError):
                    await client.create_container(name)

    async def aclose(self) -> None:
        """Stop the server's whole process group (SIGTERM, then SIGKILL after 5 s). Safe to call twice."""
        proc, self._proc = self._proc, None
        await stop_group(proc, sig=signal.SIGTERM, grace_s=5.0)
        drain, self._drain = self._drain, None
        await stop_task(drain)

    async def __aenter__(self) -> Azurite:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=10000, help="blob port (0 = any free port)")
    parser.add_argument(
        "--container", action="append", default=[], help="container to create at start (repeatable)"
    )


def from_args(args: argparse.Namespace) -> Azurite:
    return Azurite(port=args.port, containers=tuple(args.container))
