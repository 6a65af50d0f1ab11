"""Admission control for new Voice Live sessions: a token bucket per replica, and a pause on throttling.

The service admits a limited number of new sessions per minute per resource; each replica gets its
share (`VOICELIVE_CONNECTS_PER_MINUTE`). A 429 with Retry-After pauses every new connect of this replica.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from worker.errors import Throttled
from worker.voice.ports import VoiceConnection, VoiceConnector

__all__ = ["AdmittedConnector", "TokenBucket"]


class TokenBucket:
    """`rate_per_minute` tokens a minute, bursts up to `burst` (default: the per-minute rate).

    `acquire()` waits (fairly, FIFO) for a token; `pause(s)` stops issuing tokens for `s` seconds.
    Clock and sleep are injectable for tests.
    """

    def __init__(
        self,
        rate_per_minute: float,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError(f"rate_per_minute must be > 0, got {rate_per_minute}")
        self._rate_s = rate_per_minute / 60.0
        self._capacity = float(burst if burst is not None else max(1, int(rate_per_minute)))
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.granted = 0

    def _refill(self, now: float) -> None:
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate_s)
        self._updated = now

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: one waiter at a time takes the next token
            while True:
                now = self._clock()
                self._refill(now)
                if now < self._paused_until:
                    await self._sleep(self._paused_until - now)
                    continue
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    self.granted += 1
                    return
                await self._sleep((1.0 - self._tokens) / self._rate_s)

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)


class AdmittedConnector:
    """A `VoiceConnector` that takes a token before each connect and pauses the bucket on `Throttled`."""

    def __init__(self, inner: VoiceConnector, bucket: TokenBucket, *, default_pause_s: float = 10.0) -> None:
        self._inner = inner
        self._bucket = bucket
        self._default_pause_s = default_pause_s

    def connect(self, *, model: str) -> AbstractAsyncContextManager[VoiceConnection]:
        return self._connect(model)

    @asynccontextmanager
    async def _connect(self, model: str) -> AsyncIterator[VoiceConnection]:
        await self._bucket.acquire()
        try:
            async with self._inner.connect(model=model) as conn:
                yield conn
        except Throttled as exc:
            self._bucket.pause(exc.retry_after_s or self._default_pause_s)
            raise
