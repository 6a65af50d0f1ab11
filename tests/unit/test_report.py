"""report.html: waveform envelopes, the rendered page (elements, escaping, self-containment, latency),
render_artifacts' opt-in and `regenerate_local`."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from worker.artifacts import render_artifacts
from worker.audio import WavWriter
from worker.report import REPORT_NAME, ReportError, load_timeline, regenerate_local, render_report
from worker.voice.timeline import AssistantResponse, AudioPlacement, Timeline, ToolCallRecord, UserTurn
from worker.waveform import waveform_from_pcm, waveform_from_wav

RATE = 16_000
HOSTILE_TURN = "<script>alert('turn')</script> & more"
HOSTILE_ARGS = '{"city": "\\"><img src=x onerror=alert(1)>"}'
HEADER = {
    "job_id": "job-<1>",
    "session": {"id": "sess_1", "model": "gpt-realtime", "voice": "alloy"},
    "input": {"url": "file:///x.wav", "codec": "pcm_s16le", "sample_rate": RATE, "channels": 1,
              "duration_s": 4.0},
}  # fmt: skip


def _timeline() -> Timeline:
    return Timeline(
        user_turns=[
            UserTurn(index=1, item_id="i1", start_ms=500, end_ms=1500, transcript=HOSTILE_TURN,
                     response_ids=["r1"]),
            UserTurn(index=2, item_id="i2", start_ms=2600, end_ms=3100, no_response=True),
        ],
        responses=[
            AssistantResponse(index=1, response_id="r1", user_item_id="i1", status="completed",
                              trigger="server_vad", start_ms=1800, done_ms=2400, audio_ms=500,
                              audio_bytes=24_000, audio_file="response-001.pcm", first_audio_latency_ms=312,
                              transcript="Hello <b>there</b>",
                              placements=[AudioPlacement(input_ms=1800, byte_offset=0, n_bytes=24_000)]),
            AssistantResponse(index=2, response_id="r2", status="cancelled", status_reason="turn_detected",
                              truncated=True, trigger="tool", done_ms=3000),
            AssistantResponse(index=3, response_id="r3"),  # never placed: no time at all
        ],
        tool_calls=[ToolCallRecord(call_id="c1", name="get_weather", response_id="r2", arguments=HOSTILE_ARGS,
                                   result={"temperature_c": 15}, start_ms=1600, duration_ms=2.5)],
        warnings=["input ended early <at 3 s>"],
    )  # fmt: skip


def _input_pcm(path: Path, seconds: float = 4.0) -> None:
    pcm = np.zeros(int(RATE * seconds), dtype=np.int16)
    t = np.arange(RATE)
    pcm[RATE // 2 : RATE // 2 + RATE] = (12_000 * np.sin(2 * np.pi * 220 * t / RATE)).astype(np.int16)
    path.write_bytes(pcm.tobytes())


def _render(tmp_path: Path, *, report: bool) -> list[str]:
    work = tmp_path / "work"
    work.mkdir(parents=True)
    _input_pcm(work / "input.pcm")
    (work / "response-001.pcm").write_bytes(np.full(12_000, 3000, dtype=np.int16).tobytes())
    files = render_artifacts(
        timeline=_timeline(), header=HEADER, workdir=work, input_pcm=work / "input.pcm",
        input_sample_rate=RATE, response_audio=True, conversation_audio=True, events_file=None,
        report=report,
    )  # fmt: skip
    return [f.name for f in files]


class _Page(HTMLParser):
    """Collects elements (tag, attrs) and checks that non-void elements nest properly."""

    VOID = frozenset({"meta", "br", "img", "input", "link", "hr", "rect", "line", "polygon", "path"})

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.stack: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "script":
            self.scripts.append(data)
        elif self.stack and self.stack[-1] == "style":
            self.styles.append(data)

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if name in a.get("class", "").split()]


def _page(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    assert page.stack == [], f"unclosed elements: {page.stack}"
    return page


def test_waveform_from_pcm_buckets_min_max(tmp_path: Path) -> None:
    path = tmp_path / "in.pcm"
    _input_pcm(path)
    wave = waveform_from_pcm(path, sample_rate=RATE, buckets=40)
    assert len(wave.mins) == len(wave.maxs) == 40
    assert wave.duration_ms == pytest.approx(4000)
    assert wave.bucket_ms == pytest.approx(100)
    assert max(wave.maxs[:5]) == 0 and min(wave.mins[:5]) == 0  # leading silence
    assert max(wave.maxs[5:15]) == pytest.approx(12_000 / 32768, abs=1e-3)
    assert min(wave.mins[5:15]) == pytest.approx(-12_000 / 32768, abs=1e-3)


def test_waveform_uneven_length_covers_every_sample(tmp_path: Path) -> None:
    path = tmp_path / "in.pcm"
    path.write_bytes(np.arange(1001, dtype=np.int16).tobytes())
    wave = waveform_from_pcm(path, sample_rate=1000, buckets=10)
    assert len(wave.maxs) <= 10
    assert wave.maxs[-1] == pytest.approx(1000 / 32768)
    assert wave.duration_ms == pytest.approx(1001)


def test_waveform_from_wav_reads_one_channel(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    frames = np.zeros((2400, 2), dtype=np.int16)
    frames[:, 1] = 20_000
    with path.open("wb") as fh, WavWriter(fh, sample_rate=24_000, channels=2) as wav:
        wav.write(frames.tobytes())
    left, right = waveform_from_wav(path, buckets=8), waveform_from_wav(path, channel=1, buckets=8)
    assert left.duration_ms == pytest.approx(100) and max(left.maxs) == 0
    assert min(right.mins) == pytest.approx(20_000 / 32768)
    with pytest.raises(ValueError, match="channel"):
        waveform_from_wav(path, channel=2)
    (tmp_path / "bad.wav").write_bytes(b"not a wav at all")
    with pytest.raises(ValueError, match="RIFF"):
        waveform_from_wav(tmp_path / "bad.wav")


def test_render_artifacts_adds_report_only_when_asked(tmp_path: Path) -> None:
    assert REPORT_NAME not in _render(tmp_path / "a", report=False)
    names = _render(tmp_path / "b", report=True)
    assert names[-1] == REPORT_NAME
    html = (tmp_path / "b" / "work" / "out" / REPORT_NAME).read_text(encoding="utf-8")
    page = _page(html)
    assert {a.get("src") for t, a in page.elements if t == "audio"} == {
        "audio/conversation.wav",
        "audio/response-001.wav",
    }
    assert page.with_class("wave"), "the input waveform is drawn"


def test_timeline_has_turns_responses_and_tools() -> None:
    page = _page(render_report({**HEADER, **_timeline().model_dump()}, waveform=None))
    assert any(a.get("id") == "timeline" for _, a in page.elements)
    assert [a["id"] for a in page.with_class("turn")] == ["turn-1", "turn-2"]
    assert "no-response" in page.with_class("turn")[1]["class"]
    responses = page.with_class("response")
    assert [a["id"] for a in responses] == ["response-1", "response-2"]  # r3 has no time to be placed
    assert "status-completed" in responses[0]["class"]
    assert {"status-cancelled", "truncated", "no-audio"} <= set(responses[1]["class"].split())
    assert len(page.with_class("tool")) == 1
    assert len(page.with_class("latency")) == 1


def test_untrusted_text_is_escaped() -> None:
    html = render_report({**HEADER, **_timeline().model_dump()}, waveform=None)
    for raw in ("<script>alert", "<img src=x", "<b>there</b>", "<1>", "<at 3 s>"):
        assert raw not in html
    for escaped in ("&lt;script&gt;alert(&#x27;turn&#x27;)", "&lt;b&gt;there&lt;/b&gt;", "job-&lt;1&gt;"):
        assert escaped in html
    page = _page(html)
    assert len(page.scripts) == 1


def test_page_is_self_contained_and_csp_pins_inline_code() -> None:
    html = render_report(
        {**HEADER, **_timeline().model_dump()}, waveform=None, audio_files={"audio/conversation.wav"}
    )
    page = _page(html)
    refs = [a[k] for _, a in page.elements for k in ("src", "href") if k in a]
    assert refs == ["audio/conversation.wav"]
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", html)
    assert "@import" not in html and "url(" not in "".join(page.styles)
    csp = next(a["content"] for t, a in page.elements if a.get("http-equiv") == "Content-Security-Policy")
    for code in (page.scripts[0], page.styles[0]):
        digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp


def test_transcript_rows_and_latency() -> None:
    timeline = _timeline()
    timeline.responses[0].first_audio_latency_ms = None  # fall back to the input clock: 1800 - 1500
    html = render_report({**HEADER, **timeline.model_dump()}, waveform=None)
    rows = re.findall(r'<tr class="(caller|assistant)"[^>]*>(.*?)</tr>', html)
    assert [who for who, _ in rows] == ["caller", "assistant", "caller", "assistant", "assistant"]
    assert ">300 ms<" in rows[1][1]
    measured = render_report({**HEADER, **_timeline().model_dump()}, waveform=None)
    assert ">312 ms<" in measured
    assert "[no audio; called get_weather]" in measured  # r2 spoke no words: it called a tool


def test_manifest_status_shown_when_given() -> None:
    manifest = {"status": "failed", "reason": "UnsupportedAudio"}
    html = render_report({**HEADER}, waveform=None, manifest=manifest)
    assert 'class="chip bad">failed<' in html and "UnsupportedAudio" in html
    assert "Nothing was said" in html and "No tool calls" in html


def test_load_timeline_ignores_header_and_rejects_garbage() -> None:
    assert load_timeline({**HEADER, "user_turns": []}).user_turns == []
    with pytest.raises(ValueError, match="validation error"):
        load_timeline({"responses": [{"index": "x"}]})


def test_regenerate_local(tmp_path: Path) -> None:
    _render(tmp_path, report=False)
    out = tmp_path / "work" / "out"
    (out / "manifest.json").write_text(json.dumps({"status": "succeeded"}), encoding="utf-8")
    assert regenerate_local(out) == out / REPORT_NAME
    page = _page((out / REPORT_NAME).read_text(encoding="utf-8"))
    assert page.with_class("wave") and page.with_class("ok")
    assert len([a for t, a in page.elements if t == "audio"]) == 2


def test_regenerate_local_reports_missing_or_bad_transcript(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        regenerate_local(tmp_path)
    (tmp_path / "transcript.json").write_text('{"user_turns": [{"index": "one"}]}', encoding="utf-8")
    with pytest.raises(ReportError, match="malformed"):
        regenerate_local(tmp_path)
