"""One Voice Live session for one job: configure, stream at pace, answer tools, drain, return the timeline.

Shape (DESIGN.md §8): connect under our own timeout → `session.update`, wait for `session.updated` →
seed the conversation → a sender (the `WirePacer`) and a receiver (events → `Tracker`) run in one
TaskGroup, so the first failure cancels the rest → after the input (and its trailing silence) is sent,
drain (drain.py: nothing requested, in progress, running or pending, and `drain_window_s` without
events — bounded by `job.streaming.response_timeout_s`; a timeout is a warning, not a failure).
Function calls run in the tool loop (toolloop.py); `response.create` is only ever sent when no
response is active (responses.py). Options, result and error ranking: values.py.

Long inputs run as a chain of sessions (rollover.py): when the current one is `max_session_s` old, at
the next silence boundary the sender stops, drains that session as at the end of input (no trailing
silence), closes it, opens the next through the same connector, sends the same `session.update`,
re-seeds the conversation so far, and goes on streaming on the same pacer schedule (frames that fell due
meanwhile go out at once). Server VAD times of a later session are shifted by where it started on the
input clock, so the timeline stays in input-audio time; `timeline.sessions` records each session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import IO, Any, Literal

from worker.audio.convert import g711_to_pcm16
from worker.audio.formats import AudioFormat
from worker.errors import Transient
from worker.jobs import Job
from worker.metrics import instruments
from worker.pacing import PacingStats, WirePacer
from worker.telemetry import Attr, SpanName, tracer
from worker.voice.drain import drain, pending_work
from worker.voice.ports import VoiceConnector
from worker.voice.responses import ResponseRequests
from worker.voice.rollover import Cut, Leg, RolloverPolicy, boundary_silence_ms, history, open_leg
from worker.voice.timeline import SessionSegment, Timeline
from worker.voice.toolloop import ToolLoop
from worker.voice.tools import Tool, ToolRunner
from worker.voice.tracker import EventLog, Tracker
from worker.voice.turns import EnergySegmenter, Utterance
from worker.voice.values import SessionOptions, SessionResult, describe, most_relevant
from worker.voice.wire import (
    HISTORY_EVENT_PREFIX,
    classify_error_event,
    seed_events,
    session_update_event,
)

__all__ = ["SessionOptions", "SessionResult", "run_session"]

_log = logging.getLogger(__name__)
_DEFAULT_OPTIONS = SessionOptions()


async def run_session(
    job: Job,
    frames: AsyncIterator[bytes],
    *,
    connector: VoiceConnector,
    tools: Sequence[Tool],
    audio_format: AudioFormat,
    pacer: WirePacer,
    workdir: Path,
    model_default: str,
    options: SessionOptions = _DEFAULT_OPTIONS,
    on_timeline: Callable[[Timeline], None] | None = None,
) -> SessionResult:
    """Run `job` through Voice Live (one session, or a chain of them for long inputs), streaming
    `frames` (each `pacer.frame_ms` long, in `audio_format`). Raises only `WorkerError`s (`Transient`,
    `Throttled`, `VoiceLiveRejected`, or whatever `frames` raises, e.g. `UnsupportedAudio`).
    `on_timeline` receives the live timeline once, before streaming, for progress displays (read it,
    never write it)."""
    session = _Session(
        job,
        connector=connector,
        tools=tools,
        audio_format=audio_format,
        pacer=pacer,
        workdir=workdir,
        options=options,
    )
    if on_timeline is not None:
        on_timeline(session.tracker.timeline)
    model = job.session.model or model_default
    with tracer().start_as_current_span(
        SpanName.VOICELIVE_SESSION, attributes={Attr.JOB_ID: job.job_id, Attr.MODEL: model}
    ) as span:
        try:
            result = await session.run(frames, model=model)
        except BaseExceptionGroup as group:
            raise most_relevant(group) from None
        finally:
            instruments().audio_streamed.add(pacer.audio_ms_sent / 1000.0)
        describe(span, result)
        return result


class _Session:
    def __init__(
        self,
        job: Job,
        *,
        connector: VoiceConnector,
        tools: Sequence[Tool],
        audio_format: AudioFormat,
        pacer: WirePacer,
        workdir: Path,
        options: SessionOptions,
    ) -> None:
        self.job = job
        self.connector = connector
        self.tools = tools
        self.fmt = audio_format
        self.pacer = pacer
        self.workdir = workdir
        self.opt = options
        self.clock = options.clock
        self.manual = job.session.turn_detection is None
        self.tracker = Tracker(
            workdir=workdir,
            input_ms=self._input_ms,
            transcription=job.session.input_audio_transcription is not None,
            job_id=job.job_id,
        )
        self.runner = ToolRunner(
            tools=tools,
            fixtures=job.tool_fixtures,
            default_timeout_s=options.tool_timeout_s,
            clock=self.clock,
        )
        self.segmenter = (
            EnergySegmenter(
                sample_rate=audio_format.sample_rate,
                threshold_dbfs=options.manual_threshold_dbfs,
                silence_ms=options.manual_silence_ms,
            )
            if self.manual and options.manual_segmentation == "vad"
            else None
        )
        self.rollover = RolloverPolicy(
            max_session_s=options.max_session_s,
            grace_s=options.rollover_grace_s,
            sample_rate=audio_format.sample_rate,
            silence_ms=boundary_silence_ms(job, manual_silence_ms=options.manual_silence_ms),
            threshold_dbfs=options.manual_threshold_dbfs,
        )
        self.legs: list[Leg] = []
        self._leg: Leg | None = None
        self._model = ""
        self._stack: AsyncExitStack | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._events: EventLog | None = None
        self._input: IO[bytes] | None = None
        self._changed = asyncio.Event()
        self._streamed_ms = 0.0
        self._input_done = False  # the last input frame was sent; only trailing silence follows
        self._cut: Cut | None = None  # decided at one input frame, made before the next one
        self._last_event_at = self.clock()
        self._t_end: float | None = None
        self.responses = ResponseRequests(self.tracker, send=self._send)
        self._tools: ToolLoop | None = None  # made with the TaskGroup that owns its tasks

    def _info(self, msg: str, *args: Any) -> None:
        _log.info("job %s: " + msg, self.job.job_id, *args)

    # --- the script ------------------------------------------------------------------------------------

    async def run(self, frames: AsyncIterator[bytes], *, model: str) -> SessionResult:
        self._model = model
        async with AsyncExitStack() as stack:
            self._stack = stack
            if self.job.outputs.events:
                self._events = EventLog(self.workdir / "events.jsonl.gz")
                stack.callback(self._events.close)
            self._input = stack.enter_context((self.workdir / "input.pcm").open("wb"))
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._tools = ToolLoop(
                    self.runner, self.tracker, tasks=tg, send=self._send,
                    request_response=self.responses.request, changed=self._changed,
                    input_ms=self._input_ms, info=self._info,
                )  # fmt: skip
                await self._open_leg(start_ms=0.0, reason="start")
                stats = await self._stream(frames)
                drained = await self._drain("end of input")
                # Closing script: stop reading before the socket closes (so its end is not a "drop"),
                # and cancel tool runs still going after a drain timeout; the TaskGroup awaits them.
                assert self._leg is not None and self._leg.receiver is not None
                self._leg.segment.end_ms = self._streamed_ms
                self._leg.closing = True
                self._leg.receiver.cancel()
                self._tools.cancel()
        timeline = self.tracker.finish()
        first = self.legs[0].segment
        session = self.tracker.session
        voice = session.get("voice")
        self._info(
            "session ended: %d user turns, %d responses, %d tool calls, %d session(s)%s",
            len(timeline.user_turns),
            len(timeline.responses),
            len(timeline.tool_calls),
            len(self.legs),
            "" if drained else " (drain timed out)",
        )
        return SessionResult(
            timeline=timeline,
            session_id=first.session_id,
            model=session.get("model"),
            voice=voice.get("name") if isinstance(voice, Mapping) else voice,
            pacing=stats,
            input_pcm=self.workdir / "input.pcm",
            input_sample_rate=self.fmt.sample_rate,
            events_file=self._events.path if self._events else None,
            connect_ms=first.connect_ms or 0.0,
            drained=drained,
        )

    async def _stream(self, frames: AsyncIterator[bytes]) -> PacingStats:
        silence = self.fmt.silence(self.fmt.frame_bytes(self.pacer.frame_ms))
        stats = await self.pacer.run(self._until_done(frames), self._send_frame, silence_frame=silence)
        self._t_end = self.clock()
        self._info("input streamed: %.0f ms in %.2f s (rtf %.2f)", stats.audio_ms, stats.wall_s, stats.rtf)
        if self.segmenter is not None and (utterance := self.segmenter.flush()) is not None:
            await self._commit(utterance)
        elif self.manual and self.segmenter is None and stats.input_ms > self._leg_start_ms:
            await self._commit(Utterance(self._leg_start_ms, stats.input_ms))
        return stats

    async def _until_done(self, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for frame in frames:
            yield frame
        self._input_done = True

    async def _send_frame(self, frame: bytes) -> None:
        # A cut is made before the next *input* frame, so an input that ends right at a boundary does
        # not open a session just for its trailing silence.
        if self._cut is not None and not self._input_done:
            cut, self._cut = self._cut, None
            await self._roll_over(cut)
        assert self._leg is not None
        assert self._input is not None
        await self._leg.conn.send_audio(frame)
        pcm = frame if self.fmt.encoding == "pcm16" else g711_to_pcm16(frame, self.fmt.encoding)
        self._input.write(pcm)
        self._streamed_ms += self.pacer.frame_ms
        if self.segmenter is not None and (utterance := self.segmenter.push(pcm)) is not None:
            await self._commit(utterance)
        if not self._input_done:
            idle = self.manual or not self.tracker.open_vad_turns()
            self._cut = self.rollover.push(pcm, age_s=self._leg_age_s(), server_idle=idle)

    async def _commit(self, utterance: Utterance, *, respond: bool = True) -> None:
        await self._send({"type": "input_audio_buffer.commit"})
        turn = self.tracker.manual_turn(utterance.start_ms, utterance.end_ms, self.clock())
        self._info(
            "manual turn %d committed (%.0f-%.0f ms)", turn.index, utterance.start_ms, utterance.end_ms
        )
        if respond:
            await self.responses.request("manual")

    async def _send(self, event: Mapping[str, Any]) -> None:
        assert self._leg is not None
        if self._events is not None:
            self._events.write("client", self._input_ms(self.clock()), event)
        await self._leg.conn.send(event)

    # --- sessions: open one, and roll over to the next ---------------------------------------------------

    @property
    def _leg_start_ms(self) -> float:
        return self._leg.segment.start_ms if self._leg is not None else 0.0

    def _leg_age_s(self) -> float:
        assert self._leg is not None
        carried_s = (self._streamed_ms - self._leg.segment.start_ms) / 1000.0
        return max(self.clock() - self._leg.connected_at, carried_s)

    async def _open_leg(self, *, start_ms: float, reason: Literal["start", "rollover", "forced"]) -> None:
        """Connect, configure (`session.update`, wait for `session.updated`) and seed one session: the
        job's conversation for the first, the conversation so far for the next ones."""
        assert self._tg is not None and self._stack is not None
        segment = SessionSegment(index=len(self.legs) + 1, start_ms=start_ms, reason=reason)
        leg = await open_leg(
            self.connector, model=self._model, segment=segment, timeout_s=self.opt.connect_timeout_s,
            clock=self.clock, owner=self._stack,
        )  # fmt: skip
        self._info("connected to Voice Live (model %s) in %.0f ms", self._model, segment.connect_ms or 0.0)
        self.legs.append(leg)
        self.tracker.timeline.sessions.append(segment)
        self.tracker.audio_offset_ms = start_ms
        self._leg = leg
        leg.receiver = self._tg.create_task(
            self._receive(leg), name=f"voicelive-receive-{self.job.job_id}-{segment.index}"
        )
        await self._send(session_update_event(self.job.session, audio_format=self.fmt, tools=self.tools))
        try:
            async with asyncio.timeout(self.opt.session_update_timeout_s):
                await leg.configured.wait()
        except TimeoutError:
            raise Transient(
                f"Voice Live sent no session.updated within {self.opt.session_update_timeout_s:g} s"
            ) from None
        self._info("session %d updated (%s)", segment.index, segment.session_id)
        if segment.index == 1:
            events = seed_events(self.job.conversation)
        else:
            items = history(self.job, self.tracker.timeline, max_chars=self.opt.reseed_max_chars)
            events = seed_events(items, id_prefix=HISTORY_EVENT_PREFIX)
        for event in events:
            await self._send(event)
        await self.responses.pump()  # a response requested but never created in the previous session

    async def _roll_over(self, cut: Cut) -> None:
        """End the current session at this frame and continue in a new one (called by the sender, so
        the pacer waits; frames that fall due meanwhile go out at once afterwards)."""
        old = self._leg
        assert old is not None
        cut_ms = self._streamed_ms
        if cut == "forced":
            self.tracker.warn(
                f"session {old.segment.index}: no {self.rollover.silence_ms:.0f} ms silence within "
                f"{self.opt.rollover_grace_s:g} s after {self.opt.max_session_s:g} s; cut mid-speech at "
                f"{cut_ms:.0f} ms"
            )
            if self.segmenter is not None and (utterance := self.segmenter.flush()) is not None:
                await self._commit(utterance, respond=False)  # keep what was said; the rest follows
        if self.manual and self.segmenter is None and cut_ms > old.segment.start_ms:
            await self._commit(Utterance(old.segment.start_ms, cut_ms))
        self._info("session %d: rolling over at %.0f ms (%s)", old.segment.index, cut_ms, cut)
        await self._drain(f"session rollover at {cut_ms:.0f} ms", open_turns=cut == "forced")
        old.segment.end_ms = cut_ms
        assert self._tools is not None
        self._tools.cancel()
        self.responses.carry_over()  # requested, never created: ask the next session instead
        await old.close()
        self.tracker.abandon_session(cut_ms, self.clock())
        await self._open_leg(start_ms=cut_ms, reason="forced" if cut == "forced" else "rollover")

    # --- receiving -------------------------------------------------------------------------------------

    async def _receive(self, leg: Leg) -> None:
        tools = self._tools
        assert tools is not None
        async for event in leg.conn.events():
            now = self._last_event_at = self.clock()
            if self._events is not None:
                self._events.write("server", self._input_ms(now), event)
            etype = event.get("type")
            if etype == "error":
                await self._on_error(event, configuring=not leg.configured.is_set())
            else:
                self.tracker.handle(event, now)
            if etype in ("session.created", "session.updated"):
                leg.segment.session_id = self.tracker.session.get("id") or leg.segment.session_id
            if etype == "session.updated":
                leg.configured.set()
            elif etype == "response.created":
                self.responses.created()
            elif etype == "response.function_call_arguments.done":
                tools.start(event, now)
            elif etype == "response.done":
                tools.after_response(event)
                await self.responses.pump()
            self._changed.set()
        if not leg.closing:
            raise Transient(
                f"Voice Live connection ended mid-stream after {self.pacer.audio_ms_sent:.0f} ms of audio "
                f"({len(self.tracker.timeline.responses)} responses, session {leg.segment.index})"
            )

    async def _on_error(self, event: Mapping[str, Any], *, configuring: bool) -> None:
        error = dict(event.get("error") or {})
        self.tracker.timeline.errors.append(error)
        failure = classify_error_event(error, configuring=configuring)
        if failure is not None:
            _log.warning("job %s: fatal Voice Live error: %s", self.job.job_id, failure)
            raise failure
        self.tracker.warn(f"Voice Live error (ignored): {error.get('code')}: {error.get('message')}")
        if error.get("code") == "conversation_already_has_active_response":
            self.responses.refused()  # ours lost a race with a server-VAD response: ask again after it

    # --- end of input ----------------------------------------------------------------------------------

    async def _drain(self, what: str, *, open_turns: bool = False) -> bool:
        """Wait until the session has answered everything it was sent (see the module docstring)."""

        def busy() -> str | None:
            tools = self._tools
            return pending_work(self.tracker, responses=self.responses, tools=tools, open_turns=open_turns)

        return await drain(
            what, busy=busy, changed=self._changed, last_event_at=lambda: self._last_event_at,
            clock=self.clock, window_s=self.opt.drain_window_s,
            timeout_s=self.job.streaming.response_timeout_s, warn=self.tracker.warn,
        )  # fmt: skip

    def _input_ms(self, now: float) -> float:
        """Arrival time → input clock. After the input ended the clock keeps running at pace (1× unpaced),
        so late responses are placed after the input rather than piled onto its last millisecond."""
        if self._t_end is None or not self.pacer.finished:
            return self.pacer.input_ms_at(now)
        return self.pacer.audio_ms_sent + (now - self._t_end) * 1000.0 * (self.pacer.pace or 1.0)
