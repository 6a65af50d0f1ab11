"""Benchmark: the fault soak — N jobs through the queue worker with injected faults; lost / duplicated /
wrongly-settled counts (target 0 / 0 / 0) and job overhead beside a no-fault baseline from the same run.

One process runs the devstack broker (its own thread), Azurite (node, its own process) and the zero-latency
Voice Live simulator, plus the product's `Worker` (real `QueueConsumer`, `Settler`, blob and Voice Live
SDK adapters) in this event loop. Inputs are generated here: a 2.5 s 24 kHz tone-burst "utterance" (numpy
+ wave) and, for bad-audio jobs, 4 KiB of seeded random bytes (undecodable).

Phases, each on its own queue:
  baseline   `--baseline-jobs` good jobs, no faults.
  soak       `--jobs` jobs; `--bad-audio` of them point at the bad input; of the first `--jobs` Voice Live
             connection attempts, `--drops` are dropped mid-stream (TCP abort after a random append) and
             `--throttles` refused with HTTP 429 (Retry-After 1 s), chosen at random per connection.
Each phase waits until its queue holds no message (active, scheduled or locked) and its DLQ holds the bad
jobs, then drains the worker. Then every job is audited against what it should have become:
  lost             no terminal state: no succeeded manifest and not dead-lettered (or still queued)
  duplicated       completed twice, or processed again after completing (a re-run, not the manifest
                   short-circuit, which is counted apart as `absorbed`)
  wrongly settled  a good job dead-lettered / failed, a bad-audio job not dead-lettered as UnsupportedAudio
                   with a failed manifest, or artifacts that do not match their manifest (size, sha256)
Overhead per successful attempt = (settled − started) − audio on the wire ÷ pace (started: the worker
parsed the message; settled: complete acknowledged). End to end = enqueue → final settlement, retries and
their backoff included.

    uv run python -m bench.bench_soak [--jobs 1000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import random
import sys
import time
import uuid
import wave
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from azure.core.credentials import AzureKeyCredential
from azure.servicebus.aio import ServiceBusClient
from azure.storage.blob.aio import BlobServiceClient

from bench import pct, write_result
from devstack.azurite import DEV_ACCOUNT, Azurite
from devstack.servicebus import QueueOptions, ServiceBusBroker
from devstack.voicelive import CloseAfter, CloseKind, Fault, Mode, Refuse, VoiceLiveSimulator
from worker.admission import AdmittedConnector, TokenBucket
from worker.blobs import BlobPolicy, DevEndpoint
from worker.client import JobClient
from worker.pipeline import Ports
from worker.queue import QueueConsumer
from worker.runner import JobEvent, RunnerOptions, Worker
from worker.settle import Settler
from worker.storage import BlobArtifacts, BlobInput, blob_service_client
from worker.voice.connection import SdkVoiceConnector
from worker.voice.tools import ToolRegistry

RATE = 24_000
AUDIO_S = 2.5
TRAILING_MS = 300
PACE = 20.0
WIRE_S = (AUDIO_S + TRAILING_MS / 1000) / PACE
SB_OPTIONS: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.05, "retry_backoff_max": 0.5}


def good_audio() -> bytes:
    """2.5 s pcm16 WAV: 0.4 s silence, 1.2 s of a 4 Hz-modulated 180 Hz harmonic burst (-14 dBFS), silence."""
    t = np.arange(int(1.2 * RATE)) / RATE
    voice = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 6))
    burst = 0.2 * voice * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) * np.hanning(t.size)
    signal = np.concatenate([np.zeros(int(0.4 * RATE)), burst, np.zeros(int(0.9 * RATE))])
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    return out.getvalue()


def bad_audio(rng: random.Random) -> bytes:
    """4 KiB of random bytes (no container signature): must end as UnsupportedAudio."""
    return bytes(rng.getrandbits(8) for _ in range(4096))


@dataclass
class Phase:
    """One run's jobs and everything observed about them."""

    name: str
    queue: str
    bodies: list[dict[str, Any]]
    bad: set[str]
    events: dict[str, list[tuple[float, str, str | None]]] = field(default_factory=lambda: defaultdict(list))
    enqueued_at: float = 0.0
    seconds: float = 0.0
    timed_out: bool = False
    broker_counters: dict[str, int] = field(default_factory=dict)

    def observe(self, event: JobEvent) -> None:
        self.events[event.job_id].append((time.monotonic(), event.state, event.reason))


class Soak:
    def __init__(self, *, azurite: Azurite, sim: VoiceLiveSimulator, broker: ServiceBusBroker,
                 blob: BlobServiceClient, concurrency: int) -> None:  # fmt: skip
        self.azurite, self.sim, self.broker, self.blob = azurite, sim, broker, blob
        self.concurrency = concurrency
        self.policy = BlobPolicy(
            allowed_inputs=frozenset({(DEV_ACCOUNT, "audio-in")}),
            results=(azurite.blob_endpoint, DEV_ACCOUNT, "results"),
            dev_endpoints=(DevEndpoint.from_url(azurite.blob_endpoint),),
        )

    async def upload(self, data: bytes, name: str) -> str:
        await self.blob.get_blob_client("audio-in", name).upload_blob(data, overwrite=True)
        return f"{self.azurite.blob_endpoint}/audio-in/{name}"

    def ports(self) -> Ports:
        voice = SdkVoiceConnector(endpoint=self.sim.endpoint, credential=AzureKeyCredential("devstack-key"))
        return Ports(
            inputs=BlobInput(self.blob, max_bytes=50 * 2**20),
            artifacts=lambda ref: BlobArtifacts(self.blob, ref),
            voice=AdmittedConnector(voice, TokenBucket(100_000)),
            tools=ToolRegistry.default(),
            model_default="gpt-realtime",
        )

    async def run(self, phase: Phase, *, timeout_s: float) -> None:
        options = RunnerOptions(
            max_concurrent_jobs=self.concurrency, max_attempts=5, shutdown_grace_s=60, receive_wait_s=0.5,
            retry_base_s=0.2, retry_cap_s=2.0, reconnect_base_s=0.1, reconnect_cap_s=1.0,
        )  # fmt: skip
        ports = self.ports()
        async with ServiceBusClient.from_connection_string(
            self.broker.connection_string, **SB_OPTIONS
        ) as bus:
            consumer = QueueConsumer(bus, queue=phase.queue)
            worker = Worker(consumer, ports, policy=self.policy, settler=Settler(consumer, ports),
                            options=options, observer=phase.observe)  # fmt: skip
            before = vars((await self.broker.state()).counters)
            task = asyncio.create_task(worker.run(), name=f"worker-{phase.name}")
            started = time.monotonic()
            try:
                async with JobClient(bus, queue=phase.queue) as client:
                    phase.enqueued_at = time.monotonic()
                    await client.enqueue_many(phase.bodies)
                await self.broker.wait_for(
                    lambda s: (
                        s.queue(phase.queue).total == 0
                        and s.dead_letters(phase.queue).total >= len(phase.bad)
                    ),
                    timeout=timeout_s,
                )
            except TimeoutError:
                phase.timed_out = True
            finally:
                worker.shutdown()
                await asyncio.wait_for(task, 120)
                phase.seconds = time.monotonic() - started
        after = vars((await self.broker.state()).counters)
        phase.broker_counters = {k: after[k] - before[k] for k in after}
        print(f"{phase.name}: {len(phase.bodies)} jobs in {phase.seconds:.1f} s {worker!r}", file=sys.stderr)

    async def audit(self, phase: Phase) -> dict[str, Any]:
        """Each job against what it should have become (see the module docstring)."""
        state = await self.broker.state()
        queued = {m.message_id for m in state.queue(phase.queue).messages}
        letters = {m.message_id: m.dead_letter_reason for m in state.dead_letters(phase.queue).messages}
        gate = asyncio.Semaphore(16)
        checks = await asyncio.gather(*(self._check(phase, b["job_id"], queued, letters, gate)
                                        for b in phase.bodies))  # fmt: skip
        problems = [c for c in checks if c["problem"]]
        counts = Counter(c["problem"] for c in problems)
        return {
            "lost": counts["lost"],
            "duplicated": counts["duplicated"],
            "wrongly_settled": counts["wrongly_settled"],
            "absorbed_redeliveries": sum(c["absorbed"] for c in checks),
            "examples": problems[:10],
        }

    async def _check(self, phase: Phase, job_id: str, queued: set[str | None], letters: dict[Any, Any],
                     gate: asyncio.Semaphore) -> dict[str, Any]:  # fmt: skip
        async with gate:
            store = BlobArtifacts(self.blob, self.policy.default_output(job_id))
            manifest, _ = await store.read_manifest()
            blobs = await self._blobs(job_id) if manifest is not None else {}
        states = [s for _, s, _ in phase.events.get(job_id, [])]
        completes = states.count("complete")
        after = states[states.index("complete") + 1 :] if completes else []
        result: dict[str, Any] = {"job_id": job_id, "states": states, "problem": None,
                                  "absorbed": states.count("duplicate")}  # fmt: skip
        if job_id in queued or (manifest is None and job_id not in letters):
            result["problem"] = "lost"
        elif completes > 1 or any(s != "duplicate" for s in after if s != "running"):
            result["problem"] = "duplicated"
        elif job_id in phase.bad:
            ok = letters.get(job_id) == "UnsupportedAudio" and manifest is not None
            ok = ok and (manifest.status, manifest.reason) == ("failed", "UnsupportedAudio")  # type: ignore[union-attr]
            result["problem"] = None if ok else "wrongly_settled"
        else:
            ok = job_id not in letters and manifest is not None and manifest.status == "succeeded"
            ok = ok and _matches(manifest, blobs)
            result["problem"] = None if ok else "wrongly_settled"
        return result

    async def _blobs(self, job_id: str) -> dict[str, bytes]:
        container = self.blob.get_container_client("results")
        out = {}
        async for blob in container.list_blobs(name_starts_with=f"{job_id}/"):
            data = await (await container.get_blob_client(blob.name).download_blob()).readall()
            out[blob.name.split("/", 1)[1]] = data
        return out


def _matches(manifest: Any, blobs: dict[str, bytes]) -> bool:
    listed = {a.name: a for a in manifest.artifacts}
    if set(blobs) - {"manifest.json"} != set(listed):
        return False
    return all(
        (len(blobs[n]), hashlib.sha256(blobs[n]).hexdigest()) == (a.size, a.sha256) for n, a in listed.items()
    )


def timings(phase: Phase) -> dict[str, Any]:
    """Overhead of successful attempts and end-to-end latency, in ms."""
    overhead, e2e = [], []
    for job_id, events in phase.events.items():
        if job_id in phase.bad:
            continue
        for i, (t, state, _) in enumerate(events):
            if state == "complete" and i > 0 and events[i - 1][1] == "running":
                overhead.append((t - events[i - 1][0] - WIRE_S) * 1000)
        if events and events[-1][1] in {"complete", "dead_letter"}:
            e2e.append((events[-1][0] - phase.enqueued_at) * 1000)

    def summary(values: list[float]) -> dict[str, float]:
        return {"n": len(values), "median": pct(values, 50), "p95": pct(values, 95), "max": pct(values, 100)}

    return {
        "overhead_ms": summary(overhead),
        "end_to_end_ms": summary(e2e),
        "jobs_per_s": round(len(phase.bodies) / phase.seconds, 2) if phase.seconds else None,
        "seconds": round(phase.seconds, 1),
        "timed_out": phase.timed_out,
    }


def fault_schedule(
    rng: random.Random, *, connections: int, drops: float, throttles: float
) -> list[Fault | None]:
    """One entry per connection attempt, in order: a drop, a 429, or nothing."""
    frames = int((AUDIO_S + TRAILING_MS / 1000) * 50)
    out: list[Fault | None] = []
    for _ in range(connections):
        x = rng.random()
        if x < drops:
            out.append(CloseAfter(kind=CloseKind.DROP, appends=rng.randint(1, frames - 1)))
        elif x < drops + throttles:
            out.append(Refuse(status=429, retry_after_s=1))
        else:
            out.append(None)
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    queues = {q: QueueOptions(lock_duration_s=30.0, max_delivery_count=10) for q in ("baseline", "soak")}
    async with Azurite(containers=("audio-in", "results")) as azurite, VoiceLiveSimulator(
        mode=Mode.ZERO_LATENCY, connects_per_minute=None
    ) as sim, ServiceBusBroker(queues=queues) as broker, blob_service_client(
        account_url="", connection_string=azurite.connection_string
    ) as blob:  # fmt: skip
        soak = Soak(azurite=azurite, sim=sim, broker=broker, blob=blob, concurrency=args.concurrency)
        good = await soak.upload(good_audio(), "soak/good.wav")
        bad = await soak.upload(bad_audio(rng), "soak/garbage.flac")

        def job(url: str) -> dict[str, Any]:
            return {"version": 1, "job_id": f"s-{uuid.uuid4().hex[:12]}", "input": {"url": url},
                    "streaming": {"pace": PACE, "trailing_silence_ms": TRAILING_MS}}  # fmt: skip

        baseline = Phase("baseline", "baseline", [job(good) for _ in range(args.baseline_jobs)], set())
        await soak.run(baseline, timeout_s=args.timeout_s)

        n_bad = round(args.jobs * args.bad_audio)
        bodies = [job(bad) for _ in range(n_bad)] + [job(good) for _ in range(args.jobs - n_bad)]
        rng.shuffle(bodies)
        faulted = Phase("soak", "soak", bodies, {b["job_id"] for b in bodies if b["input"]["url"] == bad})
        schedule = fault_schedule(rng, connections=args.jobs, drops=args.drops, throttles=args.throttles)
        first = len(sim.connections)
        for fault in schedule:
            if fault is None:
                sim.faults.next()
            else:
                sim.faults.next(fault)
        await soak.run(faulted, timeout_s=args.timeout_s)
        sim.faults.clear()
        records = sim.connections[first:]
        injected = {
            "connections": len(records),
            "drops_scheduled": sum(isinstance(f, CloseAfter) for f in schedule),
            "throttles_scheduled": sum(isinstance(f, Refuse) for f in schedule),
            "refused_429": sum(r.handshake_status == 429 for r in records),
            "bad_audio_jobs": n_bad,
        }
        audit = await soak.audit(faulted)
        base_audit = await soak.audit(baseline)
    final_states = Counter(ev[-1][1] for ev in faulted.events.values() if ev)
    attempts = Counter(sum(s == "running" for _, s, _ in ev) for ev in faulted.events.values())
    return {
        "parameters": {
            "jobs": args.jobs,
            "baseline_jobs": args.baseline_jobs,
            "concurrency": args.concurrency,
            "pace": PACE,
            "audio_s": AUDIO_S,
            "trailing_silence_ms": TRAILING_MS,
            "drops": args.drops,
            "throttles": args.throttles,
            "bad_audio": args.bad_audio,
            "seed": args.seed,
            "retry_base_s": 0.2,
            "retry_cap_s": 2.0,
            "max_attempts": 5,
        },
        "results": {
            "lost": audit["lost"],
            "duplicated": audit["duplicated"],
            "wrongly_settled": audit["wrongly_settled"],
            "absorbed_redeliveries": audit["absorbed_redeliveries"],
            "final_states": dict(final_states),
            "attempts_per_job": {str(k): v for k, v in sorted(attempts.items())},
            "injected": injected,
            "timings": timings(faulted),
            "broker_counters": faulted.broker_counters,
            "examples": audit["examples"],
        },
        "baseline": {
            "lost": base_audit["lost"],
            "duplicated": base_audit["duplicated"],
            "wrongly_settled": base_audit["wrongly_settled"],
            "timings": timings(baseline),
            "broker_counters": baseline.broker_counters,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--baseline-jobs", type=int, default=None, help="default: min(jobs, 300)")
    parser.add_argument("--quick", action="store_true", help="200 jobs, 100 baseline")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--drops", type=float, default=0.05)
    parser.add_argument("--throttles", type=float, default=0.02)
    parser.add_argument("--bad-audio", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs = min(args.jobs, 200)
        args.baseline_jobs = args.baseline_jobs or 100
    args.baseline_jobs = args.baseline_jobs or min(args.jobs, 300)
    result = asyncio.run(main_async(args))
    path = write_result("soak", result)
    r = result["results"]
    print(f"lost {r['lost']} / duplicated {r['duplicated']} / wrongly settled {r['wrongly_settled']}; "
          f"wrote {path}", file=sys.stderr)  # fmt: skip
    return 0 if (r["lost"], r["duplicated"], r["wrongly_settled"]) == (0, 0, 0) else 1


if __name__ == "__main__":
    sys.exit(main())
