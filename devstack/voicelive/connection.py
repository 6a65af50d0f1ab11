"""One simulated Voice Live session on an accepted WebSocket: event dispatch, input audio, VAD turns."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from ._ids import new_id
from .audio import decode_input, input_bytes_per_ms
from .conversation import Conversation
from .faults import CloseAfter, CloseKind, ErrorEvent, HoldResponse
from .options import ResponseTiming, ToolRule
from .recognizer import Recognizer
from .records import ConnectionRecord
from .session import SessionError, default_session, merge_session
from .tape import InputTape
from .turns import TurnHandler
from .vad import EnergyVad, VadEvent, VadEventKind

__all__ = ["ConnectionSettings", "RealtimeConnection", "close_socket"]

log = logging.getLogger("devstack.voicelive")
JSON = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ConnectionSettings:
    """Per-simulator settings every connection shares."""

    model: str | None
    timing: ResponseTiming
    zero_latency: bool
    tool_rule: ToolRule
    session_ttl_s: int
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    recognizer: Recognizer | None = None  # None: placeholder transcripts


async def close_socket(
    ws: web.WebSocketResponse, request: web.Request, record: ConnectionRecord, kind: CloseKind
) -> None:
    """Close as `kind` says. The code is recorded first (1006 for an abrupt drop): the client's close reply
    would otherwise overwrite `ws.close_code`."""
    if record.close_code is None:
        record.close_code = 1006 if kind is CloseKind.DROP else int(kind.value)
    if kind is CloseKind.DROP:
        if request.transport is not None:
            request.transport.abort()
        return
    await ws.close(code=int(kind.value))


class RealtimeConnection:
    """Serves one session until the client or a fault closes it. The caller owns `ws` and awaits `serve()`."""

    def __init__(
        self,
        *,
        ws: web.WebSocketResponse,
        request: web.Request,
        record: ConnectionRecord,
        settings: ConnectionSettings,
    ) -> None:
        self._ws = ws
        self._request = request
        self.record = record
        self._settings = settings
        self.session = default_session(
            session_id=new_id("sess", 21),
            model=settings.model,
            ttl_s=settings.session_ttl_s,
            wall=settings.wall_clock,
        )
        self.conversation = Conversation()
        self._vad: EnergyVad | None = None
        # Input samples kept for a real recogniser (None with placeholder transcripts: nothing to keep).
        self._tape = InputTape() if settings.recognizer is not None else None
        self._utterance_start = 0  # sample index where the open VAD turn's audio (with prefix padding) starts
        self._total_samples = 0
        self._buffer_bytes = 0
        self._appends = 0
        self._used_errors: set[int] = set()
        self._watchdog_closing = False
        hold = [f for f in record.faults if isinstance(f, HoldResponse)]
        self.turns = TurnHandler(
            conn=self,
            timing=settings.timing,
            zero_latency=settings.zero_latency,
            tool_rule=settings.tool_rule,
            hold=hold[0] if hold else None,
            recognizer=settings.recognizer,
        )
        self._handlers: dict[str, Callable[[JSON], Awaitable[None]]] = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit,
            "input_audio_buffer.clear": self._clear,
            "output_audio_buffer.clear": self._output_clear,
            **self.turns.handlers(),
        }

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Send `session.created`, then handle client events until the socket closes."""
        watchdog = asyncio.create_task(self._watchdog(), name="voicelive-watchdog")
        try:
            self._rebuild_vad()
            await self.send({"type": "session.created", "session": self.session})
            async for msg in self._ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_text(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await self._on_text(msg.data.decode("utf-8", errors="replace"))
        finally:
            if not self._watchdog_closing:
                watchdog.cancel()  # a closing watchdog finishes its close handshake instead
            await self.turns.aclose()
            await asyncio.gather(watchdog, return_exceptions=True)

    async def _watchdog(self) -> None:
        """Timed faults and session expiry (error `session_expired`, then close 1001; research §3.1)."""
        close_ms = [f for f in self.record.faults if isinstance(f, CloseAfter) and f.ms is not None]
        if close_ms:
            first = min(close_ms, key=lambda f: f.ms or 0.0)
            await asyncio.sleep((first.ms or 0.0) / 1000.0)
            self._watchdog_closing = True
            await self.close(first.kind)
            return
        await asyncio.sleep(self._settings.session_ttl_s)
        self._watchdog_closing = True
        await self.error("session_expired", "Your session hit the maximum duration of 60 minutes.")
        await self.close(CloseKind.GOING_AWAY)

    async def close(self, kind: CloseKind) -> None:
        await close_socket(self._ws, self._request, self.record, kind)

    # -- sending --------------------------------------------------------------------------------------------

    async def send(self, event: JSON) -> None:
        """Send one server event (adds `event_id`, records it); once the socket closed, only record it."""
        event = {"event_id": new_id("event"), **event}
        self.record.sent.append(event)
        self.record.watch.changed()
        if self._ws.closed:
            return
        try:
            await self._ws.send_str(json.dumps(event))
        except ConnectionResetError:
            log.debug("voicelive: %s not delivered, socket closing", event["type"])

    async def error(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        client_event: JSON | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        client_id = client_event.get("event_id") if client_event else None
        details = {
            "type": error_type,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_id,
        }
        await self.send({"type": "error", "error": details})

    # -- dispatch -------------------------------------------------------------------------------------------

    async def _on_text(self, data: str) -> None:
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            await self.error("invalid_json", "The event is not valid JSON.")
            return
        kind = event.get("type") if isinstance(event, dict) else None
        self.record.received.append(str(kind))
        handler = self._handlers.get(str(kind))
        if handler is None:
            await self.error(
                "invalid_event_type",
                f"Unsupported event type {kind!r}.",
                param="type",
                client_event=event if isinstance(event, dict) else None,
            )
            return
        await handler(event)
        self.record.watch.changed()

    async def _session_update(self, event: JSON) -> None:
        try:
            merged = merge_session(self.session, event.get("session"), audio_started=self._total_samples > 0)
        except SessionError as exc:
            await self.error(exc.code, str(exc), param=exc.param, client_event=event)
            return
        vad_changed = merged.get("turn_detection") != self.session.get("turn_detection")
        self.session = merged
        self.record.session = merged
        if vad_changed:
            self._rebuild_vad()
        await self.send({"type": "session.updated", "session": merged})

    # -- input audio ----------------------------------------------------------------------------------------

    @property
    def input_rate(self) -> int:
        """Sample rate of the input stream (G.711: 8 kHz)."""
        return self._rate

    @property
    def _rate(self) -> int:
        fmt = self.session["input_audio_format"]
        return 8000 if str(fmt).startswith("g711") else int(self.session["input_audio_sampling_rate"])

    def audio_ms(self, n_bytes: int) -> int:
        fmt = str(self.session["input_audio_format"])
        return int(n_bytes / input_bytes_per_ms(fmt, int(self.session["input_audio_sampling_rate"])))

    def _rebuild_vad(self) -> None:
        td = self.session.get("turn_detection")
        if not td:
            self._vad = None
            return
        silence = td.get("silence_duration_ms") or {"low": 800, "high": 250}.get(td.get("eagerness", ""), 500)
        self._vad = EnergyVad(
            sample_rate=self._rate,
            threshold=float(td.get("threshold") or 0.5),
            silence_duration_ms=int(silence),
            speech_duration_ms=int(td.get("speech_duration_ms") or 30),
        )
        self._vad.skip(self._total_samples)  # audio time continues across session.update

    async def _append(self, event: JSON) -> None:
        try:
            raw = base64.b64decode(event.get("audio") or "", validate=True)
        except (binascii.Error, TypeError):
            await self.error("invalid_value", "audio must be base64.", param="audio", client_event=event)
            return
        self.record.append_times.append(self._settings.clock())
        self.record.append_bytes.append(len(raw))
        self._appends += 1
        samples = decode_input(raw, str(self.session["input_audio_format"]))
        events = self._vad.feed(samples) if self._vad is not None else []
        self._total_samples += len(samples)
        self._buffer_bytes += len(raw)
        if self._tape is not None:
            self._tape.append(samples)
        for vad_event in events:
            await self._on_vad(vad_event)
        if self._tape is not None and self._vad is not None and not self._vad.in_speech:
            # Keep only what the onset of the next turn may reach back to (prefix padding).
            self._tape.trim(self._samples(self._prefix_ms() + 100))
        await self._append_faults()

    def _samples(self, ms: int) -> int:
        return ms * self._rate // 1000

    def _prefix_ms(self) -> int:
        td = self.session.get("turn_detection") or {}
        return int(td.get("prefix_padding_ms") or 0)

    async def _append_faults(self) -> None:
        for fault in self.record.faults:
            if isinstance(fault, ErrorEvent) and fault.after_appends == self._appends:
                await self.error(fault.code, "Injected fault.", error_type=fault.error_type)
                if fault.close is not None:
                    await self.close(fault.close)
            elif isinstance(fault, CloseAfter) and fault.appends == self._appends:
                await self.close(fault.kind)

    async def _on_vad(self, event: VadEvent) -> None:
        td = self.session.get("turn_detection") or {}
        if event.kind is VadEventKind.STARTED:
            self._utterance_start = self._samples(max(0, event.audio_ms - self._prefix_ms()))
            await self.turns.speech_started(
                event.audio_ms, interrupt=bool(td.get("interrupt_response", True))
            )
            return
        self._buffer_bytes = 0
        audio = self._tape.cut(self._utterance_start) if self._tape is not None else None
        await self.turns.speech_stopped(
            event.audio_ms, create_response=bool(td.get("create_response", True)), audio=audio
        )

    async def _commit(self, event: JSON) -> None:
        buffered_ms = self.audio_ms(self._buffer_bytes)
        if buffered_ms < 100:
            # OpenAI's code and 100 ms minimum; the Voice Live reference only says "error if empty" (§3.4).
            await self.error(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at least 100ms "
                f"of audio, but buffer only has {buffered_ms}.00ms of audio.",
                client_event=event,
            )
            return
        self._buffer_bytes = 0
        if self._vad is not None:
            self._vad.reset()
        audio = self._tape.cut() if self._tape is not None else None
        await self.turns.commit_audio(buffered_ms, audio=audio)

    async def _clear(self, event: JSON) -> None:
        self._buffer_bytes = 0
        if self._vad is not None:
            self._vad.reset()
        if self._tape is not None:
            self._tape.clear()
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _output_clear(self, event: JSON) -> None:
        await self.send({"type": "output_audio_buffer.cleared"})

    def take_pending_error(self) -> ErrorEvent | None:
        """The next `ErrorEvent(after_appends=None)` fault not yet used (it replaces one response)."""
        for fault in self.record.faults:
            if (
                isinstance(fault, ErrorEvent)
                and fault.after_appends is None
                and id(fault) not in self._used_errors
            ):
                self._used_errors.add(id(fault))
                return fault
        return None
