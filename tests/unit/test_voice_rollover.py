"""Session rollover with the scripted in-memory service: where sessions are cut, VAD offsets, re-seeding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from worker.audio.formats import AudioFormat
from worker.errors import Throttled, Transient, VoiceLiveRejected
from worker.jobs import Job
from worker.pacing import Unpaced, WirePacer
from worker.voice import FakeVoiceConnector, SessionOptions, SessionResult, run_session
from worker.voice.ports import VoiceConnection, VoiceConnector
from worker.voice.rollover import RolloverPolicy, boundary_silence_ms, history
from worker.voice.testing import ScriptedTool, ScriptedVoiceService, VadTurn
from worker.voice.timeline import AssistantResponse, Timeline, UserTurn
from worker.voice.tools import ToolRegistry
from worker.voice.wire import classify_error_event

FMT = AudioFormat("pcm16", 16000)
FRAME_MS = 20
THREE_TURNS = [(500, 3040), (6040, 9120), (12120, 14000)]
# The scripted service and our sender share no clock: ages are input audio here (unpaced, wall ≈ 0).
ROLL_AT_6S = SessionOptions(drain_window_s=0.02, session_update_timeout_s=5.0, max_session_s=6.0)


def make_job(**fields: Any) -> Job:
    base: dict[str, Any] = {
        "version": 1,
        "job_id": "job-roll",
        "input": {"url": "https://a.blob.core.windows.net/in/x.wav"},
    }
    streaming = {"sample_rate": 16000, "trailing_silence_ms": 1000, "response_timeout_s": 5.0}
    streaming |= fields.pop("streaming", {})
    return Job.model_validate(base | {"streaming": streaming} | fields)


def tone(n_samples: int) -> bytes:
    return (8000 * np.sin(np.arange(n_samples) * 2 * np.pi * 440 / 16000)).astype("<i2").tobytes()


async def speech_frames(segments: list[tuple[int, int]], total_ms: int) -> AsyncIterator[bytes]:
    """pcm16 16 kHz frames: a loud tone inside `segments` (ms), digital silence elsewhere."""
    n = FMT.frame_bytes(FRAME_MS) // 2
    loud = tone(n)
    for start in range(0, total_ms, FRAME_MS):
        yield loud if any(a <= start < b for a, b in segments) else bytes(2 * n)


async def run_with(
    connector: VoiceConnector,
    job: Job,
    tmp_path: Path,
    *,
    segments: list[tuple[int, int]] = THREE_TURNS,
    total_ms: int = 16000,
    options: SessionOptions = ROLL_AT_6S,
) -> SessionResult:
    pacer = WirePacer(Unpaced(), frame_ms=FRAME_MS, trailing_silence_ms=job.streaming.trailing_silence_ms)
    return await run_session(
        job,
        speech_frames(segments, total_ms),
        connector=connector,
        tools=ToolRegistry.default().resolve(job.tools),
        audio_format=FMT,
        pacer=pacer,
        workdir=tmp_path,
        model_default="gpt-realtime",
        options=options,
    )


async def run(
    service: ScriptedVoiceService,
    job: Job,
    tmp_path: Path,
    *,
    segments: list[tuple[int, int]] = THREE_TURNS,
    total_ms: int = 16000,
    options: SessionOptions = ROLL_AT_6S,
) -> tuple[SessionResult, FakeVoiceConnector]:
    connector = FakeVoiceConnector(service.handle, on_connect=service.on_connect)
    result = await run_with(connector, job, tmp_path, segments=segments, total_ms=total_ms, options=options)
    return result, connector


def appended_ms(server: Any) -> float:
    return sum(len(e["audio"]) for e in server.sent if e["type"] == "input_audio_buffer.append") / 32


async def test_rolls_over_at_silence_boundaries_and_keeps_the_input_clock(tmp_path: Path) -> None:
    service = ScriptedVoiceService(turns=[VadTurn(a, b, f"turn {i}") for i, (a, b) in enumerate(THREE_TURNS)])
    job = make_job(
        session={"input_audio_transcription": {"model": "azure-speech"}, "instructions": "Be brief."}
    )
    result, connector = await run(service, job, tmp_path)

    # 6 s old at 6.0 s and at 12.0 s of input; both in the silences between turns (3.04-6.04, 9.12-12.12)
    sessions = result.timeline.sessions
    assert [(s.start_ms, s.end_ms, s.reason) for s in sessions] == [
        (0.0, 6000.0, "start"), (6000.0, 12000.0, "rollover"), (12000.0, 17000.0, "rollover")
    ]  # fmt: skip
    assert len({s.session_id for s in sessions}) == 3 and result.session_id == sessions[0].session_id
    assert [appended_ms(srv) for srv in connector.servers] == [6000, 6000, 5000]
    # VAD times of sessions 2 and 3 are shifted back onto the input clock
    turns = result.timeline.user_turns
    assert [(t.start_ms, t.end_ms) for t in turns] == THREE_TURNS
    assert all(len(t.response_ids) == 1 and not t.no_response for t in turns)
    assert [r.status for r in result.timeline.responses] == ["completed"] * 3
    assert result.drained and service.violations == []
    assert result.input_pcm.stat().st_size == 17000 * 32  # every frame, once, in order
    assert not any("rollover" in w or "cut" in w for w in result.timeline.warnings)
    # each session gets the same configuration; every old socket is closed by us
    updates = [srv.sent[0] for srv in connector.servers]
    assert all(u["type"] == "session.update" and u["session"] == updates[0]["session"] for u in updates)
    assert updates[0]["session"]["instructions"] == "Be brief."
    assert all(srv.closed_by_client for srv in connector.servers)


async def test_a_new_session_is_reseeded_with_the_conversation_so_far(tmp_path: Path) -> None:
    service = ScriptedVoiceService(turns=[VadTurn(a, b, f"turn {i}") for i, (a, b) in enumerate(THREE_TURNS)])
    job = make_job(
        session={"input_audio_transcription": {"model": "azure-speech"}},
        conversation=[{"role": "system", "text": "Premium caller."}],
    )
    _, connector = await run(service, job, tmp_path)

    def seeded(server: Any) -> list[tuple[str, str, str]]:
        items = [e for e in server.sent if e["type"] == "conversation.item.create"]
        return [
            (i["item"]["role"], i["item"]["content"][0]["type"], i["item"]["content"][0]["text"])
            for i in items
        ]

    first, second, third = connector.servers
    assert seeded(first) == [("system", "input_text", "Premium caller.")]
    assert seeded(second) == [
        ("system", "input_text", "Premium caller."),
        ("user", "input_text", "turn 0"),
        ("assistant", "output_text", "Sure."),
    ]
    assert seeded(third)[-2:] == [("user", "input_text", "turn 1"), ("assistant", "output_text", "Sure.")]
    assert len(seeded(third)) == 5
    # re-seeded history is sent before any audio, after session.updated
    types = second.sent_types(audio=True)
    assert types[:4] == ["session.update", "conversation.item.create", "conversation.item.create",
                         "conversation.item.create"]  # fmt: skip
    assert types[4] == "input_audio_buffer.append"
    history_ids = [e["event_id"] for e in second.sent if e["type"] == "conversation.item.create"]
    assert all(i.startswith("vlw_history_") for i in history_ids)


async def test_short_inputs_use_one_session(tmp_path: Path) -> None:
    service = ScriptedVoiceService(turns=[VadTurn(a, b) for a, b in THREE_TURNS])
    options = SessionOptions(drain_window_s=0.02)  # default max_session_s (55 min)
    result, connector = await run(service, make_job(), tmp_path, options=options)
    assert len(connector.servers) == 1
    (only,) = result.timeline.sessions
    assert (only.index, only.start_ms, only.end_ms, only.reason) == (1, 0.0, 17000.0, "start")
    assert only.session_id == result.session_id == "sess_0001"
    assert only.connect_ms is not None and result.connect_ms == only.connect_ms


async def test_no_silence_within_the_grace_window_forces_a_cut_with_a_warning(tmp_path: Path) -> None:
    service = ScriptedVoiceService(turns=[VadTurn(500, 15000)])
    options = SessionOptions(drain_window_s=0.02, max_session_s=4.0, rollover_grace_s=2.0)
    result, connector = await run(service, make_job(), tmp_path, segments=[(500, 15000)], options=options)

    sessions = result.timeline.sessions
    assert [(s.start_ms, s.reason) for s in sessions] == [
        (0.0, "start"),
        (6000.0, "forced"),
        (12000.0, "forced"),
    ]
    assert len(connector.servers) == 3
    forced = [w for w in result.timeline.warnings if "cut mid-speech" in w]
    assert len(forced) == 2 and "at 6000 ms" in forced[0]
    # 700 ms of silence after the turn, just as the input ends: no session only for the trailing silence
    # the last session heard the end of the utterance and reports it on the input clock
    (turn,) = result.timeline.user_turns
    assert turn.end_ms == 15000 and turn.response_ids


async def test_a_forced_cut_does_not_wait_for_the_open_turn(tmp_path: Path) -> None:
    service = ScriptedVoiceService(turns=[VadTurn(500, 15000)])

    def handler(event: Any, server: Any) -> None:
        service.handle(event, server)
        if event["type"] == "input_audio_buffer.append" and service.audio_ms == 1000:  # heard in session 1
            server.emit(
                {"type": "input_audio_buffer.speech_started", "audio_start_ms": 500, "item_id": "open"}
            )

    connector = FakeVoiceConnector(handler, on_connect=service.on_connect)
    options = SessionOptions(drain_window_s=0.02, max_session_s=4.0, rollover_grace_s=2.0)
    job = make_job(streaming={"response_timeout_s": 60.0})  # waiting for that turn would stall a minute
    result = await run_with(connector, job, tmp_path, segments=[(500, 15000)], options=options)

    assert [(t.start_ms, t.end_ms) for t in result.timeline.user_turns] == [(500, 6000), (12000, 15000)]
    assert any("still open at the session rollover" in w for w in result.timeline.warnings)
    assert not any("stopped waiting" in w for w in result.timeline.warnings)


async def test_waits_for_silence_inside_the_grace_window(tmp_path: Path) -> None:
    # 6 s old mid-turn (6.04-9.12 is speech... here speech runs 5-9 s): cut once 700 ms of silence passed
    service = ScriptedVoiceService(turns=[VadTurn(500, 3040), VadTurn(5000, 9120)])
    options = SessionOptions(drain_window_s=0.02, max_session_s=6.0, rollover_grace_s=60.0)
    segments = [(500, 3040), (5000, 9120)]
    result, _ = await run(service, make_job(), tmp_path, segments=segments, total_ms=12000, options=options)
    starts = [s.start_ms for s in result.timeline.sessions]
    assert starts == [0.0, 9820.0]  # 9120 + the server's 500 ms + our 200 ms margin
    assert [(t.start_ms, t.end_ms) for t in result.timeline.user_turns] == segments
    assert not any("cut mid-speech" in w for w in result.timeline.warnings)


async def test_manual_turns_roll_over_too(tmp_path: Path) -> None:
    service = ScriptedVoiceService()
    result, connector = await run(service, make_job(session={"turn_detection": None}), tmp_path)
    assert [s.start_ms for s in result.timeline.sessions] == [0.0, 6000.0, 12000.0]
    turns = result.timeline.user_turns
    assert [(t.source, t.start_ms, t.end_ms) for t in turns] == [("manual", a, b) for a, b in THREE_TURNS]
    assert all(len(t.response_ids) == 1 for t in turns)
    assert [srv.sent_types().count("input_audio_buffer.commit") for srv in connector.servers] == [1, 1, 1]
    assert service.violations == []


async def test_manual_single_commit_commits_once_per_session(tmp_path: Path) -> None:
    service = ScriptedVoiceService()
    options = SessionOptions(drain_window_s=0.02, max_session_s=6.0, manual_segmentation="single")
    result, connector = await run(
        service, make_job(session={"turn_detection": None}), tmp_path, options=options
    )
    assert [srv.sent_types().count("input_audio_buffer.commit") for srv in connector.servers] == [1, 1, 1]
    spans = [(t.start_ms, t.end_ms) for t in result.timeline.user_turns]
    assert spans == [(0.0, 6000.0), (6000.0, 12000.0), (12000.0, 16000.0)]
    assert len(result.timeline.responses) == 3


async def test_work_a_session_cannot_finish_is_closed_at_the_rollover(tmp_path: Path) -> None:
    # turn 1's response calls a tool and never finishes: the rollover drain times out, the response is
    # recorded as cut off, and the next session answers turns 2 and 3 as usual
    service = ScriptedVoiceService(
        turns=[VadTurn(a, b) for a, b in THREE_TURNS],
        tool_calls=[ScriptedTool("get_time", {})],
        hold_tool_response_ms=10**9,
    )
    job = make_job(tools=["get_time"], streaming={"response_timeout_s": 0.3})
    options = SessionOptions(drain_window_s=0.02, max_session_s=6.0)
    result, connector = await run(service, job, tmp_path, options=options)

    first, *rest = result.timeline.responses
    assert (first.status, first.status_reason) == ("incomplete", "session_rollover")
    assert [r.status for r in rest] == ["completed", "completed"]
    assert [len(t.response_ids) for t in result.timeline.user_turns] == [1, 1, 1]
    assert any(w.startswith("session rollover at 6000 ms: stopped waiting") for w in result.timeline.warnings)
    assert any("cut off by the session rollover" in w for w in result.timeline.warnings)
    assert len(result.timeline.tool_calls) == 0  # as at the end of input: its response never finished
    assert service.violations == [] and len(connector.servers) == 3


async def test_an_unexpected_session_expiry_is_transient(tmp_path: Path) -> None:
    service = ScriptedVoiceService(turns=[VadTurn(500, 3040)], expire_after_ms=5000)
    options = SessionOptions(drain_window_s=0.02)
    with pytest.raises(Transient, match="session_expired|ended mid-stream|connection closed"):
        await run(service, make_job(), tmp_path, options=options)


async def test_expiry_in_a_rolled_over_session_is_transient_too(tmp_path: Path) -> None:
    # session 1 rolls over at 4.0 s; session 2 waits for the silence after turn 2 (9.82 s) but the
    # service expires it after 5 s of its audio (9.0 s)
    service = ScriptedVoiceService(turns=[VadTurn(a, b) for a, b in THREE_TURNS], expire_after_ms=5000)
    connector = FakeVoiceConnector(service.handle, on_connect=service.on_connect)
    options = SessionOptions(drain_window_s=0.02, max_session_s=4.0)
    with pytest.raises(Transient, match="session_expired|ended mid-stream|connection closed"):
        await run_with(connector, make_job(), tmp_path, options=options)
    assert len(connector.servers) == 2


async def test_a_failed_connect_at_rollover_fails_the_attempt(tmp_path: Path) -> None:
    service = ScriptedVoiceService(turns=[VadTurn(a, b) for a, b in THREE_TURNS])
    inner = FakeVoiceConnector(service.handle, on_connect=service.on_connect)

    class SecondRefused:
        def connect(self, *, model: str) -> AbstractAsyncContextManager[VoiceConnection]:
            if inner.servers:
                raise Throttled("429 on the second session", retry_after_s=5)
            return inner.connect(model=model)

    with pytest.raises(Throttled) as info:
        await run_with(SecondRefused(), make_job(), tmp_path, options=ROLL_AT_6S)
    assert info.value.retry_after_s == 5
    assert inner.servers[0].closed_by_client


def test_session_expired_is_transient_even_while_configuring() -> None:
    error = {"type": "invalid_request_error", "code": "session_expired", "message": "60 minutes"}
    assert isinstance(classify_error_event(error, configuring=True), Transient)
    assert not isinstance(classify_error_event(error, configuring=False), VoiceLiveRejected)


def test_history_keeps_the_seed_and_the_newest_transcripts_within_the_bound() -> None:
    job = make_job(conversation=[{"role": "system", "text": "S" * 500}])
    timeline = Timeline(
        user_turns=[
            UserTurn(index=1, start_ms=100, transcript="a" * 60),
            UserTurn(index=2, start_ms=3000, transcript="  "),  # nothing said: skipped
            UserTurn(index=3, start_ms=5000, transcript="c" * 60),
        ],
        responses=[
            AssistantResponse(index=1, response_id="r1", start_ms=1000, transcript="b" * 60),
            AssistantResponse(index=2, response_id="r2", start_ms=6000, text="d" * 60),
            AssistantResponse(index=3, response_id="r3"),  # said nothing: skipped
        ],
    )
    everything = history(job, timeline, max_chars=1000)
    assert [(i.role, i.text[0]) for i in everything] == [
        ("system", "S"), ("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")
    ]  # fmt: skip
    # the job's seed always stays; of the rest the newest that fit, the next one trimmed at its start
    bounded = history(job, timeline, max_chars=160)
    assert [i.text for i in bounded] == ["S" * 500, "…" + "b" * 39, "c" * 60, "d" * 60]
    # a tail shorter than 40 characters is dropped rather than kept
    assert [i.text for i in history(job, timeline, max_chars=150)] == ["S" * 500, "c" * 60, "d" * 60]


def test_boundary_silence_follows_the_turn_detector() -> None:
    assert boundary_silence_ms(make_job(), manual_silence_ms=600) == 700
    slow = make_job(session={"turn_detection": {"type": "server_vad", "silence_duration_ms": 1200}})
    assert boundary_silence_ms(slow, manual_silence_ms=600) == 1400
    assert boundary_silence_ms(make_job(session={"turn_detection": None}), manual_silence_ms=600) == 800


def test_policy_waits_for_age_then_silence_then_forces() -> None:
    policy = RolloverPolicy(max_session_s=1.0, grace_s=0.5, sample_rate=16000, silence_ms=100)
    loud, quiet = tone(320), bytes(640)
    assert policy.push(quiet, age_s=0.5, server_idle=True) is None  # too young
    assert policy.push(loud, age_s=1.0, server_idle=True) is None  # speech
    for _ in range(4):
        assert policy.push(quiet, age_s=1.1, server_idle=True) is None  # 80 ms of silence
    assert policy.push(quiet, age_s=1.1, server_idle=False) is None  # the server has a turn open
    assert policy.push(quiet, age_s=1.1, server_idle=True) == "boundary"
    assert policy.push(loud, age_s=1.5, server_idle=True) == "forced"
    with pytest.raises(ValueError, match="max_session_s"):
        RolloverPolicy(max_session_s=0, grace_s=1, sample_rate=16000, silence_ms=100)
