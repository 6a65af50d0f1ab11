"""Session rollover through the REAL azure-ai-voicelive SDK against the devstack Voice Live simulator."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential
from voice_sdk_helpers import CALLER_TURNS_MS, FMT, FRAME_MS, make_job, wav_frames

from worker.errors import Transient
from worker.jobs import Job
from worker.pacing import Paced, WirePacer
from worker.voice import SdkVoiceConnector, SessionOptions, SessionResult, run_session
from worker.voice.tools import ToolRegistry

sim_mod = pytest.importorskip(
    "devstack.voicelive", reason="the Voice Live simulator (devstack.voicelive) is missing"
)

pytestmark = pytest.mark.integration


async def run(sim: Any, job: Job, tmp_path: Path, *, pace: float, options: SessionOptions) -> SessionResult:
    connector = SdkVoiceConnector(
        endpoint=sim.endpoint, credential=AzureKeyCredential("devstack-key"), connect_timeout_s=10.0
    )
    return await run_session(
        job,
        wav_frames("caller_3turns_16k.wav"),
        connector=connector,
        tools=ToolRegistry.default().resolve(job.tools),
        audio_format=FMT,
        pacer=WirePacer(
            Paced(pace), frame_ms=FRAME_MS, trailing_silence_ms=job.streaming.trailing_silence_ms
        ),
        workdir=tmp_path,
        model_default="gpt-realtime",
        options=options,
    )


async def test_long_input_rolls_over_and_keeps_turns_on_the_input_clock(tmp_path: Path) -> None:
    """16 s at 8x with 6 s sessions: cut in the silences after turns 1 and 2, every turn still answered."""
    job = make_job(
        session={"input_audio_transcription": {"model": "azure-speech"}, "instructions": "Be brief."},
        conversation=[{"role": "system", "text": "The caller is a premium customer."}],
        streaming={"pace": 8.0},
    )
    timing = sim_mod.ResponseTiming(first_output_delay_ms=20, pace=50.0, reply_audio_ms=600)
    options = SessionOptions(drain_window_s=0.3, connect_timeout_s=10.0, max_session_s=6.0)
    async with simulator(timing=timing) as sim:
        result = await run(sim, job, tmp_path, pace=8.0, options=options)
        records = [r for r in sim.connections if r.handshake_status == 101]

    sessions = result.timeline.sessions
    assert 2 <= len(sessions) <= 3 and len(records) == len(sessions), sessions
    assert [s.reason for s in sessions] == ["start"] + ["rollover"] * (len(sessions) - 1)
    assert (
        len({s.session_id for s in sessions}) == len(sessions) and result.session_id == sessions[0].session_id
    )
    for before, after in itertools.pairwise(sessions):
        assert before.end_ms == after.start_ms
    # every cut fell in a silence between turns, never inside one
    for cut in (s.start_ms for s in sessions[1:]):
        assert any(end < cut < start for (_, end), (start, _) in itertools.pairwise(CALLER_TURNS_MS))
    turns = result.timeline.user_turns
    assert len(turns) == 3, turns
    for turn, (start, end) in zip(turns, CALLER_TURNS_MS, strict=True):
        assert turn.start_ms is not None and turn.end_ms is not None
        assert abs(turn.start_ms - start) <= 150 and abs(turn.end_ms - end) <= 150, turns
        assert turn.transcription == "completed" and turn.transcript
        assert len(turn.response_ids) == 1 and not turn.no_response, turn
    assert [r.status for r in result.timeline.responses] == ["completed"] * 3
    assert result.drained and not result.timeline.errors, result.timeline
    # every session was configured alike; later ones were re-seeded before any audio
    assert all(r.session.get("instructions") == "Be brief." for r in records)
    assert records[0].received.count("conversation.item.create") == 1
    for record in records[1:]:
        first_append = record.received.index("input_audio_buffer.append")
        assert record.received[:first_append].count("conversation.item.create") >= 3
    # all input went out exactly once across the sessions
    assert sum(r.bytes_received for r in records) == result.pacing.audio_ms * 32
    assert result.input_pcm.stat().st_size == result.pacing.audio_ms * 32


async def test_service_expiry_mid_stream_is_transient(tmp_path: Path) -> None:
    """A session the service expires (error session_expired, close 1001) fails the attempt, never
    succeeds silently."""
    options = SessionOptions(drain_window_s=0.3, connect_timeout_s=10.0)
    async with simulator(session_ttl_s=1) as sim:
        with pytest.raises(Transient, match="expired|ended mid-stream|connection"):
            await run(sim, make_job(), tmp_path, pace=1.0, options=options)


def simulator(**options: Any) -> Any:
    options.setdefault("connects_per_minute", None)
    return sim_mod.VoiceLiveSimulator(**options)
