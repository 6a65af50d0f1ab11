"""Session rollover: when a long input moves to a new Voice Live session, and what the new one is told.

The service caps a session at 60 minutes (research/voicelive.md §4), so `session.py` runs a long input as
a sequence of sessions on one input clock. `RolloverPolicy` watches the streamed input and says when to
cut: once the current session is `max_session_s` old, at the next silence boundary (no speech for
`silence_ms`, and the server has no turn open); if none comes within `grace_s`, cut anyway ("forced").
`history` is what a new session is re-seeded with: the job's own conversation plus what was said so far,
as text, newest kept when it must be bounded. `open_leg` opens one session's connection (a `Leg`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Literal

from worker.errors import Transient
from worker.jobs import ConversationItem, Job
from worker.metrics import instruments
from worker.telemetry import Attr, SpanName, tracer
from worker.voice.ports import VoiceConnection, VoiceConnector
from worker.voice.timeline import SessionSegment, Timeline
from worker.voice.turns import EnergySegmenter

__all__ = ["Cut", "Leg", "RolloverPolicy", "boundary_silence_ms", "history", "open_leg"]

#: "boundary": at a silence; "forced": no silence came within the grace window.
Cut = Literal["boundary", "forced"]

#: Silence beyond the turn detector's own end-of-turn silence before we call it a boundary: by then the
#: server has all the audio it needs to close the last turn by itself.
BOUNDARY_MARGIN_MS = 200.0
#: A trimmed history item shorter than this is dropped rather than kept as a meaningless tail.
_MIN_TRIMMED_CHARS = 40


def boundary_silence_ms(job: Job, *, manual_silence_ms: float) -> float:
    """How much silence makes a rollover boundary for `job`: longer than whichever detector ends its
    turns (the server's `silence_duration_ms`, default 500, or our manual segmenter's), plus a margin."""
    detection = job.session.turn_detection
    if detection is None:
        return manual_silence_ms + BOUNDARY_MARGIN_MS
    return float(detection.silence_duration_ms or 500) + BOUNDARY_MARGIN_MS


class RolloverPolicy:
    """Fed every input frame (pcm16 mono) in stream order; `push` says when to cut the session.

    Args:
        max_session_s: a session this old starts looking for a boundary.
        grace_s: after `max_session_s + grace_s` without a boundary, cut anyway.
        sample_rate: of the pcm16 frames.
        silence_ms: no speech for this long makes a boundary (see `boundary_silence_ms`).
        threshold_dbfs: a frame above this RMS level is speech (same detector as manual turns).

    A session's age is the caller's business (`session.py` uses the larger of its wall time and the
    input audio it carried, so fast pacing rolls over by audio and slow pacing by the service's clock).
    """

    def __init__(
        self,
        *,
        max_session_s: float,
        grace_s: float,
        sample_rate: int,
        silence_ms: float,
        threshold_dbfs: float = -40.0,
    ) -> None:
        if max_session_s <= 0 or grace_s < 0:
            raise ValueError(f"max_session_s must be > 0 and grace_s >= 0, got {max_session_s}, {grace_s}")
        self.max_session_s = max_session_s
        self.grace_s = grace_s
        self.silence_ms = silence_ms
        self._warmup_s = silence_ms / 1000.0 + 1.0
        # min_speech_ms=0: any loud frame opens an "utterance", which closes after `silence_ms` of quiet,
        # so `in_speech` is false exactly when the last `silence_ms` were silent.
        self._speech = EnergySegmenter(
            sample_rate=sample_rate, threshold_dbfs=threshold_dbfs, min_speech_ms=0.0, silence_ms=silence_ms
        )

    def push(self, pcm16: bytes, *, age_s: float, server_idle: bool) -> Cut | None:
        """Account one frame; `age_s` is the session's age after it, `server_idle` whether the server
        has no user turn open. Returns the cut to make now, or None."""
        if age_s < self.max_session_s - self._warmup_s:
            return None  # young session: skip the per-frame RMS, only the last `silence_ms` matter
        self._speech.push(pcm16)
        if age_s < self.max_session_s:
            return None
        if server_idle and not self._speech.in_speech:
            return "boundary"
        if age_s >= self.max_session_s + self.grace_s:
            return "forced"
        return None


def history(job: Job, timeline: Timeline, *, max_chars: int) -> list[ConversationItem]:
    """The conversation a rolled-over session is re-seeded with: the job's seed items, then user and
    assistant transcripts in input-clock order as text items. Only the newest ones that fit in
    `max_chars` characters are kept (the oldest of them trimmed at its start when it alone is too long);
    the job's seed items are always kept and not counted."""
    said: list[tuple[float, int, ConversationItem]] = []
    at = 0.0
    for turn in timeline.user_turns:
        at = turn.start_ms if turn.start_ms is not None else (turn.end_ms if turn.end_ms is not None else at)
        if turn.transcript and turn.transcript.strip():
            said.append((at, 0, ConversationItem(role="user", text=turn.transcript.strip())))
    for resp in timeline.responses:
        text = (resp.transcript or resp.text).strip()
        if text:
            where = resp.start_ms if resp.start_ms is not None else (resp.done_ms or 0.0)
            said.append((where, 1, ConversationItem(role="assistant", text=text)))
    said.sort(key=lambda entry: (entry[0], entry[1]))
    kept: list[ConversationItem] = []
    budget = max_chars
    for _, _, item in reversed(said):
        if len(item.text) > budget:
            if budget >= _MIN_TRIMMED_CHARS:
                kept.append(ConversationItem(role=item.role, text="…" + item.text[-(budget - 1) :]))
            break
        kept.append(item)
        budget -= len(item.text)
    return [*job.conversation, *reversed(kept)]


@dataclass(eq=False)
class Leg:
    """One session's connection. `segment` is its record in the timeline; `configured` is set on its
    `session.updated`; `receiver` is the task reading its events; `closing` tells that task's end from
    a dropped socket."""

    segment: SessionSegment
    conn: VoiceConnection
    stack: AsyncExitStack
    connected_at: float
    configured: asyncio.Event = field(default_factory=asyncio.Event)
    receiver: asyncio.Task[None] | None = None
    closing: bool = False

    async def close(self) -> None:
        """Stop reading before the socket closes (so its end is not a "drop"), then close it."""
        self.closing = True
        if self.receiver is not None:
            self.receiver.cancel()
            await asyncio.wait({self.receiver})
        await self.stack.aclose()


async def open_leg(
    connector: VoiceConnector,
    *,
    model: str,
    segment: SessionSegment,
    timeout_s: float,
    clock: Callable[[], float],
    owner: AsyncExitStack,
) -> Leg:
    """Connect under our own timeout, in a `voicelive connect` span. The connection closes when the
    leg is closed or, at the latest, when `owner` unwinds. Sets `segment.connect_ms`."""
    stack = AsyncExitStack()
    owner.push_async_callback(stack.aclose)
    started = clock()
    with tracer().start_as_current_span(SpanName.VOICELIVE_CONNECT, attributes={Attr.MODEL: model}):
        try:
            async with asyncio.timeout(timeout_s):
                conn = await stack.enter_async_context(connector.connect(model=model))
        except TimeoutError:
            instruments().connect_errors.add(1, {"kind": "Timeout"})
            raise Transient(f"Voice Live connect timed out after {timeout_s:g} s") from None
        except Exception as exc:
            instruments().connect_errors.add(1, {"kind": type(exc).__name__})
            raise
    connected_at = clock()
    segment.connect_ms = (connected_at - started) * 1000.0
    instruments().sessions_active.add(1)
    stack.callback(instruments().sessions_active.add, -1)
    return Leg(segment=segment, conn=conn, stack=stack, connected_at=connected_at)
