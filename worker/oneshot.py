"""`voicelive-worker process`: one job without a queue — a local file or blob URL in, a directory or
blob prefix out — through exactly the same pipeline the queue worker runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from worker.blobs import LOCAL_FILES, BlobRef
from worker.clients import open_clients
from worker.config import Settings
from worker.errors import InvalidJob
from worker.jobs import Job, ParsedJob, read_job_file
from worker.pipeline import JobOutcome, JobProgress, Ports, process_job
from worker.storage import ArtifactStore, BlobArtifacts, BlobInput, InputSource, LocalArtifacts, LocalInput
from worker.telemetry import Attr, SpanName, tracer
from worker.voice.tools import ToolRegistry

__all__ = ["LOCAL_ACCOUNT", "is_url", "run_one"]

#: Local files travel as refs in this pseudo-account; only `LocalInput` ever opens them.
LOCAL_ACCOUNT = "local"


def is_url(value: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value))


def build_job(input_arg: str, job_file: Path | None) -> Job:
    """The job from `--job` (if given) with its input replaced by INPUT; otherwise a default job."""
    data: dict[str, Any]
    if job_file is not None:
        data = read_job_file(job_file)
    else:
        stem = re.sub(r"[^A-Za-z0-9._-]", "-", Path(input_arg.rstrip("/")).stem)[:100] or "job"
        data = {"version": 1, "job_id": stem if stem[0].isalnum() else f"job-{stem}"}
    data["input"] = {"url": input_arg}
    try:
        return Job.model_validate(data)
    except ValidationError as exc:
        raise InvalidJob(str(exc.errors(include_url=False, include_input=False)[:3])) from None


async def run_one(
    input_arg: str,
    *,
    settings: Settings,
    job_file: Path | None = None,
    out: str | None = None,
    progress: JobProgress | None = None,
) -> JobOutcome:
    """Process INPUT once. Blob URLs and blob outputs need storage settings and pass the allow-list."""
    job = build_job(input_arg, job_file)
    uses_blob = is_url(input_arg) or (out is not None and is_url(out))
    async with open_clients(settings, storage=uses_blob, voice=True) as clients:
        policy = settings.blob_policy() if uses_blob else None
        if is_url(input_arg):
            assert policy is not None and clients.blob is not None
            input_ref = policy.check_input(input_arg)
            inputs: InputSource = BlobInput(clients.blob, max_bytes=settings.max_input_bytes)
        else:
            input_ref = BlobRef(LOCAL_FILES, LOCAL_ACCOUNT, LOCAL_ACCOUNT, str(Path(input_arg).resolve()))
            inputs = LocalInput(max_bytes=settings.max_input_bytes)
        if out is not None and is_url(out):
            assert policy is not None and clients.blob is not None
            output_ref = policy.check_output(out)
            blob = clients.blob

            def artifacts(ref: BlobRef) -> ArtifactStore:
                return BlobArtifacts(blob, ref)
        else:
            directory = Path(out) if out else Path("voicelive-output") / job.job_id
            output_ref = BlobRef(LOCAL_FILES, LOCAL_ACCOUNT, LOCAL_ACCOUNT, str(directory.resolve()) + "/")

            def artifacts(ref: BlobRef) -> ArtifactStore:
                return LocalArtifacts(Path(ref.name))

        assert clients.voice is not None
        ports = Ports(
            inputs=inputs,
            artifacts=artifacts,
            voice=clients.voice,
            tools=ToolRegistry.default(),
            model_default=settings.voicelive_model,
        )
        parsed = ParsedJob(job=job, input=input_ref, output=output_ref)
        # One trace per job here too: the same root span the queue worker opens (without a parent).
        with tracer().start_as_current_span(SpanName.PROCESS_JOB, attributes={Attr.JOB_ID: job.job_id}):
            return await process_job(parsed, ports, progress=progress)
