"""The session timeline in input-audio time (user turns, responses, tool calls) and its renderings.

All `*_ms` positions are milliseconds on the *input clock*: 0 is the first streamed input byte, as in
the server's VAD `audio_start_ms`/`audio_end_ms`. `transcript.json` is `Timeline.model_dump_json()`;
`to_vtt` and `tool_calls_jsonl` render the other two artifacts.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "AssistantResponse",
    "AudioPlacement",
    "SessionSegment",
    "Timeline",
    "ToolCallRecord",
    "UserTurn",
    "to_vtt",
    "tool_calls_jsonl",
]


class _Model(BaseModel):
    model_config = {"extra": "forbid"}


class UserTurn(_Model):
    """One user utterance: a server-VAD turn or one of our manual commits."""

    index: int
    item_id: str | None = None
    source: Literal["server_vad", "manual"] = "server_vad"
    start_ms: float | None = None
    end_ms: float | None = None
    transcript: str | None = None
    transcription: Literal["pending", "completed", "failed", "off"] = "off"
    response_ids: list[str] = Field(default_factory=list)
    no_response: bool = False


class AudioPlacement(_Model):
    """Where one audio delta of a response arrived: `input_ms` on the input clock, at `byte_offset` in
    that response's pcm file, `n_bytes` long."""

    input_ms: float
    byte_offset: int
    n_bytes: int


class AssistantResponse(_Model):
    index: int
    response_id: str
    status: str = "in_progress"
    status_reason: str | None = None
    truncated: bool = False
    trigger: Literal["server_vad", "manual", "tool", "unknown"] = "unknown"
    user_item_id: str | None = None
    start_ms: float | None = None
    done_ms: float | None = None
    text: str = ""
    transcript: str = ""
    audio_ms: float = 0.0
    audio_bytes: int = 0
    audio_file: str | None = None
    first_audio_latency_ms: float | None = None
    placements: list[AudioPlacement] = Field(default_factory=list)
    usage: dict[str, int] = Field(default_factory=dict)


class ToolCallRecord(_Model):
    call_id: str
    name: str
    response_id: str | None = None
    arguments: str
    result: Any = None
    error: str | None = None
    source: Literal["executed", "fixture"] = "executed"
    start_ms: float | None = None
    duration_ms: float = 0.0


class SessionSegment(_Model):
    """One Voice Live session of the job. Long inputs roll over to a new session at a silence boundary;
    each session carried the input from `start_ms` to `end_ms` on the input clock (`end_ms` is None
    while it is open). `reason`: why it was opened — "start", "rollover" (at a silence boundary), or
    "forced" (no silence came within the grace window, so the previous session was cut mid-speech)."""

    index: int
    session_id: str | None = None
    start_ms: float = 0.0
    end_ms: float | None = None
    reason: Literal["start", "rollover", "forced"] = "start"
    connect_ms: float | None = None


class Timeline(_Model):
    user_turns: list[UserTurn] = Field(default_factory=list)
    responses: list[AssistantResponse] = Field(default_factory=list)
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    errors: list[dict[str, Any]] = Field(default_factory=list)
    usage: dict[str, int] = Field(default_factory=dict)
    sessions: list[SessionSegment] = Field(default_factory=list)


def _vtt_ts(ms: float) -> str:
    total = max(0, round(ms))
    h, rest = divmod(total, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{milli:03d}"


def _vtt_text(text: str) -> str:
    # A blank line would end the cue and "-->" would start a new one; neither may appear in a payload.
    flat = " ".join(text.split())
    return flat.replace("-->", "->").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(timeline: Timeline) -> str:
    """WebVTT with one cue per user turn and per response, ordered by start, `<v User>`/`<v Assistant>`."""
    cues: list[tuple[float, float, str]] = []
    for turn in timeline.user_turns:
        if turn.start_ms is None:
            continue
        end = turn.end_ms if turn.end_ms is not None else turn.start_ms
        text = turn.transcript or "[speech]"
        cues.append((turn.start_ms, max(end, turn.start_ms + 1), f"<v User>{_vtt_text(text)}"))
    for resp in timeline.responses:
        if resp.start_ms is None:
            continue
        spoken = resp.transcript or resp.text
        if not spoken:
            continue
        end = resp.start_ms + resp.audio_ms if resp.audio_ms else (resp.done_ms or resp.start_ms)
        cues.append((resp.start_ms, max(end, resp.start_ms + 1), f"<v Assistant>{_vtt_text(spoken)}"))
    cues.sort(key=lambda c: (c[0], c[1]))
    lines = ["WEBVTT", ""]
    for n, (start, end, text) in enumerate(cues, start=1):
        lines += [str(n), f"{_vtt_ts(start)} --> {_vtt_ts(end)}", text, ""]
    return "\n".join(lines)


def tool_calls_jsonl(timeline: Timeline) -> bytes:
    """One JSON object per tool call, in call order (UTF-8, newline-terminated)."""
    out = [
        json.dumps(call.model_dump(mode="json"), ensure_ascii=False) + "\n" for call in timeline.tool_calls
    ]
    return "".join(out).encode("utf-8")
