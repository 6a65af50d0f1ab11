"""Draining a session: what it still waits for, and the wait until it has answered everything and gone quiet.

A session is drained when no response is requested or in progress, no tool call is running, every
transcription is complete, no VAD user turn is open, and `window_s` passed without a server event —
bounded by `timeout_s` (a timeout is a warning, not a failure).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from worker.voice.responses import ResponseRequests
from worker.voice.toolloop import ToolLoop
from worker.voice.tracker import Tracker

__all__ = ["drain", "pending_work"]


def pending_work(
    tracker: Tracker, *, responses: ResponseRequests, tools: ToolLoop | None, open_turns: bool = False
) -> str | None:
    """Why the session is not done yet; `open_turns`: a user turn still open does not count (a
    forced cut ends the session mid-speech, so that turn cannot close)."""
    if responses.pending:
        return "a response was requested"
    if tracker.active_responses:
        return "a response is in progress"
    if tools is not None and tools.busy:
        return "a tool call is running"
    if tracker.pending_transcriptions():
        return "a transcription is pending"
    if not open_turns and tracker.open_vad_turns():
        return "a user turn is still open"
    return None


async def drain(
    what: str,
    *,
    busy: Callable[[], str | None],
    changed: asyncio.Event,
    last_event_at: Callable[[], float],
    clock: Callable[[], float],
    window_s: float,
    timeout_s: float,
    warn: Callable[[str], None],
) -> bool:
    """Wait until `busy()` is None and `window_s` passed since `last_event_at()`; re-check whenever
    `changed` is set. False (after warning "`what`: stopped waiting ...") if `timeout_s` ran out."""
    deadline = clock() + timeout_s
    while True:
        changed.clear()
        now = clock()
        reason = busy()
        quiet_s = now - last_event_at()
        if reason is None and quiet_s >= window_s:
            return True
        if now >= deadline:
            warn(f"{what}: stopped waiting after {timeout_s:g} s ({reason or 'events kept arriving'})")
            return False
        wait_s = deadline - now if reason else min(deadline - now, window_s - quiet_s)
        try:
            async with asyncio.timeout(max(wait_s, 0.0)):
                await changed.wait()
        except TimeoutError:
            pass
