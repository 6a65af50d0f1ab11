"""report.html: one self-contained page per job — input waveform, VAD turns, responses and tool calls on
the input clock, the transcript with per-turn latency, tool calls, warnings and audio players.

Self-contained means inline CSS, inline SVG and one tiny inline script (a playhead that follows
conversation.wav); a Content-Security-Policy built from their hashes forbids everything else. Every
piece of job text is HTML-escaped: transcripts and tool results are untrusted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from worker import _report_assets as assets
from worker._report_timeline import clock, dur, esc, extent_ms, latency_ms, slug, span, timeline_svg, turn_for
from worker.voice.timeline import AssistantResponse, Timeline, ToolCallRecord, UserTurn
from worker.waveform import Waveform, waveform_from_wav

if TYPE_CHECKING:
    from worker.blobs import BlobRef
    from worker.config import Settings
    from worker.storage import BlobInput

__all__ = [
    "REPORT_CONTENT_TYPE",
    "REPORT_NAME",
    "ReportError",
    "load_timeline",
    "regenerate_blob",
    "regenerate_local",
    "render_report",
]

REPORT_NAME = "report.html"
REPORT_CONTENT_TYPE = "text/html; charset=utf-8"

_CONVERSATION = "audio/conversation.wav"


class ReportError(Exception):
    """The report cannot be regenerated: transcript.json is missing or malformed, or the job id is bad."""


def load_timeline(transcript: Mapping[str, Any]) -> Timeline:
    """The `Timeline` part of a transcript.json dict (its header keys are ignored).

    Raises `ValueError` (pydantic's `ValidationError`) if the timeline part is malformed.
    """
    return Timeline.model_validate({k: transcript[k] for k in Timeline.model_fields if k in transcript})


def render_report(
    transcript: Mapping[str, Any],
    *,
    waveform: Waveform | None,
    audio_files: Collection[str] = (),
    manifest: Mapping[str, Any] | None = None,
) -> str:
    """The whole report.html as a string.

    `transcript` is transcript.json as a dict (header + timeline). `waveform` is the input's envelope on
    the input clock (None draws an empty caller lane). `audio_files` names the audio artifacts that exist
    (`audio/conversation.wav`, `audio/response-NNN.wav`); only those get players. `manifest` adds the
    job status when the report is regenerated after the job finished.
    """
    timeline = load_timeline(transcript)
    job_id = str(transcript.get("job_id") or "job")
    body = "\n".join(
        (
            _header(job_id, transcript, timeline, manifest),
            _timeline_card(timeline, waveform, audio_files, extent_ms(transcript, timeline, waveform)),
            _transcript_card(timeline),
            _tools_card(timeline.tool_calls),
            _problems_card(timeline, manifest),
            _responses_audio_card(timeline, audio_files),
        )
    )
    csp = (
        f"default-src 'none'; style-src '{_sha(assets.CSS)}'; script-src '{_sha(assets.SCRIPT)}'; "
        "media-src 'self' file:; img-src data:; base-uri 'none'; form-action 'none'"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(job_id)} · Voice Live job report</title>\n<style>{assets.CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n<footer>voicelive-worker report · times are on the input clock "
        f"(0 = first streamed input sample)</footer>\n</main>\n<script>{assets.SCRIPT}</script>\n"
        "</body>\n</html>\n"
    )


# -- regeneration (`voicelive-worker report`) -------------------------------------------------------


def regenerate_local(directory: Path) -> Path:
    """Rewrite `directory/report.html` from its transcript.json, manifest.json (if any) and audio/.

    Returns the path written. Raises `ReportError` if transcript.json is missing or malformed.
    """
    audio = {p.relative_to(directory).as_posix() for p in (directory / "audio").glob("*.wav")}
    target = directory / REPORT_NAME
    target.write_text(_render_dir(directory, audio), encoding="utf-8")
    return target


async def regenerate_blob(settings: Settings, job_id: str) -> str:
    """Re-render report.html for `job_id` in the results container and upload it next to its
    transcript.json; returns the report's URL. Only transcript.json, manifest.json and
    conversation.wav are downloaded (streamed to a temporary directory).

    Raises `ReportError` for a bad job id or transcript, and the worker's storage errors
    (`InputNotFound` when the job has no transcript.json, `Transient`, ...).
    """
    from worker.clients import open_clients
    from worker.errors import InputNotFound
    from worker.jobs import JOB_ID_PATTERN
    from worker.storage import CHUNK_BYTES, BlobArtifacts, BlobInput

    if not re.match(JOB_ID_PATTERN, job_id):
        raise ReportError(f"{job_id!r} is neither a directory nor a valid job id")
    prefix = settings.blob_policy().default_output(job_id)
    async with open_clients(settings, storage=True, voice=False) as clients:
        assert clients.blob is not None
        inputs = BlobInput(clients.blob, max_bytes=settings.max_input_bytes, range_bytes=CHUNK_BYTES)
        store = BlobArtifacts(clients.blob, prefix)
        manifest, _ = await store.read_manifest()
        with tempfile.TemporaryDirectory(prefix="vlw-report-") as tmp:
            work = Path(tmp)
            await _download(inputs, prefix.child("transcript.json"), work / "transcript.json")
            if manifest is not None:
                (work / "manifest.json").write_text(manifest.model_dump_json(), encoding="utf-8")
                audio = {a.name for a in manifest.artifacts if a.name.startswith("audio/")}
            else:  # not committed yet: assume the audio the transcript mentions was written
                audio = {_CONVERSATION} | _response_audio(work / "transcript.json")
            if _CONVERSATION in audio:
                try:
                    await _download(inputs, prefix.child(_CONVERSATION), work / _CONVERSATION)
                except InputNotFound:  # conversation_audio was off: no waveform, no player
                    audio.discard(_CONVERSATION)
            html = _render_dir(work, audio)
        await store.put(REPORT_NAME, html.encode("utf-8"), content_type=REPORT_CONTENT_TYPE)
    return prefix.child(REPORT_NAME).url


async def _download(inputs: BlobInput, ref: BlobRef, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    async with inputs.open(ref) as stream:
        with target.open("wb") as out:
            async for chunk in stream.chunks:
                out.write(chunk)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path} does not hold a JSON object")
    return data


def _response_audio(transcript: Path) -> set[str]:
    data = _read_json(transcript)
    responses = data.get("responses") if isinstance(data.get("responses"), list) else []
    return {
        f"audio/response-{r['index']:03d}.wav"
        for r in responses or []
        if isinstance(r, dict) and isinstance(r.get("index"), int) and r.get("audio_file")
    }


def _render_dir(directory: Path, audio: set[str]) -> str:
    transcript = _read_json(directory / "transcript.json")
    manifest = _read_json(directory / "manifest.json") if (directory / "manifest.json").exists() else None
    conversation = directory / _CONVERSATION
    try:
        waveform = waveform_from_wav(conversation) if conversation.exists() else None
    except ValueError:
        waveform = None  # an odd conversation.wav costs the waveform, not the report
    try:
        return render_report(transcript, waveform=waveform, audio_files=audio, manifest=manifest)
    except ValidationError as exc:
        raise ReportError(f"transcript.json is malformed: {exc.error_count()} error(s)") from None


# -- small helpers ----------------------------------------------------------------------------------


def _sha(source: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()


_MUTED = '<span class="muted">{}</span>'
_MUTED_P = '<p class="muted">{}</p>'


def _card(title: str, body: str) -> str:
    return f'<section class="card"><h2>{esc(title)}</h2>{body}</section>'


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _chip(text: str, kind: str) -> str:
    return f'<span class="chip {esc(kind)}">{esc(text)}</span>'


# -- header -----------------------------------------------------------------------------------------


def _header(
    job_id: str, transcript: Mapping[str, Any], timeline: Timeline, manifest: Mapping[str, Any] | None
) -> str:
    info = transcript.get("input") if isinstance(transcript.get("input"), Mapping) else {}
    session = transcript.get("session") if isinstance(transcript.get("session"), Mapping) else {}
    assert isinstance(info, Mapping) and isinstance(session, Mapping)
    status = ""
    if manifest is not None:
        state = str(manifest.get("status") or "unknown")
        status = _chip(state, "ok" if state == "succeeded" else "bad")
        if manifest.get("reason"):
            status += " " + _chip(str(manifest["reason"]), "bad")
    duration = info.get("duration_s")
    rate = info.get("sample_rate")
    channels = info.get("channels")
    fmt = " · ".join(
        str(v)
        for v in (
            info.get("codec"),
            f"{rate / 1000:g} kHz" if isinstance(rate, int | float) else None,
            {1: "mono", 2: "stereo"}.get(channels, f"{channels} ch") if isinstance(channels, int) else None,
            info.get("container"),
        )
        if v
    )
    length = dur(float(duration) * 1000) if isinstance(duration, int | float) else "–"
    latencies = [
        lat
        for r in timeline.responses
        if (lat := latency_ms(r, turn_for(r, timeline.user_turns))) is not None
    ]
    usage = timeline.usage
    url = str(info.get("url") or "")
    sid = session.get("id") or ""
    turns, responses = len(timeline.user_turns), len(timeline.responses)
    facts = [
        ("Input", length, fmt),
        ("Session", str(session.get("model") or "–"), f"voice {session.get('voice') or '–'} · {sid}"),
        ("Conversation", f"{_n(turns, 'turn')} · {_n(responses, 'response')}",
         f"{_n(len(timeline.tool_calls), 'tool call')} · {_n(len(timeline.warnings), 'warning')}"),
        ("First response", dur(latencies[0]) if latencies else "–",
         f"median {dur(sorted(latencies)[len(latencies) // 2])}" if latencies else "no audio responses"),
        ("Tokens", f"{usage.get('total_tokens', 0):,}",
         f"in {usage.get('input_tokens', 0):,} · out {usage.get('output_tokens', 0):,}"),
    ]  # fmt: skip
    cells = "".join(
        f'<div class="fact"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div>'
        f'<div class="s" title="{esc(sub)}">{esc(sub)}</div></div>'
        for k, v, sub in facts
    )
    return (
        f'<header><div class="title"><h1>{esc(job_id)}</h1>{status}</div>'
        f'<p class="sub">Voice Live batch job report · <span title="{esc(url)}">{esc(url)}</span></p>'
        f'<div class="facts">{cells}</div></header>'
    )


# -- timeline ---------------------------------------------------------------------------------------


def _timeline_card(
    timeline: Timeline, waveform: Waveform | None, audio_files: Collection[str], extent: float
) -> str:
    svg = timeline_svg(timeline, waveform, extent)
    player = (
        '<div class="player"><span>conversation.wav <small>(left: caller as streamed, right: assistant '
        'where its audio arrived)</small></span><audio id="conversation" controls preload="metadata" '
        'src="audio/conversation.wav"></audio></div>'
        if "audio/conversation.wav" in audio_files
        else '<p class="muted">No conversation.wav for this job.</p>'
    )
    legend = "".join(
        f'<span class="key {k}"><i></i>{esc(label)}</span>'
        for k, label in (
            ("k-turn", "caller turn (VAD)"), ("k-completed", "response completed"),
            ("k-cancelled", "cancelled / interrupted"), ("k-failed", "failed / incomplete"),
            ("k-tool", "tool call"), ("k-latency", "turn end → first audio"),
        )
    )  # fmt: skip
    return (
        '<section class="card"><h2>Timeline</h2><p class="muted">Click the timeline to play the '
        f'conversation from that point.</p>{svg}<div class="legend">{legend}</div>{player}</section>'
    )


# -- tables -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Row:
    """One transcript table row; `text` and `status` are HTML already, everything else is escaped."""

    who: str
    tag: str
    start: float | None
    end: float | None
    text: str
    latency: str = ""
    status: str = ""

    def html(self) -> str:
        at = f' data-ms="{self.start:.0f}"' if self.start is not None else ""
        return (
            f'<tr class="{self.who}"{at}><td><span class="who {self.who}">{esc(self.tag)}</span></td>'
            f"<td>{clock(self.start)}</td><td>{clock(self.end)}</td>"
            f'<td class="text">{self.text}</td><td class="num">{esc(self.latency)}</td>'
            f"<td>{self.status}</td></tr>"
        )


def _turn_row(turn: UserTurn) -> _Row:
    text = esc(turn.transcript) if turn.transcript else _MUTED.format("[speech — no transcript]")
    note = _chip("no response", "warn") if turn.no_response else ""
    return _Row(
        who="caller", tag=f"U{turn.index}", start=turn.start_ms, end=turn.end_ms, text=text, status=note
    )


def _response_row(resp: AssistantResponse, timeline: Timeline) -> _Row:
    start, end = span(resp) or (None, None)
    spoken = resp.transcript or resp.text
    reason = f": {resp.status_reason}" if resp.status_reason else ""
    status = _chip(resp.status + reason, slug(resp.status))
    if resp.trigger == "tool":
        status += " " + _chip("after tool", "info")
    lat = latency_ms(resp, turn_for(resp, timeline.user_turns))
    called = [c.name for c in timeline.tool_calls if c.response_id == resp.response_id]
    silent = f"[no audio; called {', '.join(called)}]" if called else "[no transcript]"
    return _Row(
        who="assistant",
        tag=f"R{resp.index}",
        start=start,
        end=end if resp.audio_ms else None,
        text=esc(spoken) if spoken else _MUTED.format(esc(silent)),
        latency=dur(lat) if lat is not None else "",
        status=status,
    )


def _transcript_card(timeline: Timeline) -> str:
    rows = [_turn_row(t) for t in timeline.user_turns]
    rows += [_response_row(r, timeline) for r in timeline.responses]
    rows.sort(key=lambda r: r.start if r.start is not None else float("inf"))
    head = "<tr><th>Who</th><th>Start</th><th>End</th><th>Text</th><th>Latency</th><th>Status</th></tr>"
    body = "".join(r.html() for r in rows) or '<tr><td colspan="6" class="muted">Nothing was said.</td></tr>'
    return (
        '<section class="card"><h2>Transcript</h2><p class="muted">Latency: end of the caller\'s turn → '
        "the response's first audio (measured by the worker; click a row to play from there).</p>"
        f'<table class="transcript">{head}{body}</table></section>'
    )


def _pretty(value: Any, limit: int = 2000) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return esc(value[:limit])
    text = json.dumps(value, indent=1, ensure_ascii=False)
    return esc(text if len(text) <= limit else text[:limit] + " …")


def _tool_row(call: ToolCallRecord) -> str:
    outcome = (
        f'<td class="err"><pre>{esc(call.error)}</pre></td>'
        if call.error
        else f"<td><pre>{_pretty(call.result)}</pre></td>"
    )
    return (
        f'<tr><td><b>{esc(call.name)}</b><div class="muted">{esc(call.source)}</div></td>'
        f"<td>{clock(call.start_ms)}</td><td><pre>{_pretty(call.arguments)}</pre></td>{outcome}"
        f'<td class="num">{dur(call.duration_ms)}</td></tr>'
    )


def _tools_card(calls: list[ToolCallRecord]) -> str:
    if not calls:
        return _card("Tool calls", _MUTED_P.format("No tool calls."))
    head = "<tr><th>Tool</th><th>At</th><th>Arguments</th><th>Result / error</th><th>Duration</th></tr>"
    return _card("Tool calls", f'<table class="tools">{head}{"".join(map(_tool_row, calls))}</table>')


def _problems_card(timeline: Timeline, manifest: Mapping[str, Any] | None) -> str:
    items = [f"<li>{esc(w)}</li>" for w in timeline.warnings]
    items += [f'<li class="err">{esc(json.dumps(e, ensure_ascii=False))}</li>' for e in timeline.errors]
    if manifest is not None and manifest.get("error"):
        items.append(f'<li class="err">{esc(manifest["error"])}</li>')
    if not items:
        return _card("Warnings", _MUTED_P.format("None."))
    return _card("Warnings and errors", f'<ul class="problems">{"".join(items)}</ul>')


def _responses_audio_card(timeline: Timeline, audio_files: Collection[str]) -> str:
    cards = []
    for resp in timeline.responses:
        name = f"audio/response-{resp.index:03d}.wav"
        if name not in audio_files:
            continue
        cards.append(
            f'<div class="clip"><div><b>R{resp.index}</b> {_chip(resp.status, slug(resp.status))} '
            f'<span class="muted">{dur(resp.audio_ms)} at {clock(resp.start_ms)}</span></div>'
            f'<audio controls preload="none" src="{esc(name)}"></audio></div>'
        )
    body = "".join(cards) or _MUTED_P.format("No response audio for this job.")
    return _card("Response audio", f'<div class="clips">{body}</div>')
