"""Harness for runtime tests: broker + Azurite + simulator, real SDK clients, an in-process Worker.

`run_until_settled(...)` is the one entry point a test needs: enqueue bodies, run the worker until the
broker holds no job message (active, scheduled or locked) and the DLQ has the expected count, then shut
it down and return what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from azure.core.credentials import AzureKeyCredential
from azure.servicebus.aio import ServiceBusClient
from azure.storage.blob.aio import BlobServiceClient

from devstack.azurite import DEV_ACCOUNT, Azurite
from devstack.servicebus import BrokerState, QueueOptions, ServiceBusBroker
from devstack.voicelive import VoiceLiveSimulator
from worker.admission import AdmittedConnector, TokenBucket
from worker.blobs import BlobPolicy, DevEndpoint
from worker.client import JobClient
from worker.jobs import Manifest
from worker.pipeline import Ports
from worker.queue import QueueConsumer
from worker.runner import JobEvent, RunnerOptions, Worker
from worker.settle import Settler
from worker.storage import BlobArtifacts, BlobInput, blob_service_client
from worker.voice.connection import SdkVoiceConnector
from worker.voice.session import SessionOptions
from worker.voice.tools import ToolRegistry

AUDIO = Path(__file__).resolve().parents[2].parent / "shared" / "audio"
QUEUE = "audio-jobs"
FAST_RETRY = {"retry_base_s": 0.05, "retry_cap_s": 0.2, "reconnect_base_s": 0.05, "reconnect_cap_s": 0.5}
SB_OPTIONS: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.05, "retry_backoff_max": 0.5}


@contextlib.asynccontextmanager
async def broker(*, lock_s: float = 10.0, max_deliveries: int = 10) -> AsyncIterator[ServiceBusBroker]:
    queues = {QUEUE: QueueOptions(lock_duration_s=lock_s, max_delivery_count=max_deliveries)}
    async with ServiceBusBroker(
        queues=queues, lock_duration_s=lock_s, max_delivery_count=max_deliveries
    ) as b:
        yield b


@dataclass
class Run:
    events: list[JobEvent] = field(default_factory=list)
    state: BrokerState | None = None
    worker: Worker | None = None

    def actions(self) -> dict[str, str]:
        """Last settlement action per job id."""
        return {e.job_id: e.state for e in self.events if e.state not in {"running", "received"}}


class Stack:
    def __init__(self, azurite: Azurite, sim: VoiceLiveSimulator, sb: ServiceBusBroker,
                 blob: BlobServiceClient) -> None:  # fmt: skip
        self.azurite, self.sim, self.broker, self.blob = azurite, sim, sb, blob
        self.policy = BlobPolicy(
            allowed_inputs=frozenset({(DEV_ACCOUNT, "audio-in")}),
            results=(azurite.blob_endpoint, DEV_ACCOUNT, "results"),
            dev_endpoints=(DevEndpoint.from_url(azurite.blob_endpoint),),
        )
        self.uploaded: dict[str, str] = {}

    def env(self, **extra: str) -> dict[str, str]:
        env = {**self.azurite.env(), **self.sim.env(), **self.broker.env()}
        return env | {"ALLOWED_INPUT_CONTAINERS": f"{DEV_ACCOUNT}/audio-in", "HEALTH_PORT": "0", **extra}

    async def upload(self, path: Path) -> str:
        if str(path) not in self.uploaded:
            name = f"{uuid.uuid4().hex[:8]}/{path.name}"
            await self.blob.get_blob_client("audio-in", name).upload_blob(path.read_bytes(), overwrite=True)
            self.uploaded[str(path)] = f"{self.azurite.blob_endpoint}/audio-in/{name}"
        return self.uploaded[str(path)]

    async def job(self, audio: str = "hello_24k_mono.wav", **fields: Any) -> dict[str, Any]:
        url = await self.upload(AUDIO / audio)
        body: dict[str, Any] = {"version": 1, "job_id": f"j-{uuid.uuid4().hex[:10]}", "input": {"url": url}}
        body["streaming"] = {"pace": 8.0, "trailing_silence_ms": 500} | fields.pop("streaming", {})
        return body | fields

    def bus(self) -> ServiceBusClient:
        return ServiceBusClient.from_connection_string(self.broker.connection_string, **SB_OPTIONS)

    async def enqueue(self, bodies: list[dict[str, Any]], *, raw: list[bytes] = ()) -> None:  # type: ignore[assignment]
        async with self.bus() as client, JobClient(client, queue=QUEUE) as jobs:
            if bodies:
                await jobs.enqueue_many(bodies)
            if raw:
                from azure.servicebus import ServiceBusMessage

                async with client.get_queue_sender(QUEUE) as sender:
                    for body in raw:
                        await sender.send_messages(ServiceBusMessage(body, message_id=uuid.uuid4().hex))

    def ports(self, *, bucket: TokenBucket | None = None) -> Ports:
        voice = SdkVoiceConnector(endpoint=self.sim.endpoint, credential=AzureKeyCredential("devstack-key"))
        return Ports(
            inputs=BlobInput(self.blob, max_bytes=50 * 2**20),
            artifacts=lambda ref: BlobArtifacts(self.blob, ref),
            voice=AdmittedConnector(voice, bucket or TokenBucket(100_000)),
            tools=ToolRegistry.default(),
            model_default="gpt-realtime",
            session_options=SessionOptions(drain_window_s=0.3),
        )

    async def run_until_settled(
        self,
        *,
        dead_letters: int = 0,
        options: RunnerOptions | None = None,
        bucket: TokenBucket | None = None,
        timeout_s: float = 120.0,
        during: Callable[[Worker], Any] | None = None,
    ) -> Run:
        """Run a Worker until the queue is empty (no active/scheduled/locked) and the DLQ has
        `dead_letters` messages; then shut it down (drain) and return events and final broker state."""
        run = Run()
        options = options or RunnerOptions(max_concurrent_jobs=4, receive_wait_s=0.5, **FAST_RETRY)
        ports = self.ports(bucket=bucket)
        async with self.bus() as client:
            consumer = QueueConsumer(client, queue=QUEUE)
            worker = Worker(consumer, ports, policy=self.policy, settler=Settler(consumer, ports),
                            options=options, observer=run.events.append)  # fmt: skip
            run.worker = worker
            task = asyncio.create_task(worker.run())
            try:
                if during is not None:
                    await during(worker)
                run.state = await self.broker.wait_for(
                    lambda s: s.queue(QUEUE).total == 0 and s.dead_letters(QUEUE).total == dead_letters,
                    timeout=timeout_s,
                )
            finally:
                worker.shutdown()
                await asyncio.wait_for(task, 60)
        return run

    async def manifest(self, job_id: str) -> Manifest | None:
        manifest, _ = await BlobArtifacts(self.blob, self.policy.default_output(job_id)).read_manifest()
        return manifest

    async def artifacts(self, job_id: str) -> dict[str, bytes]:
        container = self.blob.get_container_client("results")
        out = {}
        async for blob in container.list_blobs(name_starts_with=f"{job_id}/"):
            data = await (await container.get_blob_client(blob.name).download_blob()).readall()
            out[blob.name.split("/", 1)[1]] = data
        return out


@contextlib.asynccontextmanager
async def stack(azurite: Azurite, sim: VoiceLiveSimulator, **broker_options: Any) -> AsyncIterator[Stack]:
    async with broker(**broker_options) as sb, blob_service_client(
        account_url="", connection_string=azurite.connection_string
    ) as blob:  # fmt: skip
        yield Stack(azurite, sim, sb, blob)


def body_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


# ---- the real `voicelive-worker run` process ----------------------------------------------------------

#: Settings a worker subprocess must not inherit from the machine running the tests.
_AMBIENT = ("SERVICEBUS_", "STORAGE_", "VOICELIVE_", "APPLICATIONINSIGHTS_", "AZURE_", "OTEL_")


class WorkerProcess:
    """A `python -m worker run` subprocess (what `voicelive-worker run` runs), its stderr read as JSON lines.

    `start(env)` returns once the worker logged "worker up" (so `port` is the health port); `wait_log`
    waits for a line; `signal`/`kill` and `wait_exit` drive its end. `aclose()` kills it if it still runs.
    Lines that are not JSON (typer's error message, a traceback) are kept as `{"message": line}`.
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.records: list[dict[str, Any]] = []
        self.port = 0
        self._new = asyncio.Event()
        self._eof = False
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, env: dict[str, str], *, cwd: Path, up_within_s: float = 30.0) -> WorkerProcess:
        base = {k: v for k, v in os.environ.items() if not k.startswith(_AMBIENT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "run",
            env=base | {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"} | env, cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, limit=2**20,
        )  # fmt: skip
        worker = cls(proc)
        try:
            up = await worker.wait_log(lambda r: "worker up" in r["message"], timeout=up_within_s)
        except BaseException:
            await worker.aclose()
            raise
        worker.port = int(up["message"].rsplit(":", 1)[1])
        return worker

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            self.records.append(record if isinstance(record, dict) else {"message": line})
            self._new.set()
        self._eof = True
        self._new.set()

    def messages(self) -> list[str]:
        return [str(r.get("message", "")) for r in self.records]

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.messages()[-n:])

    async def wait_log(
        self,
        pred: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """The first log record (from the start) for which `pred` holds; AssertionError if the process
        closed stderr first, TimeoutError after `timeout` s."""
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                for record in self.records[seen:]:
                    if pred(record):
                        return record
                seen = len(self.records)
                if self._eof:
                    raise AssertionError(f"worker ended without that log line; stderr tail:\n{self.tail()}")
                self._new.clear()
                await self._new.wait()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.kill()

    async def wait_exit(self, *, timeout: float = 60.0) -> int:  # noqa: ASYNC109
        """The exit code, once the process ended and its stderr was read to the end."""
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            await self._reader
        return code

    async def aclose(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        with contextlib.suppress(Exception):  # the reader's own failure is not the test's concern here
            await asyncio.wait_for(self._reader, 10)


async def http_status(port: int, path: str) -> int:
    """GET http://127.0.0.1:`port``path` and return the status."""
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status


async def check_artifacts(s: Stack, job_id: str) -> Manifest:
    """The job's one succeeded manifest, after checking every blob under its prefix is listed in it with
    the same size and sha256 (no blob of another attempt mixed in, nothing missing)."""
    blobs = await s.artifacts(job_id)
    manifest = await s.manifest(job_id)
    assert manifest is not None and manifest.status == "succeeded", (job_id, manifest)
    listed = {a.name: a for a in manifest.artifacts}
    assert set(blobs) - {"manifest.json"} == set(listed), (job_id, sorted(blobs), sorted(listed))
    for name, entry in listed.items():
        data = blobs[name]
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry.size, entry.sha256), (job_id, name)
    return manifest
