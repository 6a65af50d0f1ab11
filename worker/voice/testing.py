"""A scripted Voice Live service for `FakeVoiceConnector`: enough protocol to drive `run_session` in tests.

It follows the event orders of research/voicelive.md §3 (server-VAD turn, manual commit, function call,
text/audio responses) on the *audio time* of the appended bytes, so tests are deterministic whatever the
pacing. One service serves every connection of a job in turn (session rollover): turns are scripted on the
job's input clock and reported, as a real service would, in the time of the session that heard them (ms from
that session's first appended byte). It also polices the client: `violations` lists every `response.create`
sent while a response was active. Shipped inside the package (pipecat style) so pipeline tests can reuse it.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.voice.ports import FakeServer

__all__ = ["ScriptedTool", "ScriptedVoiceService", "VadTurn"]


@dataclass(frozen=True)
class VadTurn:
    """A user turn the service "detects" once the input reaches `end_ms + silence_ms`."""

    start_ms: float
    end_ms: float
    transcript: str = "hello"


@dataclass(frozen=True)
class ScriptedTool:
    """The next response calls `name` with `arguments` instead of answering."""

    name: str
    arguments: dict[str, Any]


@dataclass
class ScriptedVoiceService:
    """Handler + `on_connect` for `FakeVoiceConnector(service.handle, on_connect=service.on_connect)`.

    Args:
        bytes_per_ms: of the input format (32 for pcm16 16 kHz).
        turns: server-VAD turns to report (ignored when the session has `turn_detection: null`).
        tool_calls: consumed by the first responses, one call each.
        reject_config: answer `session.update` with an `invalid_request_error`.
        drop_at_ms: drop the connection once this much input arrived.
        expire_after_ms: a session that received this much input sends `error` `session_expired` and
            drops (the service's 60-min cap, in audio time).
        hold_tool_response_ms: keep a function-call response active until this much *more* input arrived
            (so the client has a chance to misbehave).
        reply_audio_ms: length of each spoken reply (pcm16 24 kHz silence).
    """

    bytes_per_ms: int = 32
    turns: list[VadTurn] = field(default_factory=list)
    tool_calls: list[ScriptedTool] = field(default_factory=list)
    reject_config: bool = False
    drop_at_ms: float | None = None
    expire_after_ms: float | None = None
    hold_tool_response_ms: float = 0.0
    reply_audio_ms: int = 200
    silence_ms: float = 500.0
    violations: list[str] = field(default_factory=list)
    session: dict[str, Any] = field(default_factory=dict)
    _received_bytes: int = 0
    _session_start_ms: float = 0.0
    _turns_left: deque[VadTurn] = field(default_factory=deque)
    _active: str | None = None
    _held: tuple[float, str] | None = None
    _n: int = 0

    def __post_init__(self) -> None:
        self._turns_left = deque(self.turns)

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n:04d}"

    @property
    def audio_ms(self) -> float:
        return self._received_bytes / self.bytes_per_ms

    def on_connect(self, server: FakeServer) -> None:
        # A new session hears only what is appended from now on: turns that ended before are gone.
        self._session_start_ms = self.audio_ms
        self._turns_left = deque(t for t in self._turns_left if t.end_ms > self._session_start_ms)
        self._active, self._held = None, None
        self.session = {
            "id": self._id("sess"),
            "model": server.model,
            "voice": {"name": "alloy", "type": "openai"},
        }
        server.emit({"type": "session.created", "session": dict(self.session)})

    def handle(self, event: Mapping[str, Any], server: FakeServer) -> None:
        kind = event.get("type")
        if kind == "session.update":
            if self.reject_config:
                error: dict[str, Any] = {"type": "invalid_request_error", "code": "invalid_value"}
                error |= {
                    "param": "session.voice",
                    "message": "Invalid voice",
                    "event_id": event.get("event_id"),
                }
                server.emit({"type": "error", "error": error})
                return
            self.session.update(event["session"])
            server.emit({"type": "session.updated", "session": dict(self.session)})
        elif kind == "conversation.item.create":
            item = dict(event["item"]) | {"id": self._id("item")}
            server.emit({"type": "conversation.item.created", "item": item})
        elif kind == "input_audio_buffer.append":
            self._on_audio(event["audio"], server)
        elif kind == "input_audio_buffer.commit":
            self._commit(server, self._id("item"), transcript="manual words")
        elif kind == "response.create":
            if self._active is not None:
                self.violations.append(f"response.create while {self._active} active")
            self._respond(server, metadata=(event.get("response") or {}).get("metadata"))

    def _on_audio(self, audio: Any, server: FakeServer) -> None:
        self._received_bytes += len(audio) if isinstance(audio, bytes | bytearray) else len(audio) * 3 // 4
        if self.drop_at_ms is not None and self.audio_ms >= self.drop_at_ms:
            server.drop()
            return
        if (
            self.expire_after_ms is not None
            and self.audio_ms - self._session_start_ms >= self.expire_after_ms
        ):
            error = {"type": "invalid_request_error", "code": "session_expired", "message": "Session expired"}
            server.emit({"type": "error", "error": error})
            server.drop()
            return
        if self._held is not None and self.audio_ms >= self._held[0]:
            self._finish(server, self._held[1])
            self._held = None
        vad = self.session.get("turn_detection", {"type": "server_vad"})
        while (
            vad is not None
            and self._turns_left
            and self.audio_ms >= self._turns_left[0].end_ms + self.silence_ms
        ):
            turn = self._turns_left.popleft()
            item_id = self._id("item")
            server.emit(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": max(turn.start_ms - self._session_start_ms, 0.0),
                    "item_id": item_id,
                }
            )
            end_ms = turn.end_ms - self._session_start_ms
            server.emit(
                {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": end_ms, "item_id": item_id}
            )
            self._commit(server, item_id, transcript=turn.transcript)
            if vad.get("create_response", True):
                if self._active is not None:  # barge-in: the running response is cancelled
                    self._finish(server, self._active, status="cancelled", reason="turn_detected")
                self._respond(server)

    def _commit(self, server: FakeServer, item_id: str, *, transcript: str) -> None:
        server.emit({"type": "input_audio_buffer.committed", "previous_item_id": None, "item_id": item_id})
        item = {"id": item_id, "type": "message", "role": "user", "content": [{"type": "input_audio"}]}
        server.emit({"type": "conversation.item.created", "item": item})
        if self.session.get("input_audio_transcription"):
            server.emit(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": transcript,
                }
            )

    def _respond(self, server: FakeServer, *, metadata: Any = None) -> None:
        rid = self._id("resp")
        self._active = rid
        item: dict[str, Any]
        server.emit(
            {
                "type": "response.created",
                "response": {"id": rid, "status": "in_progress", "output": [], "metadata": metadata},
            }
        )
        if self.tool_calls:
            call = self.tool_calls.pop(0)
            item_id, call_id = self._id("item"), self._id("call")
            args = json.dumps(call.arguments)
            base = {"response_id": rid, "item_id": item_id, "output_index": 0, "call_id": call_id}
            item = {
                "id": item_id,
                "type": "function_call",
                "name": call.name,
                "call_id": call_id,
                "arguments": "",
            }
            server.emit(
                {"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": item}
            )
            server.emit({"type": "response.function_call_arguments.delta", **base, "delta": args})
            server.emit(
                {
                    "type": "response.function_call_arguments.done",
                    **base,
                    "name": call.name,
                    "arguments": args,
                }
            )
            if self.hold_tool_response_ms > 0:
                self._held = (self.audio_ms + self.hold_tool_response_ms, rid)
                return
        else:
            item_id = self._id("item")
            item = {"id": item_id, "type": "message", "role": "assistant", "content": []}
            base = {"response_id": rid, "item_id": item_id, "output_index": 0, "content_index": 0}
            server.emit(
                {"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": item}
            )
            if "audio" in self.session.get("modalities", ["text", "audio"]):
                server.emit({"type": "response.audio_transcript.delta", **base, "delta": "Sure."})
                pcm = b"\x00\x00" * 24 * self.reply_audio_ms
                server.emit({"type": "response.audio.delta", **base, "delta": base64.b64encode(pcm).decode()})
                server.emit({"type": "response.audio.done", **base})
                server.emit({"type": "response.audio_transcript.done", **base, "transcript": "Sure."})
            else:
                server.emit({"type": "response.text.delta", **base, "delta": "Sure."})
                server.emit({"type": "response.text.done", **base, "text": "Sure."})
        self._finish(server, rid)

    def _finish(
        self, server: FakeServer, rid: str, *, status: str = "completed", reason: str | None = None
    ) -> None:
        details = {"type": status, "reason": reason} if reason else None
        usage = {"total_tokens": 10, "input_tokens": 6, "output_tokens": 4}
        body: dict[str, Any] = {"id": rid, "status": status, "status_details": details, "usage": usage}
        server.emit({"type": "response.done", "response": body})
        if self._active == rid:
            self._active = None
