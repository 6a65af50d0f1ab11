"""What a person sees in a terminal: live job progress and the end-of-job summary (rich)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.jobs import Manifest
from worker.pipeline import JobProgress

__all__ = ["manifest_table", "show_progress"]


@contextlib.asynccontextmanager
async def show_progress(progress: JobProgress, console: Console) -> AsyncIterator[None]:
    """A progress bar (audio streamed / total, turns, responses) on a TTY; nothing otherwise (logs speak)."""
    if not console.is_terminal:
        yield
        return
    bar = Progress(
        TextColumn("[bold]{task.fields[job]}"),
        BarColumn(),
        TextColumn("{task.fields[audio]}"),
        TextColumn("{task.fields[state]} · turns {task.fields[turns]} · responses {task.fields[responses]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("job", total=None, job=progress.job_id, state="", turns=0, responses=0, audio="")

    async def refresh() -> None:
        while True:
            total = progress.input_ms_total / 1000 if progress.input_ms_total else None
            streamed = min(progress.streamed_ms / 1000, total or float("inf"))
            bar.update(
                task,
                completed=streamed,
                total=total,
                audio=f"{streamed:.1f}/{total:.1f} s" if total else f"{streamed:.1f} s",
                state=progress.state,
                turns=progress.turns,
                responses=progress.responses,
            )
            await asyncio.sleep(0.2)  # a display refresh rate, not a synchronisation

    with bar:
        refresher = asyncio.create_task(refresh())
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher


def manifest_table(manifest: Manifest) -> Table:
    """One job's outcome as a two-column table."""
    table = Table(title=f"job {manifest.job_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    status = "[green]succeeded" if manifest.status == "succeeded" else f"[red]failed: {manifest.reason}"
    table.add_row("status", status)
    if manifest.error:
        table.add_row("error", manifest.error)
    m = manifest.metrics
    if manifest.input.duration_s is not None:
        table.add_row("input", f"{manifest.input.codec} {manifest.input.sample_rate} Hz "
                      f"{manifest.input.channels} ch, {manifest.input.duration_s:.2f} s")  # fmt: skip
    table.add_row("turns / responses / tools", f"{m.user_turns} / {m.responses} / {m.tool_calls}")
    if m.pacing_lag_p99_ms is not None:
        lag = f"{m.pacing_lag_p50_ms:.2f} / {m.pacing_lag_p99_ms:.2f} / {m.pacing_lag_max_ms:.2f} ms"
        table.add_row("pacing lag p50 / p99 / max", f"{lag}, drift {m.end_drift_ms:.2f} ms")
    if m.first_response_latency_ms is not None:
        table.add_row("first response latency", f"{m.first_response_latency_ms:.0f} ms")
    table.add_row("wall time", f"{manifest.timings.total_s:.2f} s")
    for warning in manifest.warnings:
        table.add_row("warning", f"[yellow]{warning}")
    table.add_row("artifacts", ", ".join(a.name for a in manifest.artifacts) or "—")
    return table
