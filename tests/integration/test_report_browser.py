"""report.html in a real browser: a job through the real pipeline (Voice Live SDK ↔ simulator), its report
loaded in headless Chromium over the DevTools protocol — no console errors, the timeline elements are
there, the relative audio links load — and a screenshot under build/ for CI; plus `report JOB_ID`
against Azurite."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devstack.azurite import Azurite
from devstack.voicelive import VoiceLiveSimulator
from worker.config import load_settings
from worker.oneshot import run_one
from worker.report import REPORT_NAME, regenerate_blob, regenerate_local
from worker.storage import blob_service_client

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
AUDIO = REPO.parent / "shared" / "audio" / "caller_3turns_16k.wav"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "build" / "report-screenshot.png"
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install chromium)"
)
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",
    "--hide-scrollbars", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]  # fmt: skip


class Cdp:
    """A minimal DevTools-protocol client on one page target: `call` waits for the reply; events are
    kept in `events` and announced through `changed`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Condition()

    async def pump(self) -> None:
        async for msg in self._ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            else:
                async with self.changed:
                    self.events.append(data)
                    self.changed.notify_all()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        reply = self._pending[msg_id] = asyncio.get_running_loop().create_future()
        await self._ws.send_json({"id": msg_id, "method": method, "params": params})
        data = await asyncio.wait_for(reply, 20)
        assert "error" not in data, f"{method}: {data['error']}"
        result: dict[str, Any] = data["result"]
        return result

    async def event(self, method: str) -> dict[str, Any]:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: self._find(method) is not None), 20)
        found = self._find(method)
        assert found is not None
        return found

    def _find(self, method: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("method") == method), None)

    async def evaluate(self, expression: str) -> Any:
        reply = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in reply, reply["exceptionDetails"]
        return reply["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (CSP violations land there)."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in {"error", "assert"}:
                out.append(json.dumps(params.get("args"))[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(params["entry"].get("text", "")[:500])
        return out


@contextlib.asynccontextmanager
async def chromium(tmp_path: Path) -> AsyncIterator[Cdp]:
    """Headless Chromium with DevTools on a loopback port; yields a client attached to its page."""
    proc = await asyncio.create_subprocess_exec(
        str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    drain: asyncio.Task[None] | None = None
    try:
        port = await asyncio.wait_for(_devtools_port(proc.stderr), 30)
        drain = asyncio.create_task(_discard(proc.stderr))  # a full stderr pipe would stall chromium
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = Cdp(ws)
                pump = asyncio.create_task(cdp.pump())
                try:
                    yield cdp
                finally:
                    pump.cancel()
                    await asyncio.gather(pump, return_exceptions=True)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
        if drain is not None:
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)


async def _devtools_port(stderr: asyncio.StreamReader) -> int:
    while line := await stderr.readline():
        if found := re.search(rb"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
            return int(found.group(1))
    raise AssertionError("chromium exited before opening DevTools")


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def _job_artifacts(sim: VoiceLiveSimulator, out: Path) -> dict[str, Any]:
    job = out.parent / "job.json"
    job.write_text(json.dumps({"version": 1, "job_id": "report-e2e", "input": {"url": "x"},
                               "tools": ["get_weather"], "streaming": {"pace": 8}}))  # fmt: skip
    settings = load_settings(voicelive_endpoint=sim.endpoint, voicelive_api_key="devstack-key")
    await run_one(str(AUDIO), settings=settings, job_file=job, out=str(out))
    regenerate_local(out)  # with manifest.json now present: the report shows the job status too
    transcript: dict[str, Any] = json.loads((out / "transcript.json").read_text(encoding="utf-8"))
    return transcript


@needs_chromium
async def test_report_renders_in_chromium(voicelive: VoiceLiveSimulator, tmp_path: Path) -> None:
    out = tmp_path / "out"
    transcript = await _job_artifacts(voicelive, out)
    placed_turns = sum(1 for t in transcript["user_turns"] if t["start_ms"] is not None)
    placed = sum(1 for r in transcript["responses"] if r["start_ms"] is not None or r["done_ms"] is not None)
    assert placed_turns >= 3 and placed >= 3, "the simulator should answer every caller turn"

    async with chromium(tmp_path) as cdp:
        for domain in ("Runtime", "Log", "Page"):
            await cdp.call(f"{domain}.enable")
        await cdp.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1,
                       mobile=False)  # fmt: skip
        await cdp.call("Page.navigate", url=(out / REPORT_NAME).as_uri())
        await cdp.event("Page.loadEventFired")

        counts = await cdp.evaluate(
            "({turns: document.querySelectorAll('#timeline .turn').length,"
            " responses: document.querySelectorAll('#timeline .response').length,"
            " tools: document.querySelectorAll('#timeline .tool').length,"
            " wave: document.querySelectorAll('#timeline .wave').length,"
            " rows: document.querySelectorAll('table.transcript tr[data-ms]').length})"
        )
        assert counts == {"turns": placed_turns, "responses": placed, "tools": len(transcript["tool_calls"]),
                          "wave": 1, "rows": counts["rows"]}  # fmt: skip
        assert counts["rows"] >= placed_turns + placed - 1

        # The relative link to conversation.wav resolves and decodes (CSP media-src allows it).
        duration = await cdp.evaluate(
            "new Promise(done => { const a = document.getElementById('conversation');"
            " if (a.readyState >= 1) return done(a.duration);"
            " a.addEventListener('loadedmetadata', () => done(a.duration));"
            " a.addEventListener('error', () => done(-1)); a.load(); })"
        )
        assert duration >= transcript["input"]["duration_s"]

        # Clicking the timeline seeks the conversation and shows the playhead.
        box = await cdp.evaluate(
            "(() => { const r = document.getElementById('timeline').getBoundingClientRect();"
            " window.scrollTo(0, 0); return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
        )
        # Listen before clicking (awaited here), then wait for the seek the click causes.
        await cdp.evaluate(
            "window.seeked = new Promise(done => document.getElementById('conversation')"
            ".addEventListener('seeked', () => done(true), {once: true})); true"
        )
        for kind in ("mousePressed", "mouseReleased"):
            await cdp.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left",
                           clickCount=1)  # fmt: skip
        assert await cdp.evaluate("window.seeked") is True
        assert await cdp.evaluate("document.getElementById('playhead').classList.contains('on')") is True
        await cdp.evaluate("document.getElementById('conversation').pause()")

        assert cdp.problems() == []
        shot = await cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
    shutil.copytree(out, SCREENSHOT.parent / "report-example", dirs_exist_ok=True)


@needs_chromium
async def test_hostile_transcript_stays_text(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    hostile = "<img src=x onerror=\"console.error('pwned')\"><script>console.error('pwned')</script>"
    transcript = {
        "job_id": "hostile",
        "user_turns": [{"index": 1, "start_ms": 100, "end_ms": 900, "transcript": hostile}],
        "responses": [{"index": 1, "response_id": "r", "start_ms": 1200, "audio_ms": 400, "status": "failed",
                       "transcript": hostile}],
        "tool_calls": [{"call_id": "c", "name": "get_time", "arguments": hostile, "start_ms": 1000}],
        "warnings": [hostile],
    }  # fmt: skip
    (out / "transcript.json").write_text(json.dumps(transcript), encoding="utf-8")
    regenerate_local(out)
    async with chromium(tmp_path) as cdp:
        for domain in ("Runtime", "Log", "Page"):
            await cdp.call(f"{domain}.enable")
        await cdp.call("Page.navigate", url=(out / REPORT_NAME).as_uri())
        await cdp.event("Page.loadEventFired")
        found = await cdp.evaluate(
            "({imgs: document.images.length, scripts: document.scripts.length,"
            " shown: document.body.innerText.split('onerror').length - 1})"
        )
        assert found == {"imgs": 0, "scripts": 1, "shown": found["shown"]}
        assert found["shown"] >= 4, "the hostile text is displayed as text"
        assert cdp.problems() == []


async def test_report_command_for_a_job_id(azurite: Azurite, tmp_path: Path) -> None:
    """`report JOB_ID`: transcript.json and conversation.wav from the results container, report.html
    uploaded next to them."""
    job_id = f"report-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "src"
    source.mkdir()
    (source / "transcript.json").write_text(
        json.dumps({"job_id": job_id, "user_turns": [{"index": 1, "start_ms": 100, "end_ms": 800}]})
    )
    async with blob_service_client(account_url="", connection_string=azurite.connection_string) as client:
        container = client.get_container_client("results")
        await container.upload_blob(f"{job_id}/transcript.json", (source / "transcript.json").read_bytes())
        settings = load_settings(storage_connection_string=azurite.connection_string)
        url = await regenerate_blob(settings, job_id)
        assert url.endswith(f"/results/{job_id}/{REPORT_NAME}")
        blob = container.get_blob_client(f"{job_id}/{REPORT_NAME}")
        props = await blob.get_blob_properties()
        html = (await (await blob.download_blob()).readall()).decode()
    assert props.content_settings.content_type == "text/html; charset=utf-8"
    assert 'id="turn-1"' in html and "waveform not available" in html
