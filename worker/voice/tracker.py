"""Server events → the timeline: user turns, responses (with their audio files and placements), usage.

The tracker only records; it never sends. `session.py` reads its state (`active_responses`, `idle()`)
to decide when to send `response.create` and when the input is fully answered. Each response's audio is
appended, as received, to `workdir/response-NNN.pcm` (pcm16 mono 24 kHz) with one placement per delta.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Literal

from opentelemetry.trace import Span, Status, StatusCode

from worker.metrics import instruments
from worker.telemetry import Attr, SpanName, content_enabled, tracer
from worker.voice.timeline import AssistantResponse, AudioPlacement, Timeline, UserTurn

__all__ = ["RESPONSE_TAG", "EventLog", "Tracker"]

_log = logging.getLogger(__name__)

#: Output audio is always requested as pcm16 at 24 kHz (see `wire.session_update_event`).
OUTPUT_BYTES_PER_MS = 48
Trigger = Literal["server_vad", "manual", "tool", "unknown"]
#: `response.metadata` key carrying our request tag (the service echoes metadata in `response.created`).
RESPONSE_TAG = "vlw_request"


class EventLog:
    """`events.jsonl.gz`: every non-audio client event and every server event, audio payloads elided as
    `"<b64 N bytes>"` (the same convention as research/voicelive-traces)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = gzip.GzipFile(path, "wb")

    def write(self, direction: str, input_ms: float, event: Mapping[str, Any]) -> None:
        ev = dict(event)
        for key in ("audio", "delta"):
            if key in ev and ev.get("type") in ("input_audio_buffer.append", "response.audio.delta"):
                ev[key] = f"<b64 {_b64_len(ev[key])} bytes>"
        line = {"dir": direction, "input_ms": round(input_ms, 1), "event": ev}
        self._file.write(json.dumps(line, ensure_ascii=False, default=str).encode() + b"\n")

    def close(self) -> None:
        self._file.close()


def _b64_len(value: Any) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    text = str(value)
    return len(text) * 3 // 4 - text.count("=", max(0, len(text) - 2))


class Tracker:
    """Builds the `Timeline` from server events. `input_ms(t)` maps a monotonic time to the input clock.

    Args:
        job_id: for log lines.
        workdir: where `response-NNN.pcm` files go.
        input_ms: monotonic seconds → input-clock ms.
        transcription: whether input transcription is on (turns then wait for their transcript).
    """

    def __init__(
        self, *, workdir: Path, input_ms: Callable[[float], float], transcription: bool, job_id: str = "-"
    ) -> None:
        self.job_id = job_id
        self.timeline = Timeline()
        self.session: dict[str, Any] = {}
        self.active_responses: set[str] = set()
        self.response_done_seen = False
        #: Where the current session started on the input clock: its VAD times (ms from the session's
        #: first appended byte) are shifted by this. Non-zero after a session rollover.
        self.audio_offset_ms = 0.0
        self._workdir = workdir
        self._input_ms = input_ms
        self._transcription = transcription
        self._turns_by_item: dict[str, UserTurn] = {}
        self._responses: dict[str, AssistantResponse] = {}
        self._audio_files: dict[str, IO[bytes]] = {}
        self._stopped_at: dict[str, float] = {}  # user item id → arrival of speech_stopped / our commit
        self._item_to_response: dict[str, str] = {}
        self._expected: dict[str, tuple[Trigger, UserTurn | str | None]] = {}
        self._manual: deque[UserTurn] = deque()
        self._last_user_item: str | None = None
        self._spans: dict[str, Span] = {}  # response id → its open `voicelive response` span

    # --- what the session tells us -------------------------------------------------------------------

    def expect_response(self, tag: str, trigger: Trigger, answers: UserTurn | str | None = None) -> None:
        """We sent `response.create` with `metadata.vlw_request = tag`; `answers` is the user turn (or
        its item id) it answers. Responses without our tag were created by the server (VAD)."""
        self._expected[tag] = (trigger, answers)

    def forget_expected(self, tag: str) -> None:
        """Our `response.create` with `tag` was refused (e.g. a response was already active)."""
        self._expected.pop(tag, None)

    def manual_turn(self, start_ms: float, end_ms: float, now: float) -> UserTurn:
        """We committed an utterance; the next `input_audio_buffer.committed` carries its item id."""
        turn = self._new_turn(source="manual", start_ms=start_ms, end_ms=end_ms)
        self._manual.append(turn)
        self._stopped_at[f"manual:{turn.index}"] = now
        return turn

    def warn(self, message: str) -> None:
        _log.warning("job %s: %s", self.job_id, message)
        self.timeline.warnings.append(message)

    def open_vad_turns(self) -> int:
        return sum(1 for t in self.timeline.user_turns if t.start_ms is not None and t.end_ms is None)

    def pending_transcriptions(self) -> int:
        return sum(1 for t in self.timeline.user_turns if t.transcription == "pending")

    def abandon_session(self, cut_ms: float, now: float) -> None:
        """The current session is closing (rollover) with work still open: VAD turns end at `cut_ms`,
        pending transcriptions fail, active responses end `incomplete` (reason `session_rollover`), and
        commits or requests not yet acknowledged are forgotten — none of them can finish any more."""
        for turn in self.timeline.user_turns:
            if turn.start_ms is not None and turn.end_ms is None:
                turn.end_ms = max(cut_ms, turn.start_ms)
                self.warn(f"user turn {turn.index} was still open at the session rollover; ended there")
            if turn.transcription == "pending":
                turn.transcription = "failed"
                self.warn(f"user turn {turn.index}: transcription lost at the session rollover")
        for rid in sorted(self.active_responses):
            resp = self._responses[rid]
            resp.status, resp.status_reason = "incomplete", "session_rollover"
            resp.done_ms = self._input_ms(now)
            self.warn(f"response {resp.index} was cut off by the session rollover")
            out = self._audio_files.pop(rid, None)
            if out is not None:
                out.close()
            self._end_span(resp)
        self.active_responses.clear()
        self._manual.clear()
        self._expected.clear()

    def user_item_of(self, response_id: str) -> str | None:
        """The user item a response answered (None when unknown)."""
        resp = self._responses.get(response_id)
        return resp.user_item_id if resp else None

    def response_for_item(self, item_id: str) -> str | None:
        return self._item_to_response.get(item_id)

    # --- server events -------------------------------------------------------------------------------

    def handle(self, event: Mapping[str, Any], now: float) -> None:
        etype = str(event.get("type", ""))
        handler = getattr(self, "_on_" + etype.replace(".", "_"), None)
        if handler is not None:
            handler(event, now)

    def _on_session_created(self, event: Mapping[str, Any], now: float) -> None:
        self.session = dict(event.get("session") or {})

    def _on_session_updated(self, event: Mapping[str, Any], now: float) -> None:
        self.session = dict(event.get("session") or {})

    def _on_input_audio_buffer_speech_started(self, event: Mapping[str, Any], now: float) -> None:
        item_id = event.get("item_id")
        turn = self._turn_for(item_id)
        turn.start_ms = self._shifted(event.get("audio_start_ms"))
        _log.info("job %s: user turn %d started at %.0f ms", self.job_id, turn.index, turn.start_ms or 0.0)

    def _on_input_audio_buffer_speech_stopped(self, event: Mapping[str, Any], now: float) -> None:
        item_id = event.get("item_id")
        turn = self._turn_for(item_id)
        turn.end_ms = self._shifted(event.get("audio_end_ms"))
        if item_id:
            self._stopped_at[str(item_id)] = now
        _log.info("job %s: user turn %d ended at %.0f ms", self.job_id, turn.index, turn.end_ms or 0.0)

    def _on_input_audio_buffer_committed(self, event: Mapping[str, Any], now: float) -> None:
        item_id = str(event.get("item_id") or "")
        if self._manual:
            turn = self._manual.popleft()
            turn.item_id = item_id
            self._turns_by_item[item_id] = turn
            self._stopped_at[item_id] = self._stopped_at.pop(f"manual:{turn.index}", now)
        else:
            turn = self._turn_for(item_id)
        if self._transcription and turn.transcription == "off":
            turn.transcription = "pending"
        self._last_user_item = item_id

    def _on_conversation_item_created(self, event: Mapping[str, Any], now: float) -> None:
        item = event.get("item") or {}
        if item.get("role") != "user" or item.get("type") != "message":
            return
        turn = self._turns_by_item.get(str(item.get("id")))
        if turn is None:
            return  # a seeded text item
        for part in item.get("content") or []:
            if part.get("type") == "input_audio" and part.get("transcript"):
                turn.transcript, turn.transcription = str(part["transcript"]), "completed"

    def _on_conversation_item_input_audio_transcription_completed(
        self, event: Mapping[str, Any], now: float
    ) -> None:
        turn = self._turn_for(event.get("item_id"))
        turn.transcript, turn.transcription = str(event.get("transcript") or ""), "completed"

    def _on_conversation_item_input_audio_transcription_failed(
        self, event: Mapping[str, Any], now: float
    ) -> None:
        turn = self._turn_for(event.get("item_id"))
        turn.transcription = "failed"
        error = event.get("error") or {}
        self.warn(
            f"transcription of user turn {turn.index} failed: {error.get('code') or error.get('message')}"
        )

    def _on_response_created(self, event: Mapping[str, Any], now: float) -> None:
        body = event.get("response") or {}
        rid = str(body.get("id") or f"resp_unknown_{len(self._responses)}")
        tag = (body.get("metadata") or {}).get(RESPONSE_TAG)
        trigger, answers = self._expected.pop(str(tag), ("server_vad", None))
        # Tags tell our responses from the server's: arrival order cannot (an unpaced stream has the
        # server's VAD responses race ours). A server-created response answers the latest user turn.
        user_item = answers.item_id if isinstance(answers, UserTurn) else answers
        user_item = user_item or self._last_user_item
        resp = AssistantResponse(index=len(self._responses) + 1, response_id=rid, trigger=trigger)
        resp.user_item_id = user_item
        self._responses[rid] = resp
        self.timeline.responses.append(resp)
        self.active_responses.add(rid)
        # One span per response, a child of the current (`voicelive session`) span; ended at response.done.
        self._spans[rid] = tracer().start_span(
            SpanName.VOICELIVE_RESPONSE,
            attributes={
                Attr.RESPONSE_ID: rid,
                Attr.RESPONSE_INDEX: resp.index,
                Attr.RESPONSE_TRIGGER: trigger,
            },
        )
        if trigger != "tool" and user_item and user_item in self._turns_by_item:
            self._turns_by_item[user_item].response_ids.append(rid)

    def _on_response_output_item_added(self, event: Mapping[str, Any], now: float) -> None:
        item = event.get("item") or {}
        if item.get("id") and event.get("response_id"):
            self._item_to_response[str(item["id"])] = str(event["response_id"])

    def _on_response_audio_delta(self, event: Mapping[str, Any], now: float) -> None:
        resp = self._response(event)
        try:
            audio = base64.b64decode(str(event.get("delta") or ""), validate=False)
        except (binascii.Error, ValueError):
            self.warn(f"response {resp.index}: undecodable audio delta skipped")
            return
        self._mark_start(resp, now)
        if resp.first_audio_latency_ms is None and resp.user_item_id in self._stopped_at:
            resp.first_audio_latency_ms = (now - self._stopped_at[resp.user_item_id]) * 1000.0
        out = self._audio_files.get(resp.response_id)
        if out is None:
            resp.audio_file = f"response-{resp.index:03d}.pcm"
            out = self._audio_files[resp.response_id] = (self._workdir / resp.audio_file).open("wb")
        out.write(audio)
        resp.placements.append(
            AudioPlacement(input_ms=self._input_ms(now), byte_offset=resp.audio_bytes, n_bytes=len(audio))
        )
        resp.audio_bytes += len(audio)
        resp.audio_ms = resp.audio_bytes / OUTPUT_BYTES_PER_MS

    def _on_response_audio_transcript_delta(self, event: Mapping[str, Any], now: float) -> None:
        resp = self._response(event)
        self._mark_start(resp, now)
        resp.transcript += str(event.get("delta") or "")

    def _on_response_audio_transcript_done(self, event: Mapping[str, Any], now: float) -> None:
        if event.get("transcript") is not None:
            self._response(event).transcript = str(event["transcript"])

    def _on_response_text_delta(self, event: Mapping[str, Any], now: float) -> None:
        resp = self._response(event)
        self._mark_start(resp, now)
        resp.text += str(event.get("delta") or "")

    def _on_response_text_done(self, event: Mapping[str, Any], now: float) -> None:
        if event.get("text") is not None:
            self._response(event).text = str(event["text"])

    def _on_conversation_item_truncated(self, event: Mapping[str, Any], now: float) -> None:
        rid = self._item_to_response.get(str(event.get("item_id")))
        if rid in self._responses:
            self._responses[rid].truncated = True

    def _on_response_done(self, event: Mapping[str, Any], now: float) -> None:
        body = event.get("response") or {}
        resp = self._response({"response_id": body.get("id")})
        resp.status = str(body.get("status") or "completed")
        details = body.get("status_details") or {}
        reason = details.get("reason") or (details.get("error") or {}).get("message")
        resp.status_reason = str(reason) if reason else None
        resp.truncated = resp.truncated or (
            resp.status == "cancelled" and resp.status_reason == "turn_detected"
        )
        resp.done_ms = self._input_ms(now)
        for key, value in _flatten_usage(body.get("usage") or {}).items():
            resp.usage[key] = value
            self.timeline.usage[key] = self.timeline.usage.get(key, 0) + value
        self.active_responses.discard(resp.response_id)
        self.response_done_seen = True
        out = self._audio_files.pop(resp.response_id, None)
        if out is not None:
            out.close()
        self._end_span(resp)
        _log.info(
            "job %s: response %d %s (%s) audio %.0f ms",
            self.job_id,
            resp.index,
            resp.status,
            resp.status_reason or "-",
            resp.audio_ms,
        )

    def _on_warning(self, event: Mapping[str, Any], now: float) -> None:
        warning = event.get("warning") or {}
        self.warn(f"Voice Live warning {warning.get('code') or ''}: {warning.get('message') or ''}".strip())

    # --- helpers ---------------------------------------------------------------------------------------

    def _new_turn(self, *, source: Literal["server_vad", "manual"], **fields: Any) -> UserTurn:
        turn = UserTurn(index=len(self.timeline.user_turns) + 1, source=source, **fields)
        self.timeline.user_turns.append(turn)
        return turn

    def _turn_for(self, item_id: Any) -> UserTurn:
        key = str(item_id or "")
        turn = self._turns_by_item.get(key)
        if turn is None:
            turn = self._new_turn(source="server_vad", item_id=key or None)
            if key:
                self._turns_by_item[key] = turn
        return turn

    def _shifted(self, value: Any) -> float | None:
        """A server VAD time (ms in the current session) → the input clock."""
        ms = _float(value)
        return None if ms is None else ms + self.audio_offset_ms

    def _response(self, event: Mapping[str, Any]) -> AssistantResponse:
        rid = str(event.get("response_id") or "")
        resp = self._responses.get(rid)
        if resp is None:  # a delta for a response we never saw created: record it anyway
            self._on_response_created({"response": {"id": rid}}, 0.0)
            resp = self._responses[rid]
        return resp

    def _mark_start(self, resp: AssistantResponse, now: float) -> None:
        if resp.start_ms is None:
            resp.start_ms = self._input_ms(now)

    def finish(self) -> Timeline:
        """Close audio files and mark user turns that got no response. Call once, at the end."""
        for out in self._audio_files.values():
            out.close()
        self._audio_files.clear()
        for turn in self.timeline.user_turns:
            if not turn.response_ids:
                turn.no_response = True
                where = f"{turn.start_ms or 0:.0f}-{turn.end_ms or 0:.0f} ms"
                self.warn(f"user turn {turn.index} ({where}) got no response")
            if turn.transcription == "pending":
                self.warn(f"user turn {turn.index}: transcription never completed")
        for rid in sorted(self.active_responses):
            self.warn(f"response {self._responses[rid].index} never finished")
            self._end_span(self._responses[rid])
        return self.timeline

    def _end_span(self, resp: AssistantResponse) -> None:
        """End a response's span with its facts, and record its latency and tokens as metrics."""
        span = self._spans.pop(resp.response_id, None)
        if span is None:
            return
        span.set_attribute(Attr.RESPONSE_STATUS, resp.status)
        if resp.status_reason:
            span.set_attribute(Attr.RESPONSE_STATUS_REASON, resp.status_reason)
        span.set_attribute(Attr.RESPONSE_AUDIO_MS, round(resp.audio_ms, 1))
        if resp.first_audio_latency_ms is not None:
            span.set_attribute(Attr.RESPONSE_LATENCY_MS, round(resp.first_audio_latency_ms, 1))
            instruments().response_latency.record(resp.first_audio_latency_ms)
        for key, value in resp.usage.items():
            span.set_attribute(Attr.TOKENS_PREFIX + key, value)
        instruments().record_usage(resp.usage)
        if content_enabled() and (resp.transcript or resp.text):
            span.set_attribute(Attr.RESPONSE_TRANSCRIPT, resp.transcript or resp.text)
        if resp.status in {"failed", "incomplete", "in_progress"}:
            span.set_status(Status(StatusCode.ERROR, resp.status_reason or resp.status))
        span.end()


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _flatten_usage(usage: Mapping[str, Any], prefix: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in usage.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            out[prefix + key] = value
        elif isinstance(value, Mapping):
            out.update(_flatten_usage(value, f"{prefix}{key}."))
    return out
