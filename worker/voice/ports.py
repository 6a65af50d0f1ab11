"""The Voice Live port (`VoiceConnector` / `VoiceConnection`) and an in-memory scripted fake of it.

The port is deliberately tiny: raw JSON-able client events out, raw server events (dicts) in. The real
adapter lives in `connection.py`; `FakeVoiceConnector` takes a *handler* (httpx `MockTransport` style) that
is called with every client event and answers through a `FakeServer`, so tests script the service without
sockets, patching or sleeps.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from worker.errors import Transient

__all__ = ["FakeServer", "FakeVoiceConnector", "ScriptHandler", "VoiceConnection", "VoiceConnector"]


class VoiceConnection(Protocol):
    """One open realtime session. `events()` ends when the socket ends (for any reason)."""

    async def send(self, event: Mapping[str, Any]) -> None:
        """Send one raw client event (a JSON-able mapping with a `type`)."""

    async def send_audio(self, frame: bytes) -> None:
        """Hot path: `input_audio_buffer.append` with `frame` (raw bytes in the session input format)."""

    def events(self) -> AsyncIterator[Mapping[str, Any]]:
        """Raw server events as dicts, in arrival order; iteration ends when the connection ends."""
        ...


class VoiceConnector(Protocol):
    """Opens sessions. Errors are already classified (`Transient`, `Throttled`, `VoiceLiveRejected`)."""

    def connect(self, *, model: str) -> AbstractAsyncContextManager[VoiceConnection]:
        """An async context manager yielding an open connection; exiting closes it."""
        ...


class FakeServer:
    """The server side of one fake connection: what the client sent, and a way to answer.

    `sent` holds every client event in order; audio appends are recorded as
    `{"type": "input_audio_buffer.append", "audio": <raw bytes>}` (not base64) to keep tests cheap.
    """

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.sent: list[dict[str, Any]] = []
        self.closed_by_client = False
        self._queue: asyncio.Queue[Mapping[str, Any] | None] = asyncio.Queue()
        self._ended = False

    def emit(self, event: Mapping[str, Any]) -> None:
        """Queue one server event for the client (ignored after `drop()`)."""
        if not self._ended:
            self._queue.put_nowait(dict(event))

    def drop(self) -> None:
        """End the event stream as a dropped socket would: `events()` just stops."""
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(None)

    def sent_types(self, *, audio: bool = False) -> list[str]:
        """Types of the client events so far, without appends unless `audio`."""
        return [e["type"] for e in self.sent if audio or e["type"] != "input_audio_buffer.append"]

    async def _next(self) -> Mapping[str, Any] | None:
        return await self._queue.get()


#: Called with every client event and the fake server; may be sync or async.
ScriptHandler = Callable[[Mapping[str, Any], FakeServer], Awaitable[None] | None]


class _FakeConnection:
    def __init__(self, server: FakeServer, handler: ScriptHandler) -> None:
        self._server = server
        self._handler = handler

    async def send(self, event: Mapping[str, Any]) -> None:
        if self._server._ended:
            raise Transient("Voice Live send failed: connection closed")
        self._server.sent.append(dict(event))
        await asyncio.sleep(0)  # a real socket write yields to the loop; so does the fake
        outcome = self._handler(event, self._server)
        if inspect.isawaitable(outcome):
            await outcome

    async def send_audio(self, frame: bytes) -> None:
        await self.send({"type": "input_audio_buffer.append", "audio": frame})

    async def events(self) -> AsyncIterator[Mapping[str, Any]]:
        while (event := await self._server._next()) is not None:
            yield event


class FakeVoiceConnector:
    """A `VoiceConnector` whose service is `handler`. `on_connect` runs once per connection (e.g. to emit
    `session.created`); `connect_error`, when set, is raised by `connect()` instead of opening.
    `servers` lists one `FakeServer` per connection, in order."""

    def __init__(
        self,
        handler: ScriptHandler,
        *,
        on_connect: Callable[[FakeServer], None] | None = None,
        connect_error: BaseException | None = None,
    ) -> None:
        self._handler = handler
        self._on_connect = on_connect
        self._connect_error = connect_error
        self.servers: list[FakeServer] = []

    @property
    def server(self) -> FakeServer:
        """The most recent connection's server."""
        return self.servers[-1]

    def connect(self, *, model: str) -> AbstractAsyncContextManager[VoiceConnection]:
        return self._open(model)

    @asynccontextmanager
    async def _open(self, model: str) -> AsyncIterator[VoiceConnection]:
        if self._connect_error is not None:
            raise self._connect_error
        server = FakeServer(model=model)
        self.servers.append(server)
        if self._on_connect is not None:
            self._on_connect(server)
        try:
            yield _FakeConnection(server, self._handler)
        finally:
            server.closed_by_client = True
            server.drop()
