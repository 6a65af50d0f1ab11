"""Conversation turns: user items (audio and text), response creation/cancellation, barge-in, truncation."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._ids import new_id
from .faults import HoldResponse
from .options import ResponseTiming, ToolRule
from .recognizer import Recognizer
from .responses import ResponsePlan, ResponseRunner
from .tools import choose_tools

if TYPE_CHECKING:
    from .connection import RealtimeConnection

__all__ = ["TurnHandler"]

log = logging.getLogger("devstack.voicelive")
JSON = dict[str, Any]
Samples = npt.NDArray[np.int16]
_MESSAGE_ROLES = ("user", "assistant", "system")


def _content_text(content: Any) -> str:
    parts = content if isinstance(content, list) else []
    return " ".join(
        str(p.get("text") or p.get("transcript") or "") for p in parts if isinstance(p, dict)
    ).strip()


class TurnHandler:
    """Owns the conversation-level events of one connection, the task of its active response and the tasks
    transcribing user audio with a real `recognizer` (None: placeholder text, sent at once)."""

    def __init__(
        self,
        *,
        conn: RealtimeConnection,
        timing: ResponseTiming,
        zero_latency: bool,
        tool_rule: ToolRule,
        hold: HoldResponse | None,
        recognizer: Recognizer | None = None,
    ) -> None:
        self._conn = conn
        self._timing = timing
        self._zero = zero_latency
        self._rule = tool_rule
        self._hold = hold
        self._runner: ResponseRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._speech_item: str | None = None
        self._speech_start_ms = 0
        self._audio_turns = 0
        self._audio_in_ms = 0
        self._tool_turn = 0  # user turn that already got its tool call (FIRST_TURN / EVERY_TURN rules)
        self._conversation_id = new_id("conv", 21)
        self._recognizer = recognizer
        self._transcribing: dict[str, asyncio.Task[None]] = {}  # user item id -> its transcription task

    def handlers(self) -> dict[str, Callable[[JSON], Awaitable[None]]]:
        return {
            "conversation.item.create": self._item_create,
            "conversation.item.truncate": self._item_truncate,
            "conversation.item.delete": self._item_delete,
            "conversation.item.retrieve": self._item_retrieve,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
        }

    async def aclose(self) -> None:
        """Cancel the response and transcription tasks (the socket is gone) and wait for them."""
        tasks = [t for t in (self._task, *self._transcribing.values()) if t is not None and not t.done()]
        for task in tasks:
            task.cancel("connection closed")
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def _active(self) -> ResponseRunner | None:
        runner = self._runner
        return runner if runner is not None and not runner.finished.is_set() else None

    # -- audio turns ----------------------------------------------------------------------------------------

    async def speech_started(self, audio_ms: int, *, interrupt: bool) -> None:
        self._speech_item = new_id("item")
        self._speech_start_ms = audio_ms
        await self._conn.send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": audio_ms,
                "item_id": self._speech_item,
            }
        )
        if interrupt and self._active is not None:
            await self._cancel_active("turn_detected")  # barge-in (research §3.7)

    async def speech_stopped(
        self, audio_ms: int, *, create_response: bool, audio: Samples | None = None
    ) -> None:
        item_id = self._speech_item or new_id("item")
        self._speech_item = None
        await self._conn.send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": audio_ms, "item_id": item_id}
        )
        await self._commit(item_id, audio_ms - self._speech_start_ms, audio)
        if create_response:
            await self._start_response({}, None)

    async def commit_audio(self, duration_ms: int, *, audio: Samples | None = None) -> None:
        """A manual `input_audio_buffer.commit` of `duration_ms` of buffered audio (`audio`: its samples,
        kept only for a real recogniser)."""
        await self._commit(new_id("item"), duration_ms, audio)

    async def _commit(self, item_id: str, duration_ms: int, audio: Samples | None) -> None:
        self._audio_turns += 1
        self._audio_in_ms += duration_ms
        transcribe = bool(self._conn.session.get("input_audio_transcription"))
        recognise = transcribe and self._recognizer is not None and audio is not None
        transcript = "" if recognise else f"utterance {self._audio_turns} ({duration_ms / 1000:.2f} s)"
        item: JSON = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        previous = self._conn.conversation.add(item, user_text=transcript)
        await self._conn.send(
            {"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id}
        )
        await self._conn.send(
            {"type": "conversation.item.created", "previous_item_id": previous, "item": item}
        )
        # conversation.item.done is untyped in the SDK but sent by the service for gpt-realtime (trace 2).
        await self._conn.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
        if recognise and audio is not None:
            task = asyncio.create_task(
                self._transcribe(item, audio, self._conn.input_rate), name=f"voicelive-transcribe-{item_id}"
            )
            self._transcribing[item_id] = task
            task.add_done_callback(lambda _: self._transcribing.pop(item_id, None))
        elif transcribe:
            # The service sends these asynchronously (even mid-response); we send them now (deterministic).
            ids = {"item_id": item_id, "content_index": 0}
            await self._conn.send(
                {"type": "conversation.item.input_audio_transcription.delta", **ids, "delta": transcript}
            )
            await self._conn.send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    **ids,
                    "transcript": transcript,
                }
            )
            item["content"] = [{"type": "input_audio", "transcript": transcript}]

    async def _transcribe(self, item: JSON, audio: Samples, rate: int) -> None:
        """Recognise one user item off the event loop; its events go out whenever it finishes (research §3.8:
        transcription is asynchronous and may interleave with response events)."""
        assert self._recognizer is not None
        ids = {"item_id": item["id"], "content_index": 0}
        try:
            transcript = await self._recognizer.transcribe(audio, rate=rate)
        except Exception as exc:  # a recogniser failure is the item's, not the session's
            log.warning("voicelive: transcription of %s failed: %r", item["id"], exc)
            error = {
                "type": "server_error",
                "code": "transcription_failed",
                "message": str(exc),
                "param": None,
            }
            await self._conn.send(
                {"type": "conversation.item.input_audio_transcription.failed", **ids, "error": error}
            )
            return
        await self._conn.send(
            {"type": "conversation.item.input_audio_transcription.delta", **ids, "delta": transcript}
        )
        await self._conn.send(
            {"type": "conversation.item.input_audio_transcription.completed", **ids, "transcript": transcript}
        )
        item["content"] = [{"type": "input_audio", "transcript": transcript}]
        self._conn.conversation.set_user_text(item["id"], transcript)

    async def _plan_after_transcript(self, params: JSON) -> ResponsePlan:
        """The response plan once the newest user item's transcription (if still running) has finished."""
        task = self._transcribing.get(self._conn.conversation.last_user_item or "")
        if task is not None:
            await asyncio.wait({task})  # never cancels the transcription when the response is cancelled
        return self._plan(params)

    # -- conversation items ---------------------------------------------------------------------------------

    def _server_item(self, raw: JSON) -> JSON | None:
        kind = raw.get("type")
        item_id = raw.get("id") or new_id("item")  # the service keeps a client-chosen id (trace 3)
        base: JSON = {"id": item_id, "object": "realtime.item", "type": kind}
        if kind == "message" and raw.get("role") in _MESSAGE_ROLES and isinstance(raw.get("content"), list):
            content = [
                dict(p, type="text") if p.get("type") == "output_text" else dict(p) for p in raw["content"]
            ]
            return base | {"status": "completed", "role": raw["role"], "content": content}
        if kind == "function_call_output" and isinstance(raw.get("call_id"), str):
            return base | {"call_id": raw["call_id"], "output": str(raw.get("output", ""))}
        if kind == "function_call" and isinstance(raw.get("name"), str):
            return base | {
                "status": "completed",
                "name": raw["name"],
                "call_id": raw.get("call_id") or new_id("call"),
                "arguments": str(raw.get("arguments", "")),
            }
        return None

    async def _item_create(self, event: JSON) -> None:
        raw = event.get("item")
        item = self._server_item(raw) if isinstance(raw, dict) else None
        if item is None:
            await self._conn.error(
                "invalid_value", "Invalid conversation item.", param="item", client_event=event
            )
            return
        user_text = _content_text(item.get("content")) if item.get("role") == "user" else None
        previous = self._conn.conversation.add(item, user_text=user_text)
        await self._conn.send(
            {"type": "conversation.item.created", "previous_item_id": previous, "item": item}
        )

    async def _item_truncate(self, event: JSON) -> None:
        item = self._conn.conversation.get(str(event.get("item_id")))
        end_ms = event.get("audio_end_ms")
        if item is None or item.get("role") != "assistant" or "_audio_ms" not in item:
            await self._conn.error(
                "invalid_value",
                "Only assistant audio items can be truncated.",
                param="item_id",
                client_event=event,
            )
            return
        if not isinstance(end_ms, int) or not 0 <= end_ms <= item["_audio_ms"]:
            await self._conn.error(
                "invalid_value",
                "audio_end_ms is beyond the audio of the item.",
                param="audio_end_ms",
                client_event=event,
            )
            return
        item["_audio_ms"] = end_ms
        await self._conn.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item["id"],
                "content_index": event.get("content_index", 0),
                "audio_end_ms": end_ms,
            }
        )

    async def _item_delete(self, event: JSON) -> None:
        item_id = str(event.get("item_id"))
        if not self._conn.conversation.delete(item_id):
            await self._conn.error(
                "item_not_found", f"Item {item_id} not found.", param="item_id", client_event=event
            )
            return
        await self._conn.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def _item_retrieve(self, event: JSON) -> None:
        item = self._conn.conversation.get(str(event.get("item_id")))
        if item is None:
            await self._conn.error("item_not_found", "Item not found.", param="item_id", client_event=event)
            return
        await self._conn.send(
            {
                "type": "conversation.item.retrieved",
                "item": {k: v for k, v in item.items() if not k.startswith("_")},
            }
        )

    # -- responses ------------------------------------------------------------------------------------------

    async def _cancel_active(self, reason: str) -> None:
        runner = self._active
        if runner is not None and runner.cancel(reason):
            await runner.finished.wait()

    async def _response_cancel(self, event: JSON) -> None:
        runner = self._active
        wanted = event.get("response_id")
        if runner is None or (wanted is not None and wanted != runner.id):
            # OpenAI's code for this benign race (research §3.7, §6 #14).
            await self._conn.error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found.",
                client_event=event,
            )
            return
        await self._cancel_active("client_cancelled")

    async def _response_create(self, event: JSON) -> None:
        raw = event.get("response")
        params: JSON = raw if isinstance(raw, dict) else {}
        if self._active is not None:
            if params.get("cancel_previous", True) is False:
                await self._conn.error(
                    "conversation_already_has_active_response",
                    "Conversation already has an active response.",
                    client_event=event,
                )
                return
            # Voice Live's cancel_previous defaults to true (research §3.7, unverified): cancel, then start.
            await self._cancel_active("client_cancelled")
        await self._start_response(params, event)

    def _plan(self, params: JSON, *, decide: bool = True) -> ResponsePlan:
        """The response to `params`; `decide=False` leaves text and tool calls undecided (no side effects)."""
        session, conv = self._conn.session, self._conn.conversation
        outputs = conv.pending_tool_outputs()
        calls: list[Any] = []
        if not decide:
            text = ""
        elif outputs:
            text = " ".join(f"{conv.name_of_call(o['call_id'])} returned: {o['output']}" for o in outputs)
        else:
            if self._tool_turn != conv.user_turns:
                calls = choose_tools(
                    self._rule,
                    tools=params.get("tools") or session.get("tools") or [],
                    tool_choice=params.get("tool_choice", session.get("tool_choice", "auto")),
                    parallel_allowed=session.get("parallel_tool_calls") is not False,
                    user_turn=conv.user_turns,
                    user_text=conv.last_user_text,
                )
            text = (
                f"You said: {conv.last_user_text}"
                if conv.user_turns
                else "Hello from the devstack simulator."
            )
        if calls:
            self._tool_turn = conv.user_turns
        return ResponsePlan(
            modalities=list(params.get("modalities") or session.get("modalities") or ["audio"]),
            voice=params.get("voice", session.get("voice")),
            output_audio_format=str(
                params.get("output_audio_format") or session.get("output_audio_format") or "pcm16"
            ),
            text=None if calls else text,
            calls=calls,
            metadata=params.get("metadata"),
            input_text_tokens=len(str(session.get("instructions") or "")) // 4
            + len(conv.last_user_text) // 4,
            input_audio_tokens=self._audio_in_ms // 100,
            conversation_id=self._conversation_id,
        )

    async def _start_response(self, params: JSON, event: JSON | None) -> None:
        fault = self._conn.take_pending_error()
        if fault is not None:
            await self._conn.error(
                fault.code, "Injected fault.", error_type=fault.error_type, client_event=event
            )
            if fault.close is not None:
                await self._conn.close(fault.close)
            return
        content: Callable[[], Awaitable[ResponsePlan]] | None = None
        if self._conn.conversation.last_user_item in self._transcribing:
            # A real transcript is on its way: decide what to say (and which tools to call) once it is there.
            content = functools.partial(self._plan_after_transcript, params)
        runner = ResponseRunner(
            plan=self._plan(params, decide=content is None),
            send=self._conn.send,
            conversation=self._conn.conversation,
            timing=self._timing,
            zero_latency=self._zero,
            hold=self._hold,
            content=content,
        )
        self._runner = runner
        self._task = asyncio.create_task(runner.run(), name=f"voicelive-{runner.id}")
        if self._zero:
            await (
                runner.settled.wait()
            )  # zero-latency: the whole response goes out before the next client event
