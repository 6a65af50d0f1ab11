"""Wire pacing: sends fixed-size frames on an absolute monotonic schedule and measures how well it kept it."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, fields

__all__ = ["LagRecorder", "Paced", "PacingMode", "PacingStats", "Unpaced", "WirePacer"]

_log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Send = Callable[[bytes], Awaitable[None]]

#: Lag samples kept for percentiles; a 60-min input has 180k frames, so we keep a uniform reservoir.
DEFAULT_RESERVOIR = 4096


@dataclass(frozen=True, slots=True)
class Paced:
    """Send at `pace` × real time (1.0 = real time, 4.0 = 4× faster); `pace` must be finite and > 0."""

    pace: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pace) and self.pace > 0):
            raise ValueError(f"pace must be a finite number > 0, got {self.pace!r}")


@dataclass(frozen=True, slots=True)
class Unpaced:
    """Send as fast as the receiver accepts; no schedule, no lag."""


PacingMode = Paced | Unpaced


class LagRecorder:
    """Bounded lag bookkeeping: exact count and max, percentiles from a uniform reservoir of `capacity`.

    Percentiles are exact while fewer than `capacity` samples were recorded. The RNG is seeded so runs
    are reproducible.
    """

    def __init__(self, *, capacity: int = DEFAULT_RESERVOIR, seed: int = 0) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        self.capacity = capacity
        self.count = 0
        self.max_ms = 0.0
        self._samples: list[float] = []
        self._rng = random.Random(seed)

    def record(self, lag_ms: float) -> None:
        self.count += 1
        self.max_ms = max(self.max_ms, lag_ms)
        if len(self._samples) < self.capacity:
            self._samples.append(lag_ms)
            return
        slot = self._rng.randrange(self.count)
        if slot < self.capacity:
            self._samples[slot] = lag_ms

    def percentiles(self, *qs: float) -> tuple[float, ...]:
        """Nearest-rank percentiles (each q in [0, 100]) of the sampled lags; 0.0 when none recorded."""
        if not self._samples:
            return tuple(0.0 for _ in qs)
        ordered = sorted(self._samples)
        return tuple(ordered[min(max(1, math.ceil(q / 100.0 * len(ordered))), len(ordered)) - 1] for q in qs)

    def percentile(self, q: float) -> float:
        """One nearest-rank percentile; see `percentiles`."""
        return self.percentiles(q)[0]

    @property
    def samples(self) -> tuple[float, ...]:
        return tuple(self._samples)


@dataclass(frozen=True, slots=True)
class PacingStats:
    """How one stream was paced. Times in ms unless the name says `_s`.

    lag = actual send time − due time, per frame (0 when early or unpaced). `end_drift_ms` is the actual
    end − the ideal end (t0 + frames·frame_ms/pace). `rtf` = audio seconds / wall seconds.
    `lag_samples` is a bounded uniform sample of the per-frame lags.
    """

    frames: int
    input_frames: int
    audio_ms: float
    input_ms: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    end_drift_ms: float
    wall_s: float
    rtf: float
    lag_samples: tuple[float, ...] = ()

    def summary(self) -> dict[str, float | int]:
        """Everything but the samples, for manifests, metrics and logs."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "lag_samples"}


class WirePacer:
    """Streams frames so that frame n goes out at ``t0 + n·frame_ms/pace`` (one monotonic anchor).

    Args:
        mode: `Paced(pace)` or `Unpaced()`.
        frame_ms: duration of one input frame in ms (every frame given to `run` must be this long).
        trailing_silence_ms: silence streamed at pace after the last input frame, rounded up to whole frames.
        clock: monotonic clock in seconds (inject a fake in tests).
        sleep: coroutine that sleeps for the given seconds (inject a fake in tests).

    It sleeps until each absolute due time; when it wakes late (slow decoder, busy loop, slow `send`) it
    sends the overdue frames at once and records the lag, so lateness never accumulates into drift.
    The live properties (`t0`, `frames_sent`, `input_ms_sent`, `audio_ms_sent`, `input_ms_at`) may be read
    from other tasks while `run` is running. A pacer runs once; `run` raises `RuntimeError` if reused.
    """

    def __init__(
        self,
        mode: PacingMode,
        *,
        frame_ms: int = 20,
        trailing_silence_ms: int = 0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        lag_reservoir: int = DEFAULT_RESERVOIR,
    ) -> None:
        if frame_ms <= 0:
            raise ValueError(f"frame_ms must be > 0, got {frame_ms}")
        if trailing_silence_ms < 0:
            raise ValueError(f"trailing_silence_ms must be >= 0, got {trailing_silence_ms}")
        self.mode = mode
        self.frame_ms = frame_ms
        self.trailing_silence_ms = trailing_silence_ms
        self._clock = clock
        self._sleep = sleep
        self._lags = LagRecorder(capacity=lag_reservoir)
        self._period_s = frame_ms / 1000.0 / mode.pace if isinstance(mode, Paced) else 0.0
        self.t0: float | None = None
        self.frames_sent = 0
        self.input_frames_sent = 0
        self.finished = False

    def __repr__(self) -> str:
        return (
            f"<WirePacer {self.mode} frames_sent={self.frames_sent} input_ms_sent={self.input_ms_sent:.0f}>"
        )

    @property
    def pace(self) -> float | None:
        """The pace factor, or None when unpaced."""
        return self.mode.pace if isinstance(self.mode, Paced) else None

    @property
    def input_ms_sent(self) -> float:
        """Milliseconds of input audio sent so far (trailing silence excluded)."""
        return float(self.input_frames_sent * self.frame_ms)

    @property
    def audio_ms_sent(self) -> float:
        """Milliseconds of audio sent so far, trailing silence included."""
        return float(self.frames_sent * self.frame_ms)

    def input_ms_at(self, t: float) -> float:
        """Position on the input-audio clock (ms) at monotonic time `t`.

        Paced: ``(t − t0)·pace·1000``, clamped to ``[0, audio_ms_sent]`` (trailing silence counts, as it is
        part of the timeline the service hears). Unpaced there is no schedule, so it is `audio_ms_sent`.
        Before `run` starts it is 0.
        """
        if self.t0 is None:
            return 0.0
        if not isinstance(self.mode, Paced):
            return self.audio_ms_sent
        return min(max((t - self.t0) * self.mode.pace * 1000.0, 0.0), self.audio_ms_sent)

    async def run(self, frames: AsyncIterator[bytes], send: Send, *, silence_frame: bytes) -> PacingStats:
        """Send every frame of `frames`, then the trailing silence (`silence_frame` repeated), and report.

        Exceptions from `frames` or `send` propagate unchanged; cancellation stops at the next await.
        """
        if self.t0 is not None:
            raise RuntimeError("WirePacer.run may only be called once")
        self.t0 = t0 = self._clock()
        async for frame in frames:
            await self._send_due(frame, send)
            self.input_frames_sent += 1
        for _ in range(math.ceil(self.trailing_silence_ms / self.frame_ms)):
            await self._send_due(silence_frame, send)
        ideal_end = t0 + self.frames_sent * self._period_s
        now = self._clock()
        if now < ideal_end:
            # Let the last frame's audio elapse so wall time and rtf describe the whole stream.
            await self._sleep(ideal_end - now)
            now = self._clock()
        self.finished = True
        return self._stats(now, ideal_end)

    async def _send_due(self, frame: bytes, send: Send) -> None:
        if self._period_s:
            assert self.t0 is not None
            due = self.t0 + self.frames_sent * self._period_s
            now = self._clock()
            if now < due:
                await self._sleep(due - now)
                now = self._clock()
            self._lags.record(max(now - due, 0.0) * 1000.0)
        await send(frame)
        self.frames_sent += 1

    def _stats(self, end: float, ideal_end: float) -> PacingStats:
        assert self.t0 is not None
        wall_s = end - self.t0
        audio_ms = self.audio_ms_sent
        p50, p99 = self._lags.percentiles(50, 99)
        stats = PacingStats(
            frames=self.frames_sent,
            input_frames=self.input_frames_sent,
            audio_ms=audio_ms,
            input_ms=self.input_ms_sent,
            lag_p50_ms=p50,
            lag_p99_ms=p99,
            lag_max_ms=self._lags.max_ms,
            end_drift_ms=(end - ideal_end) * 1000.0 if self._period_s else 0.0,
            wall_s=wall_s,
            rtf=audio_ms / 1000.0 / wall_s if wall_s > 0 else math.inf,
            lag_samples=self._lags.samples,
        )
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("paced %d frames: %s", stats.frames, stats.summary())
        return stats
