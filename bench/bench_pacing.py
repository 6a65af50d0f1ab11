"""Benchmark: WirePacer (absolute deadlines) vs the naive sleep-per-frame pacer — end drift and send lag.

Runs, in one process and one after the other, 1 and 100 concurrent pacers of each kind streaming
N seconds of 20 ms frames at pace 1.0 into a socketpair (or a no-op send). Lag is measured for both kinds
against the same absolute schedule (t0 + n·20 ms), so the numbers compare directly. Measures; asserts nothing.

    uv run python bench/bench_pacing.py --quick      # 60 s of audio per scenario (about 4 minutes)
    uv run python bench/bench_pacing.py              # 600 s of audio per scenario
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from worker.pacing import LagRecorder, Paced, PacingStats, WirePacer

FRAME_MS = 20
FRAME = b"\x00" * 960  # 20 ms of pcm16 24 kHz
RESULTS = Path(__file__).parent / "results" / "pacing.json"

Send = Callable[[bytes], Awaitable[None]]


class SleepPerFramePacer:
    """The naive baseline (as in the anchor harness): send, then sleep(frame_ms). Drifts by design."""

    def __init__(self, *, frame_ms: int = FRAME_MS) -> None:
        self.frame_s = frame_ms / 1000.0
        self.lags = LagRecorder()

    async def run(self, frames: AsyncIterator[bytes], send: Send) -> tuple[float, float]:
        """Returns (end drift ms, wall s), lag measured against the ideal absolute schedule."""
        t0 = time.monotonic()
        n = 0
        async for frame in frames:
            self.lags.record(max(time.monotonic() - (t0 + n * self.frame_s), 0.0) * 1000.0)
            await send(frame)
            n += 1
            await asyncio.sleep(self.frame_s)
        end = time.monotonic()
        return (end - (t0 + n * self.frame_s)) * 1000.0, end - t0


async def frames(n: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield FRAME


class SocketSink:
    """One socketpair: the pacer writes to one end, a drain task reads the other."""

    def __init__(self) -> None:
        self.a, self.b = socket.socketpair()
        self.a.setblocking(False)
        self.b.setblocking(False)
        self.received = 0
        self._drain: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SocketSink:
        self._drain = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._drain is not None
        self._drain.cancel()
        await asyncio.wait([self._drain])  # the drain task ends cancelled; nothing to re-raise
        self.a.close()
        self.b.close()

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.a, data)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.received += len(await loop.sock_recv(self.b, 65536))


async def noop_send(data: bytes) -> None:
    return None


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


async def scenario(kind: str, concurrency: int, seconds: float, sink: str) -> dict[str, object]:
    n = int(seconds * 1000 / FRAME_MS)
    sinks = [SocketSink() for _ in range(concurrency)] if sink == "socket" else []
    for s in sinks:
        await s.__aenter__()
    sends: list[Send] = [s.send for s in sinks] if sinks else [noop_send] * concurrency
    cpu0, wall0 = time.process_time(), time.monotonic()
    lags: list[float] = []
    lag_max = 0.0
    drifts: list[float] = []
    if kind == "WirePacer":
        pacers = [WirePacer(Paced(1.0), frame_ms=FRAME_MS) for _ in range(concurrency)]
        stats: list[PacingStats] = await asyncio.gather(
            *(p.run(frames(n), send, silence_frame=FRAME) for p, send in zip(pacers, sends, strict=True))
        )
        for st in stats:
            lags.extend(st.lag_samples)
            lag_max = max(lag_max, st.lag_max_ms)
            drifts.append(st.end_drift_ms)
    else:
        naive = [SleepPerFramePacer() for _ in range(concurrency)]
        results = await asyncio.gather(
            *(p.run(frames(n), send) for p, send in zip(naive, sends, strict=True))
        )
        for p, (drift, _) in zip(naive, results, strict=True):
            lags.extend(p.lags.samples)
            lag_max = max(lag_max, p.lags.max_ms)
            drifts.append(drift)
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    for s in sinks:
        await s.__aexit__()
    return {
        "pacer": kind,
        "concurrency": concurrency,
        "audio_s": seconds,
        "frames_per_pacer": n,
        "lag_p50_ms": round(_pct(lags, 50), 3),
        "lag_p99_ms": round(_pct(lags, 99), 3),
        "lag_max_ms": round(lag_max, 3),
        "end_drift_ms_mean": round(statistics.fmean(drifts), 3),
        "end_drift_ms_max": round(max(drifts), 3),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cpu_per_pacer_pct": round(100 * cpu / wall / concurrency, 4),
    }


async def main(seconds: float, sink: str, concurrencies: list[int]) -> dict[str, object]:
    rows = []
    for concurrency in concurrencies:
        for kind in ("WirePacer", "SleepPerFramePacer"):
            row = await scenario(kind, concurrency, seconds, sink)
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    return {
        "benchmark": "pacing",
        "audio_s_per_pacer": seconds,
        "pace": 1.0,
        "frame_ms": FRAME_MS,
        "send": sink,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "note": "lag = actual send − due (t0 + n·20 ms); end drift = actual end − ideal end; lags pooled "
        "from each pacer's bounded reservoir",
        "results": rows,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 s of audio instead of 600 s")
    parser.add_argument("--seconds", type=float, help="override the audio length per pacer")
    parser.add_argument("--send", choices=["socket", "noop"], default="socket")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    secs = args.seconds or (60.0 if args.quick else 600.0)
    report = asyncio.run(main(secs, args.send, args.concurrency))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["results"], indent=2))
