"""The terminal progress display: it must render whatever the job knows so far (no total yet, a total)."""

from __future__ import annotations

import asyncio
import io

import pytest
from rich.console import Console

from worker.console import show_progress
from worker.pipeline import JobProgress


@pytest.mark.parametrize(("total_ms", "shown"), [(None, "0.0 s"), (2750.0, "0.0/2.8 s")])
async def test_progress_renders_with_and_without_a_total(total_ms: float | None, shown: str) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    progress = JobProgress("job-1", state="streaming", input_ms_total=total_ms)
    async with show_progress(progress, console):
        await asyncio.sleep(0)  # let the refresher copy the job's state once; leaving renders it
    text = out.getvalue()
    assert "job-1" in text
    assert shown in text
    assert "streaming" in text
