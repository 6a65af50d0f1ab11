"""Thread/asyncio hand-offs for the decoder: a blocking reader over async chunks, and a bounded outbox."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

__all__ = ["ChunkReader", "Closed", "Outbox"]

T = TypeVar("T")


class Closed(Exception):
    """Raised inside the decoder thread when the consumer closed the stream; the thread just exits."""


async def _pull(chunks: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return None


class ChunkReader:
    """A blocking, non-seekable `read(n)` over an async chunk iterator, for use in ONE worker thread.

    Only one chunk is in flight at a time (memory stays bounded). `peek(n)` buffers up to `n` leading bytes
    that later `read`s return again. An exception raised by the iterator is kept in `error` (so the decoder
    can surface it instead of a decoding error) and re-raised. `close()` (from the loop thread) cancels the
    pending pull; the blocked reader then raises `Closed`. `on_progress` is called with each new chunk.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        loop: asyncio.AbstractEventLoop,
        on_progress: Callable[[], None],
    ) -> None:
        self._chunks = chunks
        self._loop = loop
        self._on_progress = on_progress
        self._buf = b""
        self._pos = 0
        self._lock = threading.Lock()
        self._pending: concurrent.futures.Future[bytes | None] | None = None
        self._closed = False
        self._eof = False
        self.error: BaseException | None = None
        self.bytes_read = 0

    def _next_chunk(self) -> bytes | None:
        while not self._eof:
            with self._lock:
                if self._closed:
                    raise Closed
                fut = self._pending = asyncio.run_coroutine_threadsafe(_pull(self._chunks), self._loop)
            try:
                chunk = fut.result()
            except concurrent.futures.CancelledError as exc:
                raise Closed from exc
            except Exception as exc:
                self.error = exc
                raise
            if chunk is None:
                self._eof = True
            elif chunk:
                self.bytes_read += len(chunk)
                self._on_progress()
                return chunk
        return None

    @property
    def buffered(self) -> int:
        """Bytes a `read` can return without waiting for the next chunk."""
        return len(self._buf) - self._pos

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (all of the current chunk if `n` < 0); b"" at end of input."""
        if self._pos >= len(self._buf):
            chunk = self._next_chunk()
            if chunk is None:
                return b""
            self._buf, self._pos = chunk, 0
        end = len(self._buf) if n < 0 else self._pos + n
        out = self._buf[self._pos : end]
        self._pos += len(out)
        return out

    def peek(self, n: int) -> bytes:
        """The next `n` bytes (fewer at end of input) without consuming them."""
        while len(self._buf) - self._pos < n:
            chunk = self._next_chunk()
            if chunk is None:
                break
            self._buf, self._pos = self._buf[self._pos :] + chunk, 0
        return self._buf[self._pos : self._pos + n]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._pending is not None:
                self._pending.cancel()


class Outbox(Generic[T]):
    """A bounded hand-off from one producer thread to one asyncio consumer.

    The producer blocks in `put` while `capacity` units (the caller's measure, e.g. bytes) are queued;
    `get` awaits the next item, giving up after `idle_timeout_s` without any `progress()` signal.
    `close()` wakes a blocked producer, which then raises `Closed`. Create it on the loop thread.
    """

    def __init__(self, *, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        self._loop = loop
        self._capacity = capacity
        self._cond = threading.Condition()
        self._items: deque[tuple[T, int]] = deque()
        self._size = 0
        self._closed = False
        self._ready = asyncio.Event()
        self._consumer_waiting = False  # only then does `put` pay for a cross-thread wake-up
        self.last_progress = time.monotonic()

    def progress(self) -> None:
        """Note that work happened (input arrived, output produced); resets the idle timer."""
        self.last_progress = time.monotonic()

    def put(self, item: T, size: int = 0) -> None:
        with self._cond:
            while self._size >= self._capacity and not self._closed:
                self._cond.wait()
            if self._closed:
                raise Closed
            self._items.append((item, size))
            self._size += size
            wake, self._consumer_waiting = self._consumer_waiting, False
        self.progress()
        if not wake:
            if self._loop.is_closed():  # nobody will read this
                raise Closed
            return
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError as exc:  # the loop is gone: nobody will read this
            raise Closed from exc

    async def get(self, *, idle_timeout_s: float) -> T:
        """The next item; raises `TimeoutError` after `idle_timeout_s` with no progress at all."""
        while True:
            with self._cond:
                if self._items:
                    item, size = self._items.popleft()
                    self._size -= size
                    self._cond.notify()
                    # A producer that sat blocked on a full outbox was not idle: its clock starts now.
                    self.progress()
                    return item
                self._ready.clear()
                self._consumer_waiting = True
            remaining = self.last_progress + idle_timeout_s - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            try:
                await asyncio.wait_for(self._ready.wait(), remaining)
            except TimeoutError:
                continue

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()
