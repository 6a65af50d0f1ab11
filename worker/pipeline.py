"""`process_job`: the one place where the stages are wired — job → frames → session → artifacts → manifest.

The pipeline knows nothing about Service Bus: it takes a parsed job and small ports, and returns an
outcome for the caller to settle. Permanent failures still commit a failed manifest (so a reader can see
why); transient ones commit nothing and re-raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from opentelemetry import trace

from worker.artifacts import ArtifactFile, render_artifacts
from worker.audio import AudioFormat, InputFacts, open_frames
from worker.blobs import BlobRef
from worker.errors import Permanent
from worker.jobs import ArtifactEntry, InputInfo, Job, Manifest, Metrics, ParsedJob, SessionInfo, Timings
from worker.pacing import Paced, PacingStats, Unpaced, WirePacer
from worker.storage import ArtifactStore, InputSource, InputStream, ManifestConflict
from worker.telemetry import Attr, SpanName, record_error, tracer
from worker.voice.ports import VoiceConnector
from worker.voice.session import SessionOptions, SessionResult, run_session
from worker.voice.timeline import Timeline
from worker.voice.tools import ToolRegistry

__all__ = ["JobOutcome", "JobProgress", "Ports", "commit_failure", "process_job", "worker_version"]

log = logging.getLogger(__name__)


def worker_version() -> str:
    try:
        return version("voicelive-batch-worker")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


@dataclass(frozen=True, kw_only=True)
class Ports:
    """The adapters a job needs. The caller owns (and closes) every one of them."""

    inputs: InputSource
    artifacts: Callable[[BlobRef], ArtifactStore]
    voice: VoiceConnector
    tools: ToolRegistry
    model_default: str
    session_options: SessionOptions = field(default_factory=SessionOptions)


@dataclass
class JobProgress:
    """Live view of one job for progress displays; read it from another task, never write it."""

    job_id: str
    state: Literal["queued", "reading", "streaming", "writing", "done", "failed"] = "queued"
    input_ms_total: float | None = None
    pacer: WirePacer | None = None
    timeline: Timeline | None = None

    @property
    def streamed_ms(self) -> float:
        return self.pacer.input_ms_sent if self.pacer else 0.0

    @property
    def turns(self) -> int:
        return len(self.timeline.user_turns) if self.timeline else 0

    @property
    def responses(self) -> int:
        return len(self.timeline.responses) if self.timeline else 0


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How a job ended. `duplicate`: a succeeded manifest already existed, nothing was done."""

    manifest: Manifest
    duplicate: bool = False


async def process_job(
    parsed: ParsedJob,
    ports: Ports,
    *,
    attempt: int = 1,
    trace_id: str | None = None,
    progress: JobProgress | None = None,
) -> JobOutcome:
    """Run one job to its committed manifest.

    Returns the succeeded (or pre-existing) manifest. Raises `Permanent` after committing a failed
    manifest, `Transient`/`Throttled` with nothing committed, and lets cancellation through untouched.
    """
    job = parsed.job
    progress = progress or JobProgress(job.job_id)
    store = ports.artifacts(parsed.output)
    existing, existing_version = await store.read_manifest()
    if existing is not None and existing.status == "succeeded":
        log.info("⊘ %s duplicate: a succeeded manifest exists", job.job_id)
        return JobOutcome(existing, duplicate=True)

    run = _Run(parsed, ports, attempt=attempt, trace_id=trace_id, progress=progress)
    try:
        manifest = await run.execute(store)
    except Permanent as exc:
        record_error(trace.get_current_span(), exc, reason=str(exc.reason))
        progress.state = "failed"
        failed = run.manifest(status="failed", reason=str(exc.reason), error=exc.detail)
        await _shielded(store.put_manifest(failed, if_version=existing_version))
        log.info("✗ %s failed permanently: %s", job.job_id, exc)
        raise
    await _shielded(store.put_manifest(manifest, if_version=existing_version))
    progress.state = "done"
    return JobOutcome(manifest)


async def commit_failure(parsed: ParsedJob, ports: Ports, *, reason: str, detail: str, attempt: int) -> None:
    """Write a failed manifest for a job that will not be retried (unless a succeeded one exists)."""
    store = ports.artifacts(parsed.output)
    existing, existing_version = await store.read_manifest()
    if existing is not None and existing.status == "succeeded":
        return
    run = _Run(parsed, ports, attempt=attempt, trace_id=None, progress=JobProgress(parsed.job.job_id))
    with contextlib.suppress(ManifestConflict):  # another run committed meanwhile: theirs stands
        await _shielded(store.put_manifest(run.manifest(status="failed", reason=reason, error=detail),
                                           if_version=existing_version))  # fmt: skip


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for frame in rest:
        yield frame


@contextlib.asynccontextmanager
async def _opened(inputs: InputSource, ref: BlobRef) -> AsyncIterator[InputStream]:
    """`inputs.open(ref)` with a `blob read` span around the opening (properties and first response);
    the chunks that follow are read while streaming, under the session, and are not spanned."""
    async with contextlib.AsyncExitStack() as stack:
        attributes = {Attr.BLOB_CONTAINER: ref.container}
        with tracer().start_as_current_span(SpanName.BLOB_READ, attributes=attributes) as span:
            stream = await stack.enter_async_context(inputs.open(ref))
            span.set_attribute(Attr.BLOB_SIZE, stream.size)
        yield stream


async def _shielded(awaitable: Any, timeout_s: float = 60.0) -> None:
    """The commit point must not be torn by a cancellation arriving mid-write."""
    await asyncio.shield(asyncio.wait_for(awaitable, timeout_s))


class _Run:
    """State of one attempt; `execute` is the straight-line story of a job."""

    def __init__(
        self, parsed: ParsedJob, ports: Ports, *, attempt: int, trace_id: str | None, progress: JobProgress
    ) -> None:
        self.parsed = parsed
        self.job: Job = parsed.job
        self.ports = ports
        self.attempt = attempt
        self.trace_id = trace_id
        self.progress = progress
        self.started_at = datetime.now(UTC)
        self.t0 = time.monotonic()
        self.facts: InputFacts | None = None
        self.stream: InputStream | None = None
        self.result: SessionResult | None = None
        self.artifacts: list[ArtifactEntry] = []

    async def execute(self, store: ArtifactStore) -> Manifest:
        tools = self.ports.tools.resolve(self.job.tools)
        spec = self.job.streaming
        target = AudioFormat(spec.audio_format, spec.sample_rate)
        workdir = Path(tempfile.mkdtemp(prefix=f"vlw-{self.job.job_id[:40]}-"))
        try:
            self.progress.state = "reading"
            async with _opened(self.ports.inputs, self.parsed.input) as stream:
                self.stream = stream
                frames = open_frames(
                    stream.chunks, target=target, channel=spec.channel, frame_ms=spec.frame_ms
                )
                async with frames:
                    # Decode the first frame before opening a session: undecodable input fails here
                    # without spending a Voice Live connection (they are rate-limited per resource).
                    first = await anext(frames)
                    if (declared := frames.facts.declared_duration_s) is not None:
                        self.progress.input_ms_total = declared * 1000  # for progress bars only
                    pacer = WirePacer(
                        Paced(spec.pace) if spec.pace > 0 else Unpaced(),
                        frame_ms=spec.frame_ms,
                        trailing_silence_ms=spec.trailing_silence_ms,
                    )
                    self.progress.pacer = pacer
                    self.progress.state = "streaming"
                    self.result = await run_session(
                        self.job, _prepend(first, frames), connector=self.ports.voice, tools=tools,
                        audio_format=target, pacer=pacer, workdir=workdir,
                        model_default=self.ports.model_default, options=self.ports.session_options,
                        on_timeline=self._track,
                    )  # fmt: skip
                    self.facts = frames.facts
            self.progress.state = "writing"
            with tracer().start_as_current_span(SpanName.ARTIFACTS_WRITE) as span:
                files = await asyncio.to_thread(self._render, workdir)
                for item in files:
                    self.artifacts.append(
                        await store.put(item.name, item.path, content_type=item.content_type)
                    )
                span.set_attribute(Attr.ARTIFACT_COUNT, len(self.artifacts))
                span.set_attribute(Attr.ARTIFACT_BYTES, sum(a.size for a in self.artifacts))
            return self.manifest(status="succeeded")
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    def _track(self, timeline: Timeline) -> None:
        self.progress.timeline = timeline

    def _render(self, workdir: Path) -> list[ArtifactFile]:
        assert self.result is not None
        outputs = self.job.outputs
        header = {
            "job_id": self.job.job_id,
            "session": self._session_info().model_dump(),
            "input": self._input_info().model_dump(),
        }
        return render_artifacts(
            timeline=self.result.timeline, header=header, workdir=workdir,
            input_pcm=self.result.input_pcm, input_sample_rate=self.result.input_sample_rate,
            response_audio=outputs.response_audio, conversation_audio=outputs.conversation_audio,
            events_file=self.result.events_file, report=outputs.report,
        )  # fmt: skip

    def manifest(self, *, status: Literal["succeeded", "failed"], reason: str | None = None,
                 error: str | None = None) -> Manifest:  # fmt: skip
        finished = datetime.now(UTC)
        result = self.result
        warnings = list(self.facts.warnings) if self.facts else []
        if result is not None:
            warnings += result.timeline.warnings
        return Manifest(
            job_id=self.job.job_id,
            status=status,
            reason=reason,
            error=error,
            attempt=self.attempt,
            timings=Timings(
                started_at=self.started_at,
                finished_at=finished,
                connect_ms=result.connect_ms if result else None,
                stream_s=result.pacing.wall_s if result else None,
                total_s=time.monotonic() - self.t0,
            ),
            input=self._input_info(),
            session=self._session_info(),
            metrics=_metrics(result),
            usage=dict(result.timeline.usage) if result else {},
            warnings=warnings,
            artifacts=self.artifacts,
            trace_id=self.trace_id,
            worker_version=worker_version(),
            metadata=dict(self.job.metadata),
        )

    def _input_info(self) -> InputInfo:
        facts, stream = self.facts, self.stream
        return InputInfo(
            url=self.parsed.input.url,
            etag=stream.etag if stream else None,
            size=stream.size if stream else None,
            container=facts.container if facts else None,
            codec=facts.codec if facts else None,
            sample_rate=facts.sample_rate if facts else None,
            channels=facts.channels if facts else None,
            duration_s=facts.decoded_duration_s if facts else None,
            declared_duration_s=facts.declared_duration_s if facts else None,
        )

    def _session_info(self) -> SessionInfo:
        result = self.result
        if result is None:
            return SessionInfo(model=self.job.session.model or self.ports.model_default)
        return SessionInfo(id=result.session_id, model=result.model, voice=result.voice)


def _metrics(result: SessionResult | None) -> Metrics:
    if result is None:
        return Metrics()
    pacing: PacingStats = result.pacing
    timeline = result.timeline
    latencies = [r.first_audio_latency_ms for r in timeline.responses if r.first_audio_latency_ms is not None]
    return Metrics(
        rtf=round(pacing.rtf, 4) if pacing.rtf else None,
        pacing_lag_p50_ms=round(pacing.lag_p50_ms, 3),
        pacing_lag_p99_ms=round(pacing.lag_p99_ms, 3),
        pacing_lag_max_ms=round(pacing.lag_max_ms, 3),
        end_drift_ms=round(pacing.end_drift_ms, 3),
        audio_streamed_s=round(pacing.audio_ms / 1000, 3),
        user_turns=len(timeline.user_turns),
        responses=len(timeline.responses),
        tool_calls=len(timeline.tool_calls),
        first_response_latency_ms=round(latencies[0], 1) if latencies else None,
    )
