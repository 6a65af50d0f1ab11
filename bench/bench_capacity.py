"""Benchmark: live sessions one pinned worker core holds at pace 1.0 (lag p99 ≤ 10 ms) vs sleep-per-frame.

Two processes on loopback: this one runs the Voice Live simulator in sink mode pinned to CPU 0; for each
point of the sweep a worker child pinned to CPU 1 opens N sessions with the real `SdkVoiceConnector`
and drives each through the product's `run_session` (session.update → WirePacer → `send_audio` per
frame → drain → close) with a synthetic frame source (a pre-made pcm16 frame of `frame_ms`; no decoder).
All N connect first and wait at a gate; then each starts after a random offset in [0, frame_ms) (real
jobs start at random phases). `--frame-ms` (default 20) sets the frame of the main sweep; each
`--frame-sweep MS N...` adds a wirepacer sweep at a larger frame — the job option
`streaming.frame_ms` ∈ {10, 20, 40, 60, 100}, i.e. fewer, larger append messages for the same audio.
Lag is always per frame against that frame's own schedule (t0 + n·frame_ms). With `--repeat-edge` the
largest N that held and the smallest N that failed in each sweep are run once more, and a frame size's
capacity is the largest N at which every run held. Kinds:
  wirepacer  the product path as shipped;
  naive      the baseline: the same run_session and SDK connection, but the pacer sends and then
             sleeps frame_ms (the sample-code approach); lag is measured against the same absolute schedule;
  fast       wirepacer with a candidate hot-path speedup (pre-built append JSON → aiohttp `send_str`);
  gcfreeze   experiment: wirepacer after `gc.freeze()` in the worker child once set up (imports, SDK
             connector built, before connecting), so full collections skip those objects while streaming;
  gcfreeze_gate  experiment: `gc.freeze()` once all N sessions are connected (just before the gate), so
             full collections also skip the connections' objects (an upper bound: a real worker could
             not freeze per job without keeping finished sessions' garbage forever);
  bare       connect + session.update only, idle (what the SDK connection alone costs, for memory).
Per point: pooled per-frame send lag (all frames and steady state = after the first second), end drift,
worker CPU % of its core over the steady window and per session, RSS growth per session, and the arrival
offsets the simulator saw. A last run at 300 sessions is sampled by py-spy (`uvx py-spy`, attached in the
steady state; skip with `--no-profile`) to show where the worker's CPU goes.

    uv run python -m bench.bench_capacity [--quick] [--sessions 25 50 ...] [--seconds 60] [--no-profile]
        [--frame-ms 20] [--frame-sweep 40 300 400 600] [--frame-sweep 100 600 1000] [--repeat-edge]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from azure.core.credentials import AzureKeyCredential

from bench import RESULTS, pct, peak_rss_mib, pin_to, rss_mib, write_result
from worker.audio import AudioFormat
from worker.jobs import Job
from worker.pacing import Paced, WirePacer
from worker.voice.connection import SdkVoiceConnector, translate_error
from worker.voice.ports import VoiceConnection
from worker.voice.session import SessionOptions, run_session

ROOT = Path(__file__).resolve().parents[1]
FRAME_MS = 20  # the product default; `--frame-ms` changes the main sweep's frame
FRAME_CHOICES = (10, 20, 40, 60, 100)  # what the job contract allows (`streaming.frame_ms`)
FORMAT = AudioFormat("pcm16", 24000)
LAG_LIMIT_MS = 10.0
STEADY_AFTER_S = 1.0  # "steady state" = frames after the first second of each session
WARMUP_S = 2.0
FULL_SWEEP = [25, 50, 100, 200, 300, 400, 600, 800]
QUICK_SWEEP = [200, 300, 400]
QUICK_FRAME_SWEEPS = [[40, 600]]
FULL_FRAME_SWEEPS = [[40, 400, 600, 800, 1000, 1200], [100, 1000, 1500, 2000]]
#: The core the worker child is pinned to, set by `run` (None: the child picks its own with `pin_to(1)`).
_PINNING: dict[str, int | None] = {"worker_cpu": None}
KINDS = ("wirepacer", "naive", "fast", "gcfreeze", "gcfreeze_gate", "bare")


def _steady_after(frame_ms: int) -> int:
    return round(STEADY_AFTER_S * 1000 / frame_ms)


def _frame(frame_ms: int) -> bytes:
    """A 440 Hz tone at 24 kHz pcm16 (content does not change the cost; zeros would not look real)."""
    n = FORMAT.frame_bytes(frame_ms) // 2
    samples = (int(8000 * math.sin(2 * math.pi * 440 * i / 24000)) for i in range(n))
    return b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


# -- worker side (child process, CPU 1) ------------------------------------------------------------------


class SleepPerFramePacer(WirePacer):
    """Baseline: send, then sleep(frame_ms). Lag is recorded against the same absolute schedule."""

    async def _send_due(self, frame: bytes, send: Any) -> None:
        assert self.t0 is not None
        due = self.t0 + self.frames_sent * self._period_s
        self._lags.record(max(self._clock() - due, 0.0) * 1000.0)
        await send(frame)
        self.frames_sent += 1
        await self._sleep(self._period_s)


class _FastAppend:
    """Candidate speedup: the append JSON is built by string concatenation (same bytes as the SDK's
    `json.dumps` of `{"audio":..., "type":...}` — base64 needs no escaping) and written with the SDK
    connection's aiohttp `send_str`, skipping the dict, `Mapping` checks and a `JSONEncoder` per frame."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._ws = conn._conn._connection  # SDK VoiceLiveConnection → aiohttp ClientWebSocketResponse

    async def send(self, event: Mapping[str, Any]) -> None:
        await self._conn.send(event)

    async def send_audio(self, frame: bytes) -> None:
        data = (
            '{"audio":"' + base64.b64encode(frame).decode("ascii") + '","type":"input_audio_buffer.append"}'
        )
        try:
            await self._ws.send_str(data)
        except (aiohttp.ClientError, RuntimeError) as exc:
            raise translate_error(exc) from exc

    def events(self) -> AsyncIterator[Mapping[str, Any]]:
        events: AsyncIterator[Mapping[str, Any]] = self._conn.events()
        return events


class _GatedConnector:
    """Wraps the real connector: each connection waits at a gate until all N are open, then starts after
    a random offset in [0, frame) so sessions are spread over the frame cycle like independent jobs."""

    def __init__(
        self, inner: SdkVoiceConnector, *, sessions: int, fast: bool, frame_s: float, seed: int = 1
    ) -> None:
        self.inner = inner
        self.sessions = sessions
        self.fast = fast
        self.frame_s = frame_s
        self.gate = asyncio.Event()
        self.all_connected = asyncio.Event()
        self.connected = 0
        self._rng = random.Random(seed)

    def connect(self, *, model: str) -> AbstractAsyncContextManager[VoiceConnection]:
        return self._open(model)

    @asynccontextmanager
    async def _open(self, model: str) -> AsyncIterator[VoiceConnection]:
        async with self.inner.connect(model=model) as conn:
            self.connected += 1
            if self.connected >= self.sessions:
                self.all_connected.set()
            await self.gate.wait()
            await asyncio.sleep(self._rng.uniform(0.0, self.frame_s))
            yield _FastAppend(conn) if self.fast else conn


async def _frames(n: int, frame: bytes) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield frame


def _job(i: int, frame_ms: int) -> Job:
    return Job.model_validate(
        {
            "version": 1,
            "job_id": f"capacity-{i:04d}",
            "input": {"url": "https://bench.blob.core.windows.net/in/synthetic.wav"},
            "streaming": {"pace": 1.0, "frame_ms": frame_ms, "trailing_silence_ms": 0},
        }
    )


async def _bare(connector: SdkVoiceConnector, n: int, hold_s: float) -> dict[str, Any]:
    rss0 = rss_mib()
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(n):
            conn = await stack.enter_async_context(connector.connect(model="gpt-realtime"))
            await conn.send({"type": "session.update", "session": {"turn_detection": None}})
        await asyncio.sleep(hold_s)
        rss_n = rss_mib()
    return {
        "kind": "bare",
        "sessions": n,
        "rss0_mib": round(rss0, 1),
        "rss_end_mib": round(rss_n, 1),
        "rss_per_session_mib": round((rss_n - rss0) / n, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def _core_ticks() -> tuple[int, int]:
    """(busy, steal) clock ticks of the one CPU this process is pinned to, all processes (/proc/stat)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) != 1:
        return (0, 0)
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpus[0]} "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, line.split()[1:9])
            return (user + nice + system + irq + softirq + steal, steal)
    return (0, 0)


def _nivcsw() -> int:
    """Times this process was preempted (involuntary context switches): someone else wanted its core."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


class _GcWatch:
    """Collections per generation and their pause times while the sessions run (a stop-the-world cost)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses[info["generation"]].append((time.perf_counter() - self._t) * 1000.0)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            f"gen{g}": {
                "count": len(p),
                "max_ms": round(max(p, default=0.0), 2),
                "total_ms": round(sum(p), 1),
            }
            for g, p in self.pauses.items()
        }


async def _worker(port: int, kind: str, n: int, seconds: float, frame_ms: int) -> dict[str, Any]:
    inner = SdkVoiceConnector(
        endpoint=f"http://127.0.0.1:{port}",
        credential=AzureKeyCredential("devstack-key"),
        connect_timeout_s=600,
    )
    if kind == "bare":
        return await _bare(inner, n, hold_s=min(seconds, 5.0))
    rss0 = rss_mib()
    connector = _GatedConnector(inner, sessions=n, fast=kind == "fast", frame_s=frame_ms / 1000.0)
    frame, frames = _frame(frame_ms), round(seconds * 1000 / frame_ms)
    options = SessionOptions(connect_timeout_s=600, drain_window_s=0.2)
    window: dict[str, float] = {}

    async def one(i: int, workdir: Path) -> Any:
        pacer_type = SleepPerFramePacer if kind == "naive" else WirePacer
        pacer = pacer_type(Paced(1.0), frame_ms=frame_ms)
        return await run_session(
            _job(i, frame_ms), _frames(frames, frame), connector=connector, tools=[], audio_format=FORMAT,
            pacer=pacer, workdir=workdir, model_default="gpt-realtime", options=options,
        )  # fmt: skip

    async def monitor() -> None:
        await connector.all_connected.wait()
        window["connect_s"] = time.monotonic() - t_start
        window["rss_connected_mib"] = rss_mib()
        if kind == "gcfreeze_gate":
            gc.freeze()  # experiment: also the N connections' objects leave the collector's generations
        connector.gate.set()
        await asyncio.sleep(WARMUP_S)
        window["cpu0"], window["wall0"], window["rss_mid_mib"] = (
            time.process_time(),
            time.monotonic(),
            rss_mib(),
        )
        (window["core0"], window["steal0"]), window["nivcsw0"] = _core_ticks(), _nivcsw()
        await asyncio.sleep(max(seconds - WARMUP_S - 1.5, 1.0))
        window["cpu1"], window["wall1"] = time.process_time(), time.monotonic()
        (window["core1"], window["steal1"]), window["nivcsw1"] = _core_ticks(), _nivcsw()
        window["rss_end_mib"] = rss_mib()

    gc_watch = _GcWatch()
    if kind == "gcfreeze":
        gc.freeze()  # everything allocated so far (imports, SDK models) leaves the cyclic GC's generations
    gc.callbacks.append(gc_watch)
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        dirs = [Path(tmp) / str(i) for i in range(n)]
        for d in dirs:
            d.mkdir()
        t_start = time.monotonic()
        watcher = asyncio.create_task(monitor())
        results = await asyncio.gather(*(one(i, d) for i, d in enumerate(dirs)), return_exceptions=True)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    ok = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    lags = [lag for r in ok for lag in r.pacing.lag_samples]
    steady = [lag for r in ok for lag in r.pacing.lag_samples[_steady_after(frame_ms) :]]
    drifts = [r.pacing.end_drift_ms for r in ok]
    cpu_pct = (
        100.0 * (window["cpu1"] - window["cpu0"]) / (window["wall1"] - window["wall0"])
        if "cpu1" in window
        else math.nan
    )
    hz, wall = os.sysconf("SC_CLK_TCK"), window.get("wall1", math.nan) - window.get("wall0", math.nan)
    core_pct = 100.0 * (window.get("core1", math.nan) - window.get("core0", math.nan)) / hz / wall
    return {
        "kind": kind,
        "sessions": n,
        "frame_ms": frame_ms,
        "audio_s": seconds,
        "frames_per_session": frames,
        "messages_per_s": round(n * 1000 / frame_ms),
        "sessions_ok": len(ok),
        "sessions_failed": len(failed),
        "errors": dict(Counter(f"{type(e).__name__}: {e}"[:160] for e in failed)),
        "connect_all_s": round(window.get("connect_s", math.nan), 3),
        "lag_ms": _summary(lags),
        "lag_steady_ms": _summary(steady),
        "end_drift_ms": {"p50": round(pct(drifts, 50), 2), "max": round(max(drifts, default=math.nan), 2)},
        "cpu_pct_of_core": round(cpu_pct, 1),
        "cpu_pct_per_session": round(cpu_pct / n, 4),
        "worker_cpus": sorted(os.sched_getaffinity(0)),
        "window_monotonic_s": [window.get("wall0", math.nan), window.get("wall1", math.nan)],
        "noise": {
            "worker_core_busy_pct": round(core_pct, 1),
            "worker_core_others_pct": round(core_pct - cpu_pct, 1),
            "worker_core_steal_pct": round(
                100.0 * (window.get("steal1", math.nan) - window.get("steal0", math.nan)) / hz / wall, 1
            ),
            "preemptions_per_s": round(
                (window.get("nivcsw1", math.nan) - window.get("nivcsw0", math.nan)) / wall, 1
            ),
        },
        "rss0_mib": round(rss0, 1),
        "rss_connected_mib": round(window.get("rss_connected_mib", math.nan), 1),
        "rss_mid_mib": round(window.get("rss_mid_mib", math.nan), 1),
        "rss_end_mib": round(window.get("rss_end_mib", math.nan), 1),
        "rss_per_session_mib": round((window.get("rss_end_mib", math.nan) - rss0) / n, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "gc": gc_watch.summary(),
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(pct(values, 50), 3),
        "p99": round(pct(values, 99), 3),
        "max": round(max(values, default=math.nan), 3),
        "n": len(values),
    }


# -- simulator side (this process, CPU 0) ----------------------------------------------------------------


def _arrivals(records: list[Any], frame_s: float) -> dict[str, float]:
    """Arrival offset of each append from the frame grid anchored at its session's earliest arrival."""
    offsets: list[float] = []
    for record in records:
        times = list(record.append_times)
        if len(times) < 2:
            continue
        session = [t - (times[0] + i * frame_s) for i, t in enumerate(times)]
        base = min(session)
        offsets.extend((o - base) * 1000.0 for o in session)
    return {"p50": round(pct(offsets, 50), 3), "p99": round(pct(offsets, 99), 3), "n": len(offsets)}


async def run_point(
    sim: Any,
    *,
    kind: str,
    sessions: int,
    seconds: float,
    frame_ms: int = FRAME_MS,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One worker child at one N and frame size; returns its figures plus what the simulator saw."""
    before = len(sim.connections)
    cmd = [sys.executable, "-m", "bench.bench_capacity", "--worker", kind, "--port", str(sim.port)]
    cmd += ["--sessions", str(sessions), "--seconds", str(seconds), "--frame-ms", str(frame_ms)]
    if (worker_cpu := _PINNING["worker_cpu"]) is not None:
        cmd += ["--cpu", str(worker_cpu)]
    samples: list[tuple[float, float, int, int]] = []
    sampler = asyncio.create_task(_sample_self(samples))
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    if profile is not None:
        await _profile_steady(
            sim, before=before, sessions=sessions, pid=proc.pid, seconds=seconds, out=profile
        )
    out, _ = await proc.communicate()
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {
            "kind": kind,
            "sessions": sessions,
            "frame_ms": frame_ms,
            "error": f"worker exited {proc.returncode}",
            "holds": False,
        }
    result: dict[str, Any] = json.loads(lines[-1])
    result["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
    records = sim.connections[before:]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            await asyncio.gather(*(r.closed.wait() for r in records))
    result["simulator_arrival_offset_ms"] = _arrivals(records, frame_ms / 1000.0)
    result["simulator_cpu"] = _sim_cpu(samples, result.get("window_monotonic_s") or [])
    result["holds"] = _holds(result)
    brief = ("kind", "sessions", "frame_ms", "lag_ms", "cpu_pct_of_core", "cpu_pct_per_session")
    print(json.dumps({k: result.get(k) for k in brief}), file=sys.stderr)
    return result


async def _sample_self(out: list[tuple[float, float, int, int]]) -> None:
    """(monotonic, process CPU, core busy ticks, steal ticks) of this (simulator) process every 0.25 s."""
    while True:
        out.append((time.monotonic(), time.process_time(), *_core_ticks()))
        await asyncio.sleep(0.25)


def _sim_cpu(samples: list[tuple[float, float, int, int]], window: list[float]) -> dict[str, float]:
    """The simulator process's CPU % of its core, and what others used of that core, over the worker's
    steady window (both processes read the same system-wide monotonic clock)."""
    inside = [s for s in samples if len(window) == 2 and window[0] <= s[0] <= window[1]]
    if len(inside) < 2:
        return {}
    (t0, c0, b0, _), (t1, c1, b1, _) = inside[0], inside[-1]
    ours = 100.0 * (c1 - c0) / (t1 - t0)
    busy = 100.0 * (b1 - b0) / os.sysconf("SC_CLK_TCK") / (t1 - t0)
    return {"cpu_pct_of_core": round(ours, 1), "core_others_pct": round(busy - ours, 1)}


def _holds(result: Mapping[str, Any]) -> bool:
    lag = result.get("lag_ms") or {}
    return bool(result.get("sessions_failed") == 0 and lag.get("p99", math.inf) <= LAG_LIMIT_MS)


# -- profile ---------------------------------------------------------------------------------------------

PROFILE_RATE = 250


async def _profile_steady(
    sim: Any, *, before: int, sessions: int, pid: int, seconds: float, out: Path
) -> None:
    """Attach py-spy to the worker once every session has streamed 2 s, for the middle of the stream."""
    records = (await sim.wait_for_connections(before + sessions, within_s=600))[before:]
    for record in records:
        await record.wait_until(lambda r: r.append_count >= 100, within_s=600)
    duration = max(int(seconds - 2.0 - 2.0), 1)
    uvx = shutil.which("uvx") or "uvx"
    spy = await asyncio.create_subprocess_exec(
        uvx, "py-spy", "record", "--pid", str(pid), "--duration", str(duration), "--nonblocking",
        "--rate", str(PROFILE_RATE), "--format", "raw", "-o", str(out),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await spy.wait()


#: Inclusive shares reported from the py-spy stacks: label → substring of a frame ("function (file").
HOT_PATH = {
    "WirePacer._send_due (schedule + sleep + send)": "WirePacer._send_due (",
    "session._send_frame (send + input.pcm write)": "_Session._send_frame (",
    "connection.send_audio (event dict + SDK send)": "_SdkConnection.send_audio (",
    "base64.b64encode": "b64encode (",
    "SDK VoiceLiveConnection.send": "VoiceLiveConnection.send (",
    "json.dumps (in the SDK)": "dumps (json/",
    "aiohttp send_str (frame, mask, write)": "send_str (aiohttp/",
    "asyncio transport write (send syscall)": "_SelectorSocketTransport.write (",
    "asyncio.sleep (timer handles)": "sleep (asyncio/tasks.py",
    "epoll wait": "EpollSelector.select (",
}


def parse_profile(path: Path) -> dict[str, Any]:
    """py-spy raw (collapsed) stacks → inclusive shares of the hot-path functions and the top leaves."""
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    total = sum(c for _, c in stacks) or 1
    inclusive = {
        label: round(100.0 * sum(c for frames, c in stacks if any(key in f for f in frames)) / total, 1)
        for label, key in HOT_PATH.items()
    }
    leaves: Counter[str] = Counter()
    for frames, c in stacks:
        func, _, where = frames[-1].partition(" (")
        leaves[f"{func} ({where.split(':')[0].split('/')[-1]})"] += c
    top = [{"function": f, "self_pct": round(100.0 * c / total, 1)} for f, c in leaves.most_common(15)]
    return {"samples": total, "inclusive_pct": inclusive, "top_self_pct": top}


# -- orchestration ---------------------------------------------------------------------------------------


async def _sweep(
    sim: Any, *, frame_ms: int, points: list[int], seconds: float, repeat_edge: bool
) -> list[dict[str, Any]]:
    """Wirepacer at each N (stops after two misses in a row), then, if asked, the edge points once more:
    the largest N that held and the smallest N that failed (their spread is the run-to-run error bar)."""
    rows: list[dict[str, Any]] = []
    misses = 0
    for n in points:
        rows.append(await run_point(sim, kind="wirepacer", sessions=n, seconds=seconds, frame_ms=frame_ms))
        misses = 0 if rows[-1].get("holds") else misses + 1
        if misses >= 2:
            break
    if repeat_edge:
        held = [r["sessions"] for r in rows if r.get("holds")]
        failed = [r["sessions"] for r in rows if not r.get("holds")]
        edge = sorted({*held[-1:], *sorted(failed)[:1]} if held else set(sorted(failed)[:1]))
        for n in edge:
            row = await run_point(sim, kind="wirepacer", sessions=n, seconds=seconds, frame_ms=frame_ms)
            rows.append({**row, "repeat": True})
    return rows


def capacity_of(rows: list[dict[str, Any]]) -> int:
    """The largest N at which every run held (a point held once and failed once does not count)."""
    by_n: dict[int, list[bool]] = {}
    for r in rows:
        by_n.setdefault(r["sessions"], []).append(bool(r.get("holds")))
    return max((n for n, runs in by_n.items() if all(runs)), default=0)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sweep = args.sessions or (QUICK_SWEEP if args.quick else FULL_SWEEP)
    seconds = args.seconds or (12.0 if args.quick else 60.0)
    frame_ms: int = args.frame_ms
    frame_sweeps = args.frame_sweep if args.frame_sweep is not None else (
        QUICK_FRAME_SWEEPS if args.quick else FULL_FRAME_SWEEPS
    )  # fmt: skip
    repeat_edge = args.repeat_edge if args.repeat_edge is not None else not args.quick
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpu = pin_to(0)
    # The child inherits this process's affinity ({cpu}); it must be told the other core explicitly, or
    # `pin_to(1)` in a one-CPU affinity set leaves it on the simulator's core.
    _PINNING["worker_cpu"] = next((c for c in usable if c != cpu), None)
    baseline: list[dict[str, Any]] = []
    fast: list[dict[str, Any]] = []
    frozen: list[dict[str, Any]] = []
    frozen_gate: list[dict[str, Any]] = []
    larger: list[dict[str, Any]] = []
    profile: dict[str, Any] | None = None
    from devstack.voicelive import Mode, VoiceLiveSimulator  # not imported by the worker child

    async with VoiceLiveSimulator(mode=Mode.SINK, connects_per_minute=None) as sim:
        ours = await _sweep(sim, frame_ms=frame_ms, points=sweep, seconds=seconds, repeat_edge=repeat_edge)
        for fm, *points in frame_sweeps:
            rows = await _sweep(sim, frame_ms=fm, points=points, seconds=seconds, repeat_edge=repeat_edge)
            larger.append({"frame_ms": fm, "capacity_sessions": capacity_of(rows), "points": rows})
        for n in args.baseline if args.baseline is not None else ([100] if args.quick else [25, 100, 300]):
            baseline.append(
                await run_point(sim, kind="naive", sessions=n, seconds=seconds, frame_ms=frame_ms)
            )
        # The experiments (pre-built appends, gc.freeze) only run in the full set: `make bench` has 5 min.
        fast_points = args.fast if args.fast is not None else ([] if args.quick else [300, 400, 600])
        for n in fast_points:
            fast.append(await run_point(sim, kind="fast", sessions=n, seconds=seconds, frame_ms=frame_ms))
            frozen.append(
                await run_point(sim, kind="gcfreeze", sessions=n, seconds=seconds, frame_ms=frame_ms)
            )
            frozen_gate.append(
                await run_point(sim, kind="gcfreeze_gate", sessions=n, seconds=seconds, frame_ms=frame_ms)
            )
        if args.profile:
            raw = Path(tempfile.gettempdir()) / "bench-capacity-profile.txt"
            raw.unlink(missing_ok=True)
            n = args.profile_sessions
            run_ = await run_point(
                sim, kind="wirepacer", sessions=n, seconds=min(seconds, 12.0), frame_ms=frame_ms, profile=raw
            )
            if raw.exists():
                tool = f"py-spy record --pid WORKER --nonblocking --rate {PROFILE_RATE} (steady state)"
                profile = {
                    "kind": "wirepacer",
                    "sessions": n,
                    "tool": tool,
                    "point": run_,
                    **parse_profile(raw),
                }
    by_frame = {str(frame_ms): capacity_of(ours)} | {
        str(s["frame_ms"]): s["capacity_sessions"] for s in larger
    }
    return {
        "method": __doc__,
        "parameters": {
            "sweep": sweep,
            "audio_s": seconds,
            "frame_ms": frame_ms,
            "frame_sweeps": frame_sweeps,
            "repeat_edge": repeat_edge,
            "pace": 1.0,
            "lag_limit_ms": LAG_LIMIT_MS,
            "simulator": "Mode.SINK, connects_per_minute=None",
            "simulator_cpu": cpu,
            "worker_cpu": _PINNING["worker_cpu"],
            "steady_after_frames": _steady_after(frame_ms),
            "steady_after_s": STEADY_AFTER_S,
            "cpu_window": f"gate+{WARMUP_S}s .. end-1.5s",
        },
        "results": {
            "capacity_sessions": capacity_of(ours),
            "capacity_by_frame_ms": by_frame,
            "wirepacer": ours,
            "larger_frames": larger,
            "fast_append": fast,
            "gc_freeze": frozen,
            "gc_freeze_gate": frozen_gate,
            "profile": profile,
        },
        "baseline": {"naive_sleep_per_frame": baseline},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200/300/400, 40 ms: 600; 12 s; no experiments")
    parser.add_argument("--sessions", type=int, nargs="+", help="the main sweep (default 25 … 800)")
    parser.add_argument("--baseline", type=int, nargs="*", help="N for the sleep-per-frame baseline")
    parser.add_argument(
        "--fast", type=int, nargs="*", help="N for the two candidates (pre-encoded append, gc.freeze)"
    )
    parser.add_argument("--seconds", type=float, help="audio per session (default 60, quick 12)")
    parser.add_argument(
        "--frame-ms", type=int, choices=FRAME_CHOICES, default=FRAME_MS, help="frame of the main sweep"
    )
    parser.add_argument(
        "--frame-sweep",
        type=int,
        nargs="+",
        action="append",
        metavar="MS_THEN_N",
        help="a wirepacer sweep at another frame: FRAME_MS N [N ...] (repeatable; quick: 40 600 1000;"
        " full: 40 400 … 1200 and 100 1000 … 2000; give `--frame-sweep 0` for none)",
    )
    parser.add_argument(
        "--repeat-edge",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the edge points of each sweep once more (default: on in full, off in quick)",
    )
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip the py-spy run")
    parser.add_argument("--profile-sessions", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS / "capacity.json")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.frame_sweep is not None:
        args.frame_sweep = [fs for fs in args.frame_sweep if fs != [0]]
        for fs in args.frame_sweep:
            if len(fs) < 2 or fs[0] not in FRAME_CHOICES:
                parser.error(f"--frame-sweep wants FRAME_MS (one of {FRAME_CHOICES}) then N ..., got {fs}")
    if args.worker:
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        else:
            pin_to(1)
        n = args.sessions[0]
        result = asyncio.run(_worker(args.port, args.worker, n, args.seconds or 20.0, args.frame_ms))
        print(json.dumps(result))
        return 0
    result = asyncio.run(run(args))
    path = write_result("capacity", result, args.out)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
