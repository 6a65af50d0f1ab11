"""Benchmark: per-job overhead (wall − audio ÷ pace) of a full job through Azurite + the Voice Live simulator.

One process runs Azurite (node, its own process) and the zero-latency Voice Live simulator (in this
process's event loop, so its work is counted against the job: an upper bound). Each repetition is a fresh
job (new job_id) over the same uploaded input, run by the product's `process_job` with the real blob and
Voice Live SDKs. Thin wrappers around the connector and the artifact store timestamp the phases:
  setup      process_job start → connect starts (manifest check, input properties, decoder open)
  connect    WebSocket handshake (SDK connect)
  first frame  connected → first append sent (session.update → session.updated, seeding)
  stream excess  first → last append, minus the audio between them ÷ pace (lag of the last frame minus lag
             of the first; negative when the first frame waited on the decoder and the schedule caught up)
  tail       end of the last frame's audio (last append + 20 ms ÷ pace) → connection closed (end-of-input
             drain, close)
  artifacts  connection closed → process_job returns (render, uploads, manifest last)
overhead = wall − (audio streamed incl. trailing silence) ÷ pace. Run with the product's default drain
window (1.0 s) and with 0.2 s. Baseline: a bare SDK connect + session.update + wait for session.updated +
close against the same simulator (the least any session can cost).

    uv run python -m bench.bench_overhead [--quick] [--reps 10] [--input PATH (default hello_24k_mono.wav)]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from azure.ai.voicelive.aio import connect
from azure.core.credentials import AzureKeyCredential
from azure.storage.blob.aio import BlobServiceClient

from bench import RESULTS, pct, write_result
from devstack.azurite import DEV_ACCOUNT, Azurite
from devstack.voicelive import Mode, VoiceLiveSimulator
from worker.blobs import BlobPolicy, BlobRef, DevEndpoint
from worker.jobs import ArtifactEntry, Manifest, parse_job
from worker.pipeline import Ports, process_job
from worker.storage import ArtifactStore, BlobArtifacts, BlobInput, blob_service_client
from worker.voice.connection import SdkVoiceConnector
from worker.voice.ports import VoiceConnection
from worker.voice.session import SessionOptions
from worker.voice.tools import ToolRegistry

DEFAULT_INPUT = Path("/work/shared/audio/hello_24k_mono.wav")
PHASES = ("setup", "connect", "first_frame", "stream_excess", "tail", "artifacts", "overhead", "wall")


class Marks:
    """Monotonic timestamps of one job's phases (first write wins, except `last_append`)."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self.appends = 0

    def mark(self, name: str) -> None:
        self.t.setdefault(name, time.monotonic())


class _TimedConnection:
    def __init__(self, conn: VoiceConnection, marks: Marks) -> None:
        self._conn, self._marks = conn, marks

    async def send(self, event: Mapping[str, Any]) -> None:
        await self._conn.send(event)

    async def send_audio(self, frame: bytes) -> None:
        self._marks.mark("first_append")
        await self._conn.send_audio(frame)
        self._marks.appends += 1
        self._marks.t["last_append"] = time.monotonic()

    def events(self) -> AsyncIterator[Mapping[str, Any]]:
        return self._conn.events()


class TimedConnector:
    """The real connector, with connect / first append / last append / closed timestamps."""

    def __init__(self, inner: SdkVoiceConnector) -> None:
        self.inner = inner
        self.marks = Marks()

    def connect(self, *, model: str) -> AbstractAsyncContextManager[VoiceConnection]:
        return self._open(model)

    @asynccontextmanager
    async def _open(self, model: str) -> AsyncIterator[VoiceConnection]:
        marks = self.marks
        marks.mark("connect")
        async with self.inner.connect(model=model) as conn:
            marks.mark("connected")
            yield _TimedConnection(conn, marks)
        marks.mark("closed")


class DevJobs:
    """The product's ports over Azurite + a simulator; `run(url, streaming=...)` runs one job with timestamps.

    `start()` launches Azurite and a simulator; `attach()` uses ones another process started.
    """

    def __init__(self, *, blob_endpoint: str, sim_endpoint: str, client: BlobServiceClient) -> None:
        self.blob_endpoint, self.sim_endpoint, self.client = blob_endpoint, sim_endpoint, client
        self.policy = BlobPolicy(
            allowed_inputs=frozenset({(DEV_ACCOUNT, "audio-in")}),
            results=(blob_endpoint, DEV_ACCOUNT, "results"),
            dev_endpoints=(DevEndpoint.from_url(blob_endpoint),),
        )
        self.voice = SdkVoiceConnector(endpoint=sim_endpoint, credential=AzureKeyCredential("devstack-key"))

    @classmethod
    @asynccontextmanager
    async def start(cls, *, mode: Mode = Mode.ZERO_LATENCY) -> AsyncIterator[tuple[DevJobs, Azurite]]:
        async with AsyncExitStack() as stack:
            azurite = await stack.enter_async_context(Azurite(containers=("audio-in", "results")))
            sim = await stack.enter_async_context(VoiceLiveSimulator(mode=mode, connects_per_minute=None))
            async with cls.attach(azurite.connection_string, azurite.blob_endpoint, sim.endpoint) as dev:
                yield dev, azurite

    @classmethod
    @asynccontextmanager
    async def attach(
        cls, connection_string: str, blob_endpoint: str, sim_endpoint: str
    ) -> AsyncIterator[DevJobs]:
        async with blob_service_client(account_url="", connection_string=connection_string) as client:
            yield cls(blob_endpoint=blob_endpoint, sim_endpoint=sim_endpoint, client=client)

    async def upload(self, path: Path) -> str:
        name = f"{uuid.uuid4().hex[:8]}/{path.name}"
        blob = self.client.get_blob_client("audio-in", name)
        with path.open("rb") as fh:
            await blob.upload_blob(fh, overwrite=True, length=path.stat().st_size)
        return f"{self.blob_endpoint}/audio-in/{name}"

    async def run(
        self, url: str, *, streaming: Mapping[str, Any], drain_window_s: float = 1.0, max_bytes: int = 2**31
    ) -> tuple[Manifest, Marks]:
        connector = TimedConnector(self.voice)
        marks = connector.marks
        ports = Ports(
            inputs=BlobInput(self.client, max_bytes=max_bytes),
            artifacts=_timed_artifacts(lambda ref: BlobArtifacts(self.client, ref), marks),
            voice=connector,
            tools=ToolRegistry.default(),
            model_default="gpt-realtime",
            session_options=SessionOptions(drain_window_s=drain_window_s),
        )
        body = {"version": 1, "job_id": f"bench-{uuid.uuid4().hex[:12]}", "input": {"url": url},
                "streaming": dict(streaming)}  # fmt: skip
        parsed = parse_job(json.dumps(body).encode(), policy=self.policy)
        marks.mark("start")
        outcome = await process_job(parsed, ports)
        marks.mark("end")
        return outcome.manifest, marks


class _TimedStore:
    def __init__(self, inner: ArtifactStore, marks: Marks) -> None:
        self._inner, self._marks = inner, marks

    async def read_manifest(self) -> tuple[Manifest | None, str | None]:
        return await self._inner.read_manifest()

    async def put(self, name: str, source: Path | bytes, *, content_type: str) -> ArtifactEntry:
        self._marks.mark("first_put")
        return await self._inner.put(name, source, content_type=content_type)

    async def put_manifest(self, manifest: Manifest, *, if_version: str | None) -> None:
        await self._inner.put_manifest(manifest, if_version=if_version)
        self._marks.mark("manifest")


def _timed_artifacts(
    factory: Callable[[BlobRef], ArtifactStore], marks: Marks
) -> Callable[[BlobRef], ArtifactStore]:
    return lambda ref: _TimedStore(factory(ref), marks)


def phases(manifest: Manifest, marks: Marks, pace: float) -> dict[str, float]:
    """One job's phase durations in ms (see the module docstring)."""
    t = marks.t
    audio_ms = (manifest.metrics.audio_streamed_s or 0.0) * 1000.0
    between_ms = (marks.appends - 1) * 20.0 / pace
    ms = {
        "setup": t["connect"] - t["start"],
        "connect": t["connected"] - t["connect"],
        "first_frame": t["first_append"] - t["connected"],
        "stream_excess": (t["last_append"] - t["first_append"]) - between_ms / 1000.0,
        "tail": t["closed"] - t["last_append"] - 0.020 / pace,
        "artifacts": t["end"] - t["closed"],
        "wall": t["end"] - t["start"],
    }
    out = {k: round(v * 1000.0, 2) for k, v in ms.items()}
    out["overhead"] = round(out["wall"] - audio_ms / pace, 2)
    out["audio_ms"] = audio_ms
    return out


async def bare_session(endpoint: str) -> float:
    """Baseline: SDK connect + session.update + wait for session.updated + close; seconds."""
    t0 = time.monotonic()
    async with connect(
        endpoint=endpoint, credential=AzureKeyCredential("devstack-key"), model="gpt-realtime"
    ) as c:
        await c.send({"type": "session.update", "session": {"turn_detection": None}})
        async for event in c:
            if event.type == "session.updated":
                break
    return time.monotonic() - t0


def _stats(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        k: {
            "median": round(statistics.median(r[k] for r in rows), 2),
            "p95": round(pct([r[k] for r in rows], 95), 2),
            "min": round(min(r[k] for r in rows), 2),
        }
        for k in PHASES
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    reps = args.reps or (3 if args.quick else 10)
    # Job defaults otherwise: 20 ms frames, 24 kHz pcm16, 2 s trailing silence.
    streaming = {"pace": args.pace}
    results: dict[str, Any] = {}
    async with DevJobs.start() as (dev, _):
        url = await dev.upload(args.input)
        await dev.run(url, streaming=streaming, drain_window_s=0.2)  # warm-up: imports, first connections
        for label, window in (("default_drain_1.0s", 1.0), ("drain_0.2s", 0.2)):
            rows = []
            for _ in range(reps):
                manifest, marks = await dev.run(url, streaming=streaming, drain_window_s=window)
                rows.append(phases(manifest, marks, args.pace))
            results[label] = {"drain_window_s": window, "runs": rows, "summary": _stats(rows)}
            print(json.dumps({label: results[label]["summary"]["overhead"]}), file=sys.stderr)
        bare = [await bare_session(dev.sim_endpoint) * 1000.0 for _ in range(reps)]
    return {
        "method": __doc__,
        "parameters": {
            "input": str(args.input),
            "pace": args.pace,
            "repetitions": reps,
            "simulator": "Mode.ZERO_LATENCY, in-process",
            "trailing_silence_ms": 2000,
        },
        "results": results,
        "baseline": {
            "bare_connect_update_close_ms": {
                "median": round(statistics.median(bare), 2),
                "p95": round(pct(bare, 95), 2),
                "runs": [round(b, 2) for b in bare],
            }
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions instead of 10")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--pace", type=float, default=1.0)
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--out", type=Path, default=RESULTS / "overhead.json")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print(f"wrote {write_result('overhead', result, args.out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
