"""What the simulator observed per connection, and event-based waiting on it (no polling in tests)."""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .faults import Fault

__all__ = ["ConnectionRecord", "Watchable"]

T = TypeVar("T")


class Watchable(Generic[T]):
    """Lets tasks wait until a predicate over `subject` holds; `changed()` re-checks only if someone waits."""

    def __init__(self, subject: T) -> None:
        self._subject = subject
        self._waiters: list[tuple[Callable[[T], bool], asyncio.Future[None]]] = []

    def changed(self) -> None:
        if not self._waiters:
            return
        still: list[tuple[Callable[[T], bool], asyncio.Future[None]]] = []
        for pred, fut in self._waiters:
            if fut.done():
                continue
            if pred(self._subject):
                fut.set_result(None)
            else:
                still.append((pred, fut))
        self._waiters = still

    async def wait_until(self, pred: Callable[[T], bool], *, within_s: float = 10.0) -> T:
        """Return `subject` once `pred(subject)` is true; `TimeoutError` after `within_s` seconds."""
        if pred(self._subject):
            return self._subject
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        async with asyncio.timeout(within_s):
            await fut
        return self._subject


@dataclass(eq=False)
class ConnectionRecord:
    """One connection attempt as the server saw it.

    `append_times` (clock seconds at arrival) and `append_bytes` (decoded bytes) are parallel arrays, one
    entry per `input_audio_buffer.append`. `sent` holds every server event (sink mode: only `{"type": ...}`),
    `received` every client event type (sink mode: not appends). `handshake_status`: 101 when upgraded,
    else the HTTP status sent.
    """

    index: int
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    key: str | None = None
    faults: tuple[Fault, ...] = ()
    handshake_status: int = 0
    accepted_at: float | None = None
    session: dict[str, Any] = field(default_factory=dict)
    append_times: array[float] = field(default_factory=lambda: array("d"))
    append_bytes: array[int] = field(default_factory=lambda: array("q"))
    received: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    watch: Watchable[ConnectionRecord] = field(init=False)

    def __post_init__(self) -> None:
        self.watch = Watchable(self)

    @property
    def append_count(self) -> int:
        return len(self.append_times)

    @property
    def bytes_received(self) -> int:
        return sum(self.append_bytes)

    def sent_types(self) -> list[str]:
        return [str(e.get("type")) for e in self.sent]

    def events(self, kind: str) -> list[dict[str, Any]]:
        """Sent events of one type, in order."""
        return [e for e in self.sent if e.get("type") == kind]

    async def wait_until(
        self, pred: Callable[[ConnectionRecord], bool], *, within_s: float = 10.0
    ) -> ConnectionRecord:
        """Wait (event-driven) until `pred(self)` holds, e.g. `lambda r: r.append_count >= 50`."""
        return await self.watch.wait_until(pred, within_s=within_s)

    async def wait_sent(self, kind: str, *, count: int = 1, within_s: float = 10.0) -> dict[str, Any]:
        """The `count`-th sent event of type `kind`, once it has been sent."""
        await self.wait_until(lambda r: len(r.events(kind)) >= count, within_s=within_s)
        return self.events(kind)[count - 1]
