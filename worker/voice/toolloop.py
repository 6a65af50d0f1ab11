"""The tool loop: run each function call as it arrives, answer a response's calls together once it is done.

`response.function_call_arguments.done` → `start` runs the tool (the runner applies its timeout) in a
`tool <name>` span, as a task of the session's TaskGroup → that response's `response.done` →
`after_response` waits for its calls, records them in the timeline and, if the response completed,
sends every output and asks for one follow-up response (through the session's request queue, so
`response.create` is never sent while a response is active).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Status, StatusCode

from worker.metrics import instruments
from worker.telemetry import Attr, SpanName, content_enabled, tracer
from worker.voice.timeline import ToolCallRecord
from worker.voice.tools import ToolOutcome, ToolRunner
from worker.voice.tracker import Tracker, Trigger
from worker.voice.wire import function_output_event

__all__ = ["ToolLoop"]


@dataclass
class _ToolCall:
    call_id: str
    name: str
    arguments: str
    start_ms: float
    task: asyncio.Task[ToolOutcome]


class ToolLoop:
    """The function calls of one session run (all its legs), from arguments to the follow-up response.

    Args:
        runner: runs one call (fixtures, timeout).
        tracker: the session's tracker; records go to its timeline, warnings through it.
        tasks: the session's TaskGroup, which owns every tool run and follow-up.
        send: sends a client event on the current leg.
        request_response: queues a response request (trigger "tool", answering a user item).
        changed: set whenever the loop's state changes (the drain waits on it).
        input_ms: arrival time → input clock.
        info: the session's log function (one line per transition, with the job id).
    """

    def __init__(
        self,
        runner: ToolRunner,
        tracker: Tracker,
        *,
        tasks: asyncio.TaskGroup,
        send: Callable[[Mapping[str, Any]], Awaitable[None]],
        request_response: Callable[[Trigger, str | None], Awaitable[None]],
        changed: asyncio.Event,
        input_ms: Callable[[float], float],
        info: Callable[..., None],
    ) -> None:
        self._runner = runner
        self._tracker = tracker
        self._tasks = tasks
        self._send = send
        self._request_response = request_response
        self._changed = changed
        self._input_ms = input_ms
        self._info = info
        self._calls: dict[str, list[_ToolCall]] = {}
        self._completions: set[asyncio.Task[None]] = set()  # tool results on their way back

    @property
    def busy(self) -> bool:
        """A tool call is running, or its results are on their way back."""
        return bool(self._completions or self._calls)

    def start(self, event: Mapping[str, Any], now: float) -> None:
        """`response.function_call_arguments.done`: run the call now."""
        name, arguments = str(event.get("name") or ""), str(event.get("arguments") or "")
        call_id, rid = str(event.get("call_id") or ""), str(event.get("response_id") or "")
        task = self._tasks.create_task(
            self._run_tool(name, arguments, call_id, rid), name=f"tool-{name}-{call_id}"
        )
        self._calls.setdefault(rid, []).append(_ToolCall(call_id, name, arguments, self._input_ms(now), task))
        self._info("tool call %s (%s) started", name, call_id)

    def after_response(self, event: Mapping[str, Any]) -> None:
        """`response.done`: answer that response's calls once they have all finished."""
        body = event.get("response") or {}
        calls = self._calls.pop(str(body.get("id") or ""), None)
        if calls:
            task = self._tasks.create_task(
                self._complete_tools(str(body.get("id")), str(body.get("status")), calls)
            )
            self._completions.add(task)
            task.add_done_callback(self._completion_done)

    def cancel(self) -> None:
        """Tool runs (and their follow-ups) still going after a drain timeout cannot be answered any more."""
        for calls in self._calls.values():
            for call in calls:
                call.task.cancel()
        self._calls.clear()
        for task in self._completions:
            task.cancel()

    async def _run_tool(self, name: str, arguments: str, call_id: str, response_id: str) -> ToolOutcome:
        """One `tool <name>` span per call; the arguments go on it only with TRACE_CONTENT=true."""
        attributes: dict[str, str] = {
            Attr.TOOL_NAME: name, Attr.TOOL_CALL_ID: call_id, Attr.RESPONSE_ID: response_id
        }  # fmt: skip
        if content_enabled():
            attributes[Attr.TOOL_ARGUMENTS] = arguments
        with tracer().start_as_current_span(SpanName.TOOL_PREFIX + name, attributes=attributes) as span:
            outcome = await self._runner.run(name, arguments)
            span.set_attribute(Attr.TOOL_SOURCE, outcome.source)
            span.set_attribute(Attr.TOOL_DURATION_MS, round(outcome.duration_ms, 1))
            span.set_attribute(Attr.TOOL_ERROR, outcome.error is not None)
            if outcome.error is not None:
                span.set_status(Status(StatusCode.ERROR, "tool error"))
            instruments().tool_duration.record(
                outcome.duration_ms, {"tool": name, "outcome": "error" if outcome.error else "ok"}
            )
            return outcome

    async def _complete_tools(self, response_id: str, status: str, calls: list[_ToolCall]) -> None:
        try:
            outcomes = [await call.task for call in calls]
            for call, outcome in zip(calls, outcomes, strict=True):
                self._tracker.timeline.tool_calls.append(
                    ToolCallRecord(
                        call_id=call.call_id,
                        name=call.name,
                        response_id=response_id,
                        arguments=call.arguments,
                        result=outcome.result,
                        error=outcome.error,
                        source=outcome.source,
                        start_ms=call.start_ms,
                        duration_ms=outcome.duration_ms,
                    )
                )
                self._info(
                    "tool call %s (%s) %s", call.name, call.call_id, "failed" if outcome.error else "ok"
                )
            if status != "completed":
                self._tracker.warn(f"response {response_id} ended {status}; its tool results were not sent")
                return
            for call, outcome in zip(calls, outcomes, strict=True):
                await self._send(function_output_event(call.call_id, outcome.output()))
            timeline = self._tracker.timeline
            user_item = timeline.responses[-1].user_item_id if timeline.responses else None
            await self._request_response("tool", user_item)
        finally:
            self._changed.set()

    def _completion_done(self, task: asyncio.Task[None]) -> None:
        # A done callback, not a `finally`: it also runs for a task cancelled before it ever started.
        self._completions.discard(task)
        self._changed.set()
