"""`voicelive-worker demo` on a fresh stack: every demo job ends in its expected state."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from devstack.demo import DEMO_JOBS, run_demo

pytestmark = pytest.mark.integration


async def test_demo_runs_every_job_to_its_expected_state(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=120)
    ok = await run_demo(pace=8.0, out_dir=tmp_path, console=console)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert ok, output
    assert "All jobs ended as expected" in output
    for job in DEMO_JOBS:
        manifest = json.loads((tmp_path / job.job_id / "manifest.json").read_text())
        if job.expect == "succeeded":
            assert manifest["status"] == "succeeded"
            assert (tmp_path / job.job_id / "report.html").exists()
            assert (tmp_path / job.job_id / "audio" / "conversation.wav").exists()
        else:
            assert (manifest["status"], manifest["reason"]) == ("failed", job.expect)
    tools = [
        json.loads(line)
        for line in (tmp_path / "demo-weather-tool" / "tool_calls.jsonl").read_text().splitlines()
    ]
    assert [t["name"] for t in tools] == ["get_weather"]
