"""Benchmark: can one core of the Voice Live simulator (sink mode) hold N sessions of real-time 20 ms appends?

The server runs in this process pinned to CPU 0; N raw aiohttp WebSocket clients run in a child process pinned
to CPU 1 and send SDK-shaped appends (`{"audio":...,"type":"input_audio_buffer.append"}`) at real-time pace
(absolute deadlines, so a late send does not shift the schedule). Reported: server CPU % of one core over the
streaming window, event-loop lag of the server, append arrival jitter per session (arrival minus the ideal
schedule anchored at the session's first append), and the clients' own send lag (to tell the two apart).

    uv run python bench/bench_simulator_sink.py [--sessions 300] [--seconds 20] [--out bench/results/...json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from devstack.voicelive import Mode, VoiceLiveSimulator

FRAME_S = 0.020
FRAME_BYTES = 960  # 20 ms of 24 kHz pcm16
GROUPS = 20  # client sender tasks, staggered by 1 ms, each pacing N/GROUPS sessions


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- client side (child process) ---------------------------------------------------------------------------


async def _client(port: int, sessions: int, seconds: float) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/voice-live/realtime?api-version=2026-07-15&model=gpt-realtime"
    append = json.dumps(
        {"audio": base64.b64encode(bytes(FRAME_BYTES)).decode(), "type": "input_audio_buffer.append"}
    )
    update = json.dumps({"type": "session.update", "session": {"turn_detection": None}})
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        sockets = []
        for _ in range(sessions):
            ws = await http.ws_connect(url, headers={"api-key": "devstack-key"}, autoping=True, heartbeat=30)
            await ws.send_str(update)
            sockets.append(ws)
        drains = [asyncio.create_task(_drain(ws)) for ws in sockets]
        lags: list[float] = []
        start = time.monotonic() + 0.5
        frames = int(seconds / FRAME_S)
        groups = [sockets[g::GROUPS] for g in range(GROUPS)]
        await asyncio.gather(
            *(_pace(group, append, start + g * 0.001, frames, lags) for g, group in enumerate(groups))
        )
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*drains, return_exceptions=True)
    return {
        "send_lag_ms_p50": _pct(lags, 0.5) * 1e3,
        "send_lag_ms_p99": _pct(lags, 0.99) * 1e3,
        "send_lag_ms_max": max(lags) * 1e3,
        "frames_per_session": frames,
    }


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


async def _pace(
    group: list[aiohttp.ClientWebSocketResponse], append: str, start: float, frames: int, lags: list[float]
) -> None:
    for i in range(frames):
        deadline = start + i * FRAME_S
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, time.monotonic() - deadline))
        for ws in group:
            await ws.send_str(append)


# -- server side -------------------------------------------------------------------------------------------


async def _loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(0.05)
        lags.append(time.monotonic() - before - 0.05)


def _jitter(sim: VoiceLiveSimulator) -> dict[str, Any]:
    per_session_max: list[float] = []
    all_offsets: list[float] = []
    counts: list[int] = []
    for record in sim.connections:
        times = list(record.append_times)
        counts.append(len(times))
        if len(times) < 2:
            continue
        # Offset from the ideal 20 ms grid anchored at the session's earliest-relative arrival.
        offsets = [t - (times[0] + i * FRAME_S) for i, t in enumerate(times)]
        base = min(offsets)
        offsets = [o - base for o in offsets]
        per_session_max.append(max(offsets))
        all_offsets.extend(offsets)
    return {
        "appends_per_session_min": min(counts),
        "appends_per_session_max": max(counts),
        "arrival_offset_ms_p50": _pct(all_offsets, 0.5) * 1e3,
        "arrival_offset_ms_p99": _pct(all_offsets, 0.99) * 1e3,
        "arrival_offset_ms_max": max(all_offsets) * 1e3,
        "per_session_max_offset_ms_p50": _pct(per_session_max, 0.5) * 1e3,
    }


async def _server(args: argparse.Namespace) -> dict[str, Any]:
    async with VoiceLiveSimulator(mode=Mode.SINK, connects_per_minute=None) as sim:
        child = await asyncio.create_subprocess_exec(
            *[
                sys.executable,
                __file__,
                "--client",
                "--port",
                str(sim.port),
                "--sessions",
                str(args.sessions),
                "--seconds",
                str(args.seconds),
            ],
            stdout=asyncio.subprocess.PIPE,
        )
        await sim.wait_for_connections(args.sessions, within_s=120)
        first = sim.connections[0]
        await first.wait_until(lambda r: r.append_count > 0, within_s=120)
        stop, loop_lags = asyncio.Event(), list[float]()
        lag_task = asyncio.create_task(_loop_lag(stop, loop_lags))
        cpu0, wall0 = time.process_time(), time.monotonic()
        await first.wait_until(
            lambda r: r.append_count >= int(args.seconds / FRAME_S) - 5, within_s=args.seconds * 3
        )
        cpu1, wall1 = time.process_time(), time.monotonic()
        stop.set()
        await lag_task
        out, _ = await child.communicate()
        client = json.loads(out)
        await asyncio.gather(*(r.closed.wait() for r in sim.connections))
        return {
            "sessions": args.sessions,
            "seconds": args.seconds,
            "frame_ms": FRAME_S * 1e3,
            "frame_bytes": FRAME_BYTES,
            "server_cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1),
            "appends_per_second": round(args.sessions / FRAME_S),
            "server_loop_lag_ms_p99": _pct(loop_lags, 0.99) * 1e3,
            "server_loop_lag_ms_max": max(loop_lags) * 1e3,
            **_jitter(sim),
            "client": client,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "pinned": hasattr(os, "sched_setaffinity"),
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "simulator_sink.json")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[1] if args.client else cpus[0]})
    if args.client:
        print(json.dumps(asyncio.run(_client(args.port, args.sessions, args.seconds))))
        return
    result = asyncio.run(_server(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
