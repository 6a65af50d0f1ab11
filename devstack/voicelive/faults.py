"""Fault injection: what one connection can be made to suffer, how it is chosen, the connect-rate limit.

Faults are value objects. A connection gets the faults queued with `FaultControl.next(...)` (first come,
first served), plus those named in its `fault=` query parameter (see `parse_fault`), plus `always(...)` ones.
"""

from __future__ import annotations

import collections
import enum
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "CloseAfter",
    "CloseKind",
    "ConnectRateLimiter",
    "ErrorEvent",
    "Fault",
    "FaultControl",
    "HoldResponse",
    "Refuse",
    "parse_fault",
]


class CloseKind(enum.Enum):
    NORMAL = "1000"
    """WebSocket close frame, code 1000."""
    ERROR = "1011"
    """WebSocket close frame, code 1011 (internal error)."""
    GOING_AWAY = "1001"
    DROP = "drop"
    """Abort the TCP connection without a close frame."""


@dataclass(frozen=True, kw_only=True)
class Refuse:
    """Answer the upgrade request with HTTP `status` (e.g. 401, 429, 500); `Retry-After` header if given."""

    status: int
    retry_after_s: int | None = None


@dataclass(frozen=True, kw_only=True)
class CloseAfter:
    """Close the connection `ms` milliseconds after the upgrade or on the `appends`-th append (first hit)."""

    kind: CloseKind = CloseKind.NORMAL
    ms: float | None = None
    appends: int | None = None

    def __post_init__(self) -> None:
        if self.ms is None and self.appends is None:
            raise ValueError("CloseAfter needs ms or appends")


@dataclass(frozen=True, kw_only=True)
class ErrorEvent:
    """Send one `error` event: after the `after_appends`-th append, or (None) instead of the next response.

    `code` rate_limit_exceeded → type invalid_request_error; server_error → type server_error (the service's
    exact shapes are unverified, research §8 Q2: we follow OpenAI realtime). `close` then closes the socket.
    """

    code: str = "rate_limit_exceeded"
    after_appends: int | None = None
    close: CloseKind | None = None

    @property
    def error_type(self) -> str:
        return "server_error" if self.code == "server_error" else "invalid_request_error"


@dataclass(frozen=True, kw_only=True)
class HoldResponse:
    """Stall every response: after `after_audio_deltas` audio/text deltas (None: after all output, right
    before `response.done`). Resume after `delay_ms`; None = never (until cancelled or barge-in)."""

    after_audio_deltas: int | None = None
    delay_ms: float | None = None


Fault = Refuse | CloseAfter | ErrorEvent | HoldResponse


def _kv(parts: Iterable[str]) -> dict[str, str]:
    return dict(p.split("=", 1) for p in parts if "=" in p)


def _maybe_int(value: str | None) -> int | None:
    return None if value is None else int(value)


def parse_fault(spec: str) -> Fault:
    """One fault from a query-parameter spec. Raises ValueError on an unknown spec.

    `refuse:429[:retry_after=2]` · `close:1000|1011|drop[:ms=N][:appends=N]` ·
    `error:rate_limit_exceeded|server_error[:appends=N][:close=1011]` · `hold[:deltas=N][:ms=N]`
    """
    kind, *rest = spec.split(":")
    opts = _kv(rest)
    if kind == "refuse" and rest:
        return Refuse(status=int(rest[0]), retry_after_s=_maybe_int(opts.get("retry_after")))
    if kind == "close" and rest:
        ms = opts.get("ms")
        return CloseAfter(
            kind=CloseKind(rest[0]),
            ms=None if ms is None else float(ms),
            appends=_maybe_int(opts.get("appends")),
        )
    if kind == "error":
        code = rest[0] if rest and "=" not in rest[0] else "rate_limit_exceeded"
        close = opts.get("close")
        return ErrorEvent(
            code=code,
            after_appends=_maybe_int(opts.get("appends")),
            close=None if close is None else CloseKind(close),
        )
    if kind == "hold":
        ms = opts.get("ms")
        return HoldResponse(
            after_audio_deltas=_maybe_int(opts.get("deltas")), delay_ms=None if ms is None else float(ms)
        )
    raise ValueError(f"unknown fault spec {spec!r}")


class FaultControl:
    """The test's handle for choosing faults (`sim.faults`)."""

    def __init__(self) -> None:
        self._queue: collections.deque[tuple[Fault, ...]] = collections.deque()
        self._always: tuple[Fault, ...] = ()

    def next(self, *faults: Fault, count: int = 1) -> None:
        """The next `count` connection attempts each get all of `faults`."""
        for _ in range(count):
            self._queue.append(faults)

    def always(self, *faults: Fault) -> None:
        """Every later connection gets `faults` (replaces earlier `always` faults; `always()` clears)."""
        self._always = faults

    def clear(self) -> None:
        self._queue.clear()
        self._always = ()

    def take(self, query: Mapping[str, str]) -> tuple[Fault, ...]:
        """Faults for a new connection attempt (uses one `next` entry); bad query specs raise ValueError."""
        queued = self._queue.popleft() if self._queue else ()
        from_query = tuple(parse_fault(s) for s in query.get("fault", "").split(";") if s)
        return queued + from_query + self._always


class ConnectRateLimiter:
    """New connections per key in a sliding 60 s window (the S0 quota: 30/min). `None` limit disables it."""

    def __init__(self, *, per_minute: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_minute
        self._clock = clock
        self._seen: dict[str, collections.deque[float]] = {}

    def admit(self, key: str) -> int | None:
        """None if admitted (and counted), else the seconds to wait (for `Retry-After`)."""
        if self._limit is None:
            return None
        now = self._clock()
        window = self._seen.setdefault(key, collections.deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= self._limit:
            return max(1, math.ceil(window[0] + 60.0 - now))
        window.append(now)
        return None
