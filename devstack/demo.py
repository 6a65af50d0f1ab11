"""`voicelive-worker demo`: the whole product on the local stack, in about a minute.

Starts the devstack (Service Bus broker, Voice Live simulator, Azurite) on free loopback ports, uploads
the sample audio in `samples/`, enqueues a handful of jobs with the real `JobClient`, runs the real worker,
shows a live table, then a summary, and downloads each job's artifacts to `demo-output/<job_id>/`.
Exit 0 when every job ended as expected. Ctrl-C stops everything; nothing is left running.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from devstack._standin import StandIn
from devstack.remote import RemoteStandIn
from devstack.stack import INPUT_CONTAINER, RESULTS_CONTAINER, DevStack, default_stand_ins
from worker.client import JobClient
from worker.config import Settings
from worker.jobs import Manifest
from worker.logs import JsonFormatter
from worker.pipeline import JobProgress
from worker.runner import JobEvent, Worker
from worker.service import serve
from worker.storage import BlobArtifacts, blob_service_client

__all__ = ["DEMO_JOBS", "DemoJob", "run_demo"]

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
TRANSCRIBE = {"input_audio_transcription": {"model": "azure-speech", "language": "en-US"}}


@dataclass(frozen=True, slots=True)
class DemoJob:
    job_id: str
    title: str
    sample: str
    expect: str  # "succeeded" or the dead-letter reason
    fields: dict[str, Any] = field(default_factory=dict)


DEMO_JOBS = (
    DemoJob("demo-call-3turns", "multi-turn call", "call_3turns_16k.wav", "succeeded",
            {"session": {"instructions": "You are a helpful travel agent.", **TRANSCRIBE}}),
    DemoJob("demo-weather-tool", "tool call (get_weather)", "weather_44k1_stereo.wav", "succeeded",
            {"session": TRANSCRIBE, "tools": ["get_weather"]}),
    DemoJob("demo-booking-mp3", "mp3, tool call (book_table)", "booking_48k_stereo.mp3", "succeeded",
            {"session": TRANSCRIBE, "tools": ["book_table"]}),
    DemoJob("demo-broken-file", "deliberately bad file", "broken_not_audio.wav", "UnsupportedAudio"),
)  # fmt: skip


@dataclass
class _Row:
    job: DemoJob
    state: str = "queued"
    progress: JobProgress | None = None
    reason: str | None = None
    manifest: Manifest | None = None
    attempts: int = 0

    @property
    def finished(self) -> bool:
        return self.state in {"complete", "duplicate", "dead_letter"}

    @property
    def outcome(self) -> str:
        if self.state in {"complete", "duplicate"}:
            return "succeeded"
        return self.reason or self.state

    @property
    def as_expected(self) -> bool:
        return self.finished and self.outcome == self.job.expect


async def run_demo(*, pace: float, out_dir: Path, console: Console) -> bool:
    """Run the demo; True when every job ended in its expected state."""
    rows = {job.job_id: _Row(job) for job in DEMO_JOBS}
    all_done = asyncio.Event()
    stop = asyncio.Event()
    out_dir.mkdir(parents=True, exist_ok=True)
    restore_logging = _log_to(out_dir / "worker.log")

    def observe(event: JobEvent) -> None:
        row = rows.get(event.job_id)
        if row is None:
            return
        row.state, row.reason = event.state, event.reason or row.reason
        row.progress = event.progress or row.progress
        if event.state == "running":
            row.attempts += 1
        if all(r.finished for r in rows.values()):
            all_done.set()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    started = time.monotonic()
    try:
        console.print("[bold]Starting devstack[/] (Service Bus broker, Voice Live simulator, Azurite)…")
        async with DevStack(stand_ins=_stand_ins()) as stack:
            settings = _settings(stack)
            await _upload_and_enqueue(settings, stack, pace=pace)
            console.print(f"Enqueued {len(DEMO_JOBS)} jobs at pace {pace:g}; running the worker.\n")
            await _run_worker(settings, rows, observe, all_done=all_done, stop=stop, console=console)
            if stop.is_set():
                console.print("\n[yellow]Interrupted: jobs in flight were abandoned; everything is stopped.")
                return False
            await _collect(settings, rows, out_dir)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        restore_logging()
    console.print(_summary(rows, out_dir, time.monotonic() - started))
    return all(r.as_expected for r in rows.values())


def _stand_ins() -> list[StandIn]:
    """The usual stack, with the simulator transcribing for real (pocketsphinx) so transcripts and
    reports show what the caller said. It runs in its own process, as the real service is remote: its
    recogniser must not steal the worker's event loop (that would show up as pacing lag)."""
    return [
        RemoteStandIn("voicelive", "--voicelive-recognizer", "pocketsphinx") if s.name == "voicelive" else s
        for s in default_stand_ins()
    ]


def _settings(stack: DevStack) -> Settings:
    env = {key.lower(): value for key, value in stack.env().items()}
    # Ctrl-C gives jobs in flight two seconds, then abandons them: a demo should stop promptly.
    env |= {"health_port": "0", "max_concurrent_jobs": "4", "shutdown_grace_s": "2"}
    return Settings.model_validate(env)


def _log_to(path: Path) -> Callable[[], None]:
    """Send logs to `path` (the live table owns the terminal); returns a function that undoes it."""
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("azure").setLevel(logging.WARNING)

    def restore() -> None:
        root.handlers[:] = saved
        root.setLevel(level)
        handler.close()

    return restore


async def _upload_and_enqueue(settings: Settings, stack: DevStack, *, pace: float) -> None:
    storage = settings.storage_config()
    assert storage.connection_string is not None
    endpoint = storage.account_url.rstrip("/")
    conn = storage.connection_string.get_secret_value()
    async with blob_service_client(account_url="", connection_string=conn) as blob:
        bodies = []
        for job in DEMO_JOBS:
            name = f"demo/{job.sample}"
            data = (SAMPLES / job.sample).read_bytes()
            await blob.get_blob_client(INPUT_CONTAINER, name).upload_blob(data, overwrite=True)
            # A fresh demo always re-runs: drop an earlier run's outputs for the same job id.
            results = blob.get_container_client(RESULTS_CONTAINER)
            async for old in results.list_blobs(name_starts_with=f"{job.job_id}/"):
                await results.delete_blob(old.name)
            body: dict[str, Any] = {"version": 1, "job_id": job.job_id,
                                    "input": {"url": f"{endpoint}/{INPUT_CONTAINER}/{name}"},
                                    "streaming": {"pace": pace}, "metadata": {"demo": job.title}}  # fmt: skip
            bodies.append(body | job.fields)
    queue = settings.queue_config()
    assert queue.connection_string is not None
    conn = queue.connection_string.get_secret_value()
    async with JobClient.from_connection_string(conn, queue=queue.queue) as jobs:
        await jobs.enqueue_many(bodies)


async def _run_worker(
    settings: Settings,
    rows: dict[str, _Row],
    observe: Any,
    *,
    all_done: asyncio.Event,
    stop: asyncio.Event,
    console: Console,
) -> None:
    worker_ref: list[Worker] = []
    task = asyncio.create_task(
        serve(settings, observer=observe, started=worker_ref.append, install_signals=False)
    )
    with Live(_table(rows), console=console, refresh_per_second=4, transient=False) as live:
        async for _ in _ticks(all_done, stop, task):
            live.update(_table(rows))
        live.update(_table(rows))
    if worker_ref:
        worker_ref[0].shutdown()
    await task


async def _ticks(*events_or_task: Any) -> AsyncIterator[None]:
    """Yield four times a second (a display refresh) until any event is set or the task ends."""
    while not any(e.is_set() if isinstance(e, asyncio.Event) else e.done() for e in events_or_task):
        yield
        await asyncio.sleep(0.25)


def _table(rows: dict[str, _Row]) -> Table:
    table = Table(title="voicelive-worker demo", title_justify="left")
    for column in ("job", "what", "state", "audio streamed", "turns", "responses"):
        table.add_column(column)
    for row in rows.values():
        progress = row.progress
        streamed = f"{progress.streamed_ms / 1000:5.1f} s" if progress else "—"
        state = Text(
            row.state if row.state != "dead_letter" else f"dead-letter: {row.reason}",
            style="green" if row.state in {"complete", "duplicate"} else "red" if row.finished else "",
        )
        turns, responses = (progress.turns, progress.responses) if progress else (0, 0)
        table.add_row(row.job.job_id, row.job.title, state, streamed, str(turns), str(responses))
    return table


async def _collect(settings: Settings, rows: dict[str, _Row], out_dir: Path) -> None:
    storage = settings.storage_config()
    assert storage.connection_string is not None
    policy = settings.blob_policy()
    conn = storage.connection_string.get_secret_value()
    async with blob_service_client(account_url="", connection_string=conn) as blob:
        container = blob.get_container_client(RESULTS_CONTAINER)
        for job_id, row in rows.items():
            row.manifest, _ = await BlobArtifacts(blob, policy.default_output(job_id)).read_manifest()
            async for item in container.list_blobs(name_starts_with=f"{job_id}/"):
                target = out_dir / item.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(await (await container.download_blob(item.name)).readall())


def _summary(rows: dict[str, _Row], out_dir: Path, elapsed_s: float) -> Group:
    table = Table(title="summary", title_justify="left")
    for column in ("job", "expected", "ended", "", "pacing lag p99", "first response", "artifacts"):
        table.add_column(column)
    for job_id, row in rows.items():
        m = row.manifest.metrics if row.manifest else None
        lag = f"{m.pacing_lag_p99_ms:.1f} ms" if m and m.pacing_lag_p99_ms is not None else "—"
        first = (
            f"{m.first_response_latency_ms:.0f} ms" if m and m.first_response_latency_ms is not None else "—"
        )
        where = out_dir / job_id
        table.add_row(job_id, row.job.expect, row.outcome, "[green]✓" if row.as_expected else "[red]✗",
                      lag, first, f"{where}/" if where.exists() else "—")  # fmt: skip
    ok = all(r.as_expected for r in rows.values())
    verdict = Text(f"{'All jobs ended as expected' if ok else 'Some jobs did not end as expected'} "
                   f"in {elapsed_s:.0f} s. Open {out_dir}/<job_id>/report.html for a picture of each job; "
                   f"worker log: {out_dir}/worker.log", style="bold green" if ok else "bold red")  # fmt: skip
    return Group(table, verdict)
