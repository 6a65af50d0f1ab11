"""Benchmark: worker memory — RSS growth per live session, and peak RSS of a 60-minute 48 kHz stereo job.

Per session: the capacity harness (bench_capacity: sink simulator on CPU 0, worker child on CPU 1) opens
N sessions through `run_session` and reads the child's RSS before connecting and two seconds into the
stream; growth / N. Baseline: N bare SDK connections (connect + session.update, idle) — what the SDK
and aiohttp cost with none of our code.

Peak: a 60-minute 48 kHz stereo FLAC (a 1.5 s tone+noise burst every 10 s, so the simulator's VAD takes
a turn and answers each one) is generated into a temp dir at bench time and uploaded to Azurite. A worker
child runs the product's `process_job` on it, unpaced (`pace: 0`), against the zero-latency simulator
(in the parent, with Azurite): streamed blob ranges → PyAV in a thread → soxr → frames → SDK → artifacts
(60-minute conversation.wav, responses) → Azurite. Reported: the child's VmHWM (peak RSS), its RSS before
the job, and a sampled RSS timeline. Baseline: what a naive sample does with the same file — read it
whole into memory and decode + resample it at once (PyAV + soxr) — peak RSS in its own child.

    uv run python -m bench.bench_memory [--quick] [--minutes 60] [--sessions 100 300]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import RESULTS, peak_rss_mib, rss_mib, write_result

ROOT = Path(__file__).resolve().parents[1]
RATE = 48000


def generate_input(path: Path, *, minutes: int) -> float:
    """Write a `minutes`-long 48 kHz stereo FLAC (tone+noise burst every 10 s); returns seconds of audio."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    block = np.zeros((2, 10 * RATE))
    block[0, : t.size], block[1, : t.size] = tone, 0.8 * tone
    pcm = np.ascontiguousarray((block * 32767).clip(-32768, 32767).astype(np.int16).T.reshape(1, -1))
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=RATE, layout="stereo")
        for _ in range(minutes * 6):
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
            frame.sample_rate = RATE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return minutes * 60.0


# -- children ---------------------------------------------------------------------------------------------


async def _job_child(args: argparse.Namespace) -> dict[str, Any]:
    from bench.bench_overhead import DevJobs

    rss_before = rss_mib()
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()

    async def sample() -> None:
        while True:
            samples.append((round(time.monotonic() - t0, 2), round(rss_mib(), 1)))
            await asyncio.sleep(0.25)

    async with DevJobs.attach(args.connection_string, args.blob_endpoint, args.sim_endpoint) as dev:
        sampler = asyncio.create_task(sample())
        streaming = {"pace": 0, "trailing_silence_ms": 2000, "response_timeout_s": 60}
        manifest, marks = await dev.run(args.url, streaming=streaming, drain_window_s=0.5)
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    step = max(1, len(samples) // 40)
    return {
        "rss_before_job_mib": round(rss_before, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "wall_s": round(time.monotonic() - t0, 2),
        "status": manifest.status,
        "input_duration_s": manifest.input.duration_s,
        "audio_streamed_s": manifest.metrics.audio_streamed_s,
        "user_turns": manifest.metrics.user_turns,
        "responses": manifest.metrics.responses,
        "artifact_bytes": sum(a.size for a in manifest.artifacts),
        "rss_timeline_s_mib": samples[::step],
        "stream_s": round(marks.t["last_append"] - marks.t["first_append"], 2),
    }


def _naive_child(path: Path) -> dict[str, Any]:
    """Baseline, as sample code does it: read the whole file, decode and convert it all, keep the result."""
    import av

    rss_before = rss_mib()
    data = path.read_bytes()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=24000)
    parts: list[bytes] = []
    with av.open(io.BytesIO(data), "r") as container:
        for frame in container.decode(audio=0):
            parts.extend(out.to_ndarray().tobytes() for out in resampler.resample(frame))
    parts.extend(out.to_ndarray().tobytes() for out in resampler.resample(None))
    pcm = b"".join(parts)
    return {
        "rss_before_mib": round(rss_before, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "input_bytes": len(data),
        "pcm_out_bytes": len(pcm),
        "how": "read_bytes → av.open(BytesIO).decode → AudioResampler(s16 mono 24 kHz) → join",
    }


# -- orchestration ----------------------------------------------------------------------------------------


async def _child(*args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bench_memory", *args, cwd=ROOT, stdout=subprocess.PIPE
    )
    out, _ = await proc.communicate()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"child exited {proc.returncode}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def per_session(sessions: list[int], seconds: float) -> dict[str, Any]:
    from bench.bench_capacity import run_point
    from devstack.voicelive import Mode, VoiceLiveSimulator

    keys = ("sessions", "audio_s", "rss0_mib", "rss_end_mib", "rss_per_session_mib", "peak_rss_mib", "error")
    ours, bare = [], []
    async with VoiceLiveSimulator(mode=Mode.SINK, connects_per_minute=None) as sim:
        for n in sessions:
            row = await run_point(sim, kind="wirepacer", sessions=n, seconds=seconds)
            ours.append({k: row[k] for k in keys if k in row})
            row = await run_point(sim, kind="bare", sessions=n, seconds=seconds)
            bare.append({k: row[k] for k in keys if k in row})
    return {"wirepacer": ours, "bare_sdk_connections": bare}


async def peak(minutes: int) -> dict[str, Any]:
    from bench.bench_overhead import DevJobs

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        path = Path(tmp) / f"tone_{minutes}min_48k_stereo.flac"
        t0 = time.monotonic()
        seconds = generate_input(path, minutes=minutes)
        generated_s = time.monotonic() - t0
        async with DevJobs.start() as (dev, azurite):
            url = await dev.upload(path)
            job = await _child(
                "--job-child", "--url", url, "--connection-string", azurite.connection_string,
                "--blob-endpoint", dev.blob_endpoint, "--sim-endpoint", dev.sim_endpoint,
            )  # fmt: skip
        naive = await _child("--naive-child", str(path))
        size = path.stat().st_size
    return {
        "input": {
            "minutes": minutes,
            "audio_s": seconds,
            "format": "FLAC 48 kHz stereo s16",
            "bytes": size,
            "generate_s": round(generated_s, 2),
        },
        "pipeline": job,
        "baseline_whole_file": naive,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sessions = args.sessions or ([100] if args.quick else [100, 300])
    minutes = args.minutes or 60
    seconds = 8.0 if args.quick else 12.0
    rows = await per_session(sessions, seconds)
    big = await peak(minutes)
    return {
        "method": __doc__,
        "parameters": {
            "sessions": sessions,
            "session_audio_s": seconds,
            "minutes": minutes,
            "pace": "unpaced",
        },
        "results": {"per_session": rows["wirepacer"], "peak": big["pipeline"], "input": big["input"]},
        "baseline": {
            "per_session_bare_sdk": rows["bare_sdk_connections"],
            "peak_whole_file_decode": big["baseline_whole_file"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 sessions for 8 s; the same 60-minute job")
    parser.add_argument("--sessions", type=int, nargs="+")
    parser.add_argument("--minutes", type=int, help="input length (default 60)")
    parser.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    parser.add_argument("--job-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--naive-child", type=Path, help=argparse.SUPPRESS)
    for name in ("--url", "--connection-string", "--blob-endpoint", "--sim-endpoint"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job_child:
        print(json.dumps(asyncio.run(_job_child(args))))
        return 0
    if args.naive_child:
        print(json.dumps(_naive_child(args.naive_child)))
        return 0
    result = asyncio.run(run(args))
    print(f"wrote {write_result('memory', result, args.out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
