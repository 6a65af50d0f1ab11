"""Benchmark: decode+convert throughput per input format (× real time per core) beside plain PyAV decode.

For each good fixture in ../shared/audio it measures, over R repetitions, the CPU time of
  - pipeline: `open_frames` from a non-seekable 64 KiB chunk stream → 20 ms frames (pcm16 24 kHz and
    G.711 µ-law 8 kHz), consumed unpaced;
  - baseline: plain PyAV decode of the same bytes from BytesIO (no resampling, no framing);
  - baseline+resample: PyAV decode + `av.AudioResampler` to s16 mono 24 kHz (all inside FFmpeg);
and the pipeline's time to first frame. × real time per core = audio seconds / CPU seconds. Measures only.

    uv run python bench/bench_decode.py --quick      # 3 repetitions per file
    uv run python bench/bench_decode.py              # 20 repetitions per file
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import av

from worker.audio import AudioFormat, open_frames

AUDIO = Path("/work/shared/audio")
RESULTS = Path(__file__).parent / "results" / "decode.json"
FILES = [
    "hello_24k_mono.wav",
    "weather_44k1_stereo.wav",
    "caller_3turns_16k.wav",
    "float32_48k_mono.wav",
    "support_8k_mulaw.wav",
    "booking_48k_stereo.mp3",
    "booking_48k_stereo.ogg",
    "booking_48k_stereo.opus",
    "booking_48k_stereo.flac",
    "booking_48k_stereo_faststart.m4a",
    "booking_48k_stereo.m4a",
]
TARGETS = {"pcm16_24k": AudioFormat("pcm16", 24000), "ulaw_8k": AudioFormat("g711_ulaw", 8000)}


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def pipeline_once(data: bytes, target: AudioFormat) -> tuple[float, float]:
    """Returns (decoded audio seconds, seconds to the first frame)."""
    t0 = time.perf_counter()
    first = 0.0
    async with open_frames(chunks(data), target=target) as stream:
        async for _ in stream:
            if not first:
                first = time.perf_counter() - t0
    return stream.facts.decoded_duration_s, first


def pyav_once(data: bytes, resample: bool) -> float:
    samples, rate = 0, 1
    resampler: Any = av.AudioResampler(format="s16", layout="mono", rate=24000) if resample else None
    container: Any
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate)
        for frame in container.decode(stream):
            samples += int(frame.samples)
            if resampler is not None:
                resampler.resample(frame)
    if resampler is not None:
        resampler.resample(None)
    return samples / rate


def measure(fn: Callable[[], float], reps: int) -> tuple[float, float, float]:
    """(audio s per run, best CPU s per run, median wall s per run)."""
    cpus, walls, audio = [], [], 0.0
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        audio = fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return audio, min(cpus), statistics.median(walls)


async def measure_pipeline(data: bytes, target: AudioFormat, reps: int) -> tuple[float, float, float, float]:
    """(audio s per run, best CPU s, median wall s, median time to first frame s), in one event loop."""
    cpus, walls, firsts, audio = [], [], [], 0.0
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        audio, first = await pipeline_once(data, target)
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
        firsts.append(first)
    return audio, min(cpus), statistics.median(walls), statistics.median(firsts)


def row_for(name: str, reps: int) -> dict[str, object]:
    data = (AUDIO / name).read_bytes()
    row: dict[str, object] = {"file": name, "bytes": len(data)}
    for label, resample in (("pyav_decode", False), ("pyav_decode_resample_24k", True)):
        audio, cpu, _ = measure(lambda r=resample: pyav_once(data, r), reps)  # type: ignore[misc]
        row["audio_s"] = round(audio, 3)
        row[f"{label}_x_rt_per_core"] = round(audio / cpu, 1) if cpu else None
    for label, target in TARGETS.items():
        audio, cpu, wall, first = asyncio.run(measure_pipeline(data, target, reps))
        row[f"pipeline_{label}_x_rt_per_core"] = round(audio / cpu, 1) if cpu else None
        row[f"pipeline_{label}_x_rt_wall"] = round(audio / wall, 1)
        row[f"pipeline_{label}_first_frame_ms"] = round(1000 * first, 2)
    return row


def main(reps: int) -> dict[str, object]:
    rows = []
    for name in FILES:
        row = row_for(name, reps)
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    return {
        "benchmark": "decode",
        "repetitions": reps,
        "cpu_time": "best of repetitions; process CPU time of all threads",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "av": av.__version__},
        "results": rows,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions instead of 20")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = main(3 if args.quick else 20)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["results"], indent=2))
