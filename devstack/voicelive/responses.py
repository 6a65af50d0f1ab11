"""One generated response: the server event sequence of research §3.3/§3.5/§3.6, pacing, cancellation."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._ids import new_id
from .audio import reply_chunk_b64
from .conversation import Conversation
from .faults import HoldResponse
from .options import ResponseTiming
from .tools import arguments_for

__all__ = ["ResponsePlan", "ResponseRunner"]

JSON = dict[str, Any]
Send = Callable[[JSON], Awaitable[None]]


class _Cancelled(Exception):
    """Internal: unwinds the event script when the response is cancelled (never a task cancellation)."""


@dataclass(kw_only=True)
class ResponsePlan:
    """What the response will say: function calls (tool dicts) and/or a message text, and its settings."""

    modalities: list[str]
    voice: Any
    output_audio_format: str
    text: str | None
    calls: list[Mapping[str, Any]] = field(default_factory=list)
    metadata: Any = None
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    conversation_id: str = ""


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts)]


class ResponseRunner:
    """Streams one response. `timing=None` sends without any delay (zero-latency mode).

    `content`, if given, is awaited after `response.created` (and the first-output delay) for the final text,
    calls and text tokens of the plan; the rest of `plan` is used from the start. A real recogniser uses it
    to answer what the user said once the transcript is there. Cancelling the response stops the wait.

    `settled` is set when the response finished or reached a `HoldResponse` stall (a zero-latency reader waits
    for it); `finished` when `response.done` was sent. `cancel(reason)` ends it early with status cancelled.
    """

    def __init__(
        self,
        *,
        plan: ResponsePlan,
        send: Send,
        conversation: Conversation,
        timing: ResponseTiming,
        zero_latency: bool,
        hold: HoldResponse | None,
        content: Callable[[], Awaitable[ResponsePlan]] | None = None,
    ) -> None:
        self.id = new_id("resp")
        self._plan = plan
        self._content = content
        self._send = send
        self._conv = conversation
        self._timing = timing
        self._zero = zero_latency
        self._hold = hold
        self._output: list[JSON] = []
        self._open: JSON | None = None  # item being streamed, with "_part" flag while a content part is open
        self._text_sent = ""
        self._audio_ms = 0
        self._deltas = 0
        self._cancel_reason: str | None = None
        self._wake: asyncio.Future[None] | None = None
        self.settled = asyncio.Event()
        self.finished = asyncio.Event()

    @property
    def audio_ms(self) -> int:
        return self._audio_ms

    def cancel(self, reason: str) -> bool:
        """Request cancellation (`client_cancelled` / `turn_detected`); False if already finished."""
        if self.finished.is_set() or self._cancel_reason is not None:
            return False
        self._cancel_reason = reason
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        return True

    async def run(self) -> None:
        try:
            await self._send({"type": "response.created", "response": self._response("in_progress")})
            await self._first_output()
            for call in self._plan.calls:
                await self._function_call(call)
            if self._plan.text is not None:
                await self._message(self._plan.text)
            await self._maybe_hold(final=True)
            await self._send({"type": "response.done", "response": self._response("completed")})
        except _Cancelled:
            await self._finish_cancelled()
        finally:
            self.finished.set()
            self.settled.set()

    # -- pacing ---------------------------------------------------------------------------------------------

    async def _pause(self, delay_s: float) -> None:
        if self._cancel_reason is None and delay_s > 0 and not (self._zero and math.isfinite(delay_s)):
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            self._wake = fut
            handle = None if math.isinf(delay_s) else loop.call_later(delay_s, _wake_up, fut)
            try:
                await fut
            finally:
                if handle is not None:
                    handle.cancel()
                self._wake = None
        if self._cancel_reason is not None:
            raise _Cancelled

    async def _first_output(self) -> None:
        """The first-output delay, running at the same time as the wait for `content` (if any)."""
        if self._content is None:
            await self._pause(self._timing.first_output_delay_ms / 1000.0)
            return
        content = asyncio.ensure_future(self._content())
        try:
            await self._pause(self._timing.first_output_delay_ms / 1000.0)
            final = await self._cancellable(content)
        finally:
            if not content.done():
                content.cancel()
                await asyncio.gather(content, return_exceptions=True)
        self._plan = dataclasses.replace(
            self._plan, text=final.text, calls=final.calls, input_text_tokens=final.input_text_tokens
        )

    async def _cancellable(self, task: asyncio.Future[ResponsePlan]) -> ResponsePlan:
        """Await `task` unless the response is cancelled first (then `task` is cancelled)."""
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wake = wake
        waiters: set[asyncio.Future[Any]] = {task, wake}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._wake = None
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._cancel_reason is not None:
            raise _Cancelled
        return task.result()

    async def _maybe_hold(self, *, final: bool) -> None:
        hold = self._hold
        if hold is None or (hold.after_audio_deltas is None) != final:
            return
        if not final and hold.after_audio_deltas != self._deltas:
            return
        self.settled.set()  # a zero-latency reader must go on reading (e.g. to receive response.cancel)
        await self._pause(math.inf if hold.delay_ms is None else hold.delay_ms / 1000.0)

    async def _delta_sent(self) -> None:
        self._deltas += 1
        await self._maybe_hold(final=False)

    # -- output items ---------------------------------------------------------------------------------------

    def _ids(self, item: JSON) -> JSON:
        return {"response_id": self.id, "item_id": item["id"], "output_index": len(self._output)}

    async def _add_item(self, item: JSON) -> None:
        self._open = item
        await self._send(
            {
                "type": "response.output_item.added",
                "response_id": self.id,
                "output_index": len(self._output),
                "item": _public(item),
            }
        )
        previous = self._conv.add(item)
        await self._send(
            {"type": "conversation.item.created", "previous_item_id": previous, "item": _public(item)}
        )

    async def _close_item(self, status: str) -> None:
        item = self._open
        assert item is not None
        item["status"] = status
        await self._send(
            {
                "type": "response.output_item.done",
                "response_id": self.id,
                "output_index": len(self._output),
                "item": _public(item),
            }
        )
        self._output.append(item)
        self._open = None

    async def _function_call(self, tool: Mapping[str, Any]) -> None:
        call_id = new_id("call", 16)
        item: JSON = {
            "id": new_id("item"),
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": tool["name"],
            "call_id": call_id,
            "arguments": "",
        }
        await self._add_item(item)
        arguments = json.dumps(arguments_for(tool))
        ids = self._ids(item) | {"call_id": call_id}
        for start in range(0, len(arguments), 8):
            await self._send(
                {
                    "type": "response.function_call_arguments.delta",
                    **ids,
                    "delta": arguments[start : start + 8],
                }
            )
            item["arguments"] += arguments[start : start + 8]
        await self._send(
            {
                "type": "response.function_call_arguments.done",
                **ids,
                "name": tool["name"],
                "arguments": arguments,
            }
        )
        await self._close_item("completed")

    async def _message(self, text: str) -> None:
        item: JSON = {
            "id": new_id("item"),
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        await self._add_item(item)
        audio = "audio" in self._plan.modalities
        item["_part"] = True
        part: JSON = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        await self._send(
            {"type": "response.content_part.added", **self._ids(item), "content_index": 0, "part": part}
        )
        if audio:
            await self._audio_stream(item, _words(text))
        else:
            await self._text_stream(item, _words(text))
        await self._close_part(item)
        await self._close_item("completed")

    async def _text_stream(self, item: JSON, words: list[str]) -> None:
        for word in words:
            await self._pause(self._timing.chunk_delay_s)
            self._text_sent += word
            await self._send(
                {"type": "response.text.delta", **self._ids(item), "content_index": 0, "delta": word}
            )
            await self._delta_sent()

    async def _audio_stream(self, item: JSON, words: list[str]) -> None:
        chunk_ms = self._timing.audio_chunk_ms
        n_chunks = max(1, self._timing.reply_audio_ms // chunk_ms)
        chunk = reply_chunk_b64(self._plan.output_audio_format, chunk_ms)
        ids = self._ids(item) | {"content_index": 0}
        said = 0
        for i in range(n_chunks):
            await self._pause(self._timing.chunk_delay_s)
            # The transcript runs slightly ahead of the audio, as in the recorded traffic.
            upto = min(len(words), math.ceil((i + 2) * len(words) / n_chunks))
            for word in words[said:upto]:
                self._text_sent += word
                await self._send({"type": "response.audio_transcript.delta", **ids, "delta": word})
            said = max(said, upto)
            await self._send({"type": "response.audio.delta", **ids, "delta": chunk})
            self._audio_ms += chunk_ms
            await self._delta_sent()

    async def _close_part(self, item: JSON) -> None:
        item.pop("_part", None)
        ids = self._ids(item) | {"content_index": 0}
        if "audio" in self._plan.modalities:
            part: JSON = {"type": "audio", "transcript": self._text_sent}
            await self._send({"type": "response.audio.done", **ids})
            await self._send({"type": "response.audio_transcript.done", **ids, "transcript": self._text_sent})
        else:
            part = {"type": "text", "text": self._text_sent}
            await self._send({"type": "response.text.done", **ids, "text": self._text_sent})
        await self._send({"type": "response.content_part.done", **ids, "part": part})
        item["content"] = [part]
        item["_audio_ms"] = self._audio_ms

    async def _finish_cancelled(self) -> None:
        # Close whatever is open with status incomplete, then response.done cancelled (research §3.7).
        if self._open is not None:
            if self._open.get("_part"):
                await self._close_part(self._open)
            await self._close_item("incomplete")
        details = {"type": "cancelled", "reason": self._cancel_reason}
        await self._send({"type": "response.done", "response": self._response("cancelled", details)})

    # -- response object ------------------------------------------------------------------------------------

    def _response(self, status: str, details: JSON | None = None) -> JSON:
        done = status != "in_progress"
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": details,
            "output": [_public(i) for i in self._output] if done else [],
            "usage": self._usage() if done else None,
            "conversation_id": self._plan.conversation_id,
            "modalities": self._plan.modalities,
            "voice": self._plan.voice,
            "output_audio_format": self._plan.output_audio_format,
            "temperature": None,
            "max_output_tokens": "inf",
            "metadata": self._plan.metadata,
        }

    def _usage(self) -> JSON:
        # Realtime pricing notes: ~10 audio tokens per second of input, ~20 per second of output.
        text_out = math.ceil(len(self._text_sent) / 4) + sum(
            len(str(i.get("arguments", ""))) // 4 for i in self._output
        )
        audio_out = self._audio_ms * 20 // 1000
        text_in, audio_in = self._plan.input_text_tokens, self._plan.input_audio_tokens
        return {
            "total_tokens": text_in + audio_in + text_out + audio_out,
            "input_tokens": text_in + audio_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "cached_tokens": 0,
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {
                "text_tokens": text_out,
                "audio_tokens": audio_out,
                "reasoning_tokens": 0,
            },
        }


def _wake_up(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _public(item: JSON) -> JSON:
    """The item as sent on the wire (without the simulator's private `_` keys)."""
    return {k: v for k, v in item.items() if not k.startswith("_")}
