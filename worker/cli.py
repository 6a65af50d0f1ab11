"""`voicelive-worker`: the command line others script against (DESIGN.md §14; extend, don't rename)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from worker.blobs import ANY_CONTAINER, BlobPolicy
from worker.config import ConfigError, Settings, load_settings
from worker.errors import Permanent, WorkerError
from worker.jobs import parse_job, schema_for

__all__ = ["app"]

app = typer.Typer(
    name="voicelive-worker",
    help="Run recorded audio through Azure AI Voice Live at wire pace, from Service Bus to Blob Storage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_CONFIG = 3
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: try again later


class SchemaKind(StrEnum):
    job = "job"
    manifest = "manifest"


@app.command()
def schema(kind: Annotated[SchemaKind, typer.Argument(help="which schema")] = SchemaKind.job) -> None:
    """Print the JSON Schema of the job message or the manifest."""
    typer.echo(json.dumps(schema_for(kind.value), indent=2))


@app.command()
def validate(
    message: Annotated[Path, typer.Argument(help="a job message body (JSON file), or - for stdin")],
) -> None:
    """Check a job message: prints `valid` (exit 0) or `invalid: <Reason>: <detail>` (exit 2).

    URLs are checked against ALLOWED_INPUT_CONTAINERS when storage is configured; otherwise only their
    shape is checked, and a note on stderr says so.
    """
    body = sys.stdin.buffer.read() if str(message) == "-" else _read_file(message)
    try:
        parse_job(body, policy=_validation_policy())
    except Permanent as exc:
        typer.echo(f"invalid: {exc.reason}: {exc.detail}")
        raise typer.Exit(EXIT_INVALID) from None
    typer.echo("valid")


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        typer.echo(f"error: cannot read {path}: {exc.strerror}", err=True)
        raise typer.Exit(EXIT_INVALID) from None


def _validation_policy() -> BlobPolicy:
    try:
        settings = load_settings()
        return settings.blob_policy()
    except ConfigError as exc:
        typer.echo(f"note: allow-list not checked ({exc})", err=True)
        return BlobPolicy(
            allowed_inputs=ANY_CONTAINER,
            allowed_outputs=ANY_CONTAINER,
            results=("https://unset.blob.core.windows.net", "unset", "results"),
        )


@app.command()
def process(
    input: Annotated[str, typer.Argument(help="a local audio file or an allow-listed blob URL")],
    job: Annotated[Path | None, typer.Option("--job", help="job JSON to use; its input is replaced")] = None,
    out: Annotated[str | None, typer.Option("--out", help="output directory or blob prefix URL")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest as JSON")] = False,
) -> None:
    """Run one job without a queue and write its artifacts (default ./voicelive-output/<job_id>/)."""
    from rich.console import Console

    from worker import telemetry
    from worker.console import manifest_table, show_progress
    from worker.logs import configure_logging
    from worker.oneshot import build_job, run_one
    from worker.pipeline import JobProgress

    settings = _settings()
    configure_logging(settings)
    console = Console(stderr=True)
    with _exits(permanent=EXIT_INVALID):
        progress = JobProgress(build_job(input, job).job_id)

    async def go() -> None:
        async with show_progress(progress, console):
            outcome = await run_one(input, settings=settings, job_file=job, out=out, progress=progress)
        if as_json:
            typer.echo(outcome.manifest.model_dump_json(indent=2))
        else:
            console.print(manifest_table(outcome.manifest))

    with _exits(), telemetry.running(settings):
        asyncio.run(go())


@app.command()
def run() -> None:
    """Consume the queue until SIGTERM/SIGINT, then drain in-flight jobs and exit 0."""
    from worker import telemetry
    from worker.logs import configure_logging
    from worker.service import serve

    settings = _settings()
    configure_logging(settings)
    with _exits(), telemetry.running(settings):
        asyncio.run(serve(settings))


@app.command()
def enqueue(
    input: Annotated[str | None, typer.Option("--input", help="blob URL of the audio")] = None,
    job: Annotated[Path | None, typer.Option("--job", help="job JSON file (its input is kept)")] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="job id (default: generated)")] = None,
    count: Annotated[int, typer.Option("--count", min=1, max=100_000, help="send N copies")] = 1,
) -> None:
    """Send job message(s): message_id = job_id, traceparent set. Prints one job id per line."""
    from worker import telemetry
    from worker.enqueueing import build_jobs, send_jobs

    if (input is None) == (job is None):
        typer.echo("error: give exactly one of --input URL or --job JOB.json", err=True)
        raise typer.Exit(EXIT_INVALID)
    settings = _settings()
    with _exits(permanent=EXIT_INVALID):
        jobs = build_jobs(input_url=input, job_file=job, job_id=job_id, count=count)
        with telemetry.running(settings):
            sent_ids = asyncio.run(send_jobs(settings, jobs))
    for sent in sent_ids:
        typer.echo(sent)


@app.command()
def status(job_id: Annotated[str, typer.Argument(help="the job id")]) -> None:
    """Read a job's manifest from the results container: status, reason, artifacts."""
    from worker.enqueueing import read_manifest

    settings = _settings()
    with _exits():
        manifest = asyncio.run(read_manifest(settings, job_id))
    if manifest is None:
        typer.echo(f"{job_id}: no manifest yet (queued, running, or retrying)")
        raise typer.Exit(EXIT_FAILED)
    typer.echo(manifest.model_dump_json(indent=2))


dlq_app = typer.Typer(help="inspect and re-send dead-lettered jobs", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(max_count: Annotated[int, typer.Option("--max", min=1, max=5000)] = 100) -> None:
    """Peek at dead-lettered jobs: sequence number, job id, reason, description."""
    from worker.enqueueing import dead_letters

    settings = _settings()
    with _exits():
        letters = asyncio.run(dead_letters(settings, max_count=max_count))
    for letter in letters:
        typer.echo(f"{letter.sequence_number}\t{letter.job_id}\t{letter.reason}\t{letter.description}")


@dlq_app.command("redrive")
def dlq_redrive(
    job_id: Annotated[str | None, typer.Option("--job-id", help="only this job")] = None,
    max_count: Annotated[int, typer.Option("--max", min=1, max=5000)] = 100,
) -> None:
    """Re-send dead-lettered jobs as fresh attempts (send a copy, then complete the DLQ message)."""
    from worker.enqueueing import redrive

    settings = _settings()
    with _exits():
        redriven = asyncio.run(redrive(settings, job_id=job_id, max_count=max_count))
    for sent in redriven:
        typer.echo(f"redriven {sent}")


@app.command()
def demo(
    pace: Annotated[float, typer.Option("--pace", min=0.1, max=50, help="wire pace (1 = real time)")] = 1.0,
    out: Annotated[Path, typer.Option("--out", help="where artifacts are downloaded")] = Path("demo-output"),
) -> None:
    """The main job end to end on the local stack (no Azure, no Docker): devstack + real worker."""
    from rich.console import Console

    try:
        from devstack.demo import run_demo
    except ImportError as exc:  # the container image ships without devstack's dependencies
        typer.echo(f"error: the demo needs the devstack dependencies (uv sync): {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    ok = asyncio.run(run_demo(pace=pace, out_dir=out, console=Console()))
    raise typer.Exit(0 if ok else EXIT_FAILED)


@contextlib.contextmanager
def _exits(*, permanent: int = EXIT_FAILED) -> Iterator[None]:
    """The one place errors become a line on stderr and an exit code: configuration 3, a permanent
    failure `permanent` (1, or 2 where the input itself is invalid), transient 75, unusable queue 1."""
    from worker.queue import BusFatal, BusUnavailable

    try:
        yield
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except Permanent as exc:
        word = "invalid" if permanent == EXIT_INVALID else "failed"
        typer.echo(f"{word}: {exc.reason}: {exc.detail}", err=True)
        raise typer.Exit(permanent) from None
    except BusFatal as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except (WorkerError, BusUnavailable) as exc:
        typer.echo(f"failed (transient, may succeed later): {exc}", err=True)
        raise typer.Exit(EXIT_TRANSIENT) from None


def _settings() -> Settings:
    with _exits():
        return load_settings()


@app.command()
def report(
    target: Annotated[str, typer.Argument(help="an artifact directory (holds transcript.json) or a job id")],
) -> None:
    """Regenerate report.html from transcript.json (a local artifact DIR, or a JOB_ID in Blob Storage).

    For a directory it writes DIR/report.html; for a job id, report.html next to the job's artifacts
    under the results container (needs the storage settings)."""
    from worker.report import ReportError, regenerate_blob, regenerate_local

    with _exits():
        try:
            if Path(target).is_dir():
                written = str(regenerate_local(Path(target)))
            else:
                written = asyncio.run(regenerate_blob(_settings(), target))
        except ReportError as exc:
            typer.echo(f"failed: {exc}", err=True)
            raise typer.Exit(EXIT_FAILED) from None
    typer.echo(f"wrote {written}")


def main() -> None:
    app()
