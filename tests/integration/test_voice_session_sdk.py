"""run_session through the REAL azure-ai-voicelive SDK adapter against the devstack Voice Live simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential
from voice_sdk_helpers import CALLER_TURNS_MS, FMT, FRAME_MS, make_job, wav_frames

from worker.errors import Throttled, Transient
from worker.jobs import Job
from worker.pacing import Paced, Unpaced, WirePacer
from worker.voice import SdkVoiceConnector, SessionOptions, SessionResult, run_session
from worker.voice.tools import ToolRegistry

sim_mod = pytest.importorskip(
    "devstack.voicelive", reason="the Voice Live simulator (devstack.voicelive) is missing"
)
VoiceLiveSimulator = sim_mod.VoiceLiveSimulator

pytestmark = pytest.mark.integration

OPTIONS = SessionOptions(drain_window_s=0.3, connect_timeout_s=10.0)


async def run(
    sim: Any, job: Job, tmp_path: Path, *, pacer: WirePacer | None = None, key: str = "devstack-key"
) -> SessionResult:
    connector = SdkVoiceConnector(
        endpoint=sim.endpoint, credential=AzureKeyCredential(key), connect_timeout_s=10.0
    )
    return await run_session(
        job,
        wav_frames("caller_3turns_16k.wav"),
        connector=connector,
        tools=ToolRegistry.default().resolve(job.tools),
        audio_format=FMT,
        pacer=pacer
        or WirePacer(Unpaced(), frame_ms=FRAME_MS, trailing_silence_ms=job.streaming.trailing_silence_ms),
        workdir=tmp_path,
        model_default="gpt-realtime",
        options=OPTIONS,
    )


def simulator(**options: Any) -> Any:
    options.setdefault("mode", sim_mod.Mode.ZERO_LATENCY)
    options.setdefault("connects_per_minute", None)
    return VoiceLiveSimulator(**options)


async def test_three_turns_each_answered_unpaced(tmp_path: Path) -> None:
    job = make_job(session={"input_audio_transcription": {"model": "azure-speech"}})
    async with simulator() as sim:
        result = await run(sim, job, tmp_path)
    turns = result.timeline.user_turns
    assert len(turns) == 3, turns
    for turn, (start, end) in zip(turns, CALLER_TURNS_MS, strict=True):
        assert turn.start_ms is not None and turn.end_ms is not None
        assert abs(turn.start_ms - start) <= 150 and abs(turn.end_ms - end) <= 150, turns
        assert turn.transcription == "completed" and turn.transcript
        assert len(turn.response_ids) == 1 and not turn.no_response
    assert [r.status for r in result.timeline.responses] == ["completed"] * 3
    assert all(r.audio_bytes > 0 and r.audio_file for r in result.timeline.responses)
    assert result.drained and result.session_id
    assert result.input_pcm.stat().st_size == result.pacing.audio_ms * 32 >= (16000 + 1500) * 32
    assert result.timeline.usage.get("total_tokens", 0) > 0


async def test_three_turns_paced(tmp_path: Path) -> None:
    """A paced run (8× real time) in normal mode: responses stream while input is still arriving."""
    job = make_job(streaming={"pace": 8.0})
    timing = sim_mod.ResponseTiming(first_output_delay_ms=20, pace=50.0, reply_audio_ms=600)
    pacer = WirePacer(Paced(8.0), frame_ms=FRAME_MS, trailing_silence_ms=1500)
    async with simulator(mode=sim_mod.Mode.NORMAL, timing=timing) as sim:
        result = await run(sim, job, tmp_path, pacer=pacer)
    assert len(result.timeline.user_turns) == 3
    assert [r.status for r in result.timeline.responses] == ["completed"] * 3
    # responses are placed after the turn they answer, on the input clock
    for turn, resp in zip(result.timeline.user_turns, result.timeline.responses, strict=True):
        assert resp.start_ms is not None and turn.end_ms is not None and resp.start_ms >= turn.end_ms


async def test_tool_round_trip(tmp_path: Path) -> None:
    job = make_job(tools=["get_weather"])
    async with simulator(tool_rule=sim_mod.ToolRule(mode=sim_mod.ToolRuleMode.FIRST_TURN)) as sim:
        result = await run(sim, job, tmp_path)
    (call,) = result.timeline.tool_calls
    assert call.name == "get_weather" and call.error is None, call
    triggers = [r.trigger for r in result.timeline.responses]
    assert triggers.count("tool") == 1, triggers
    assert all(r.status == "completed" for r in result.timeline.responses)


async def test_drop_mid_stream_is_transient(tmp_path: Path) -> None:
    async with simulator() as sim:
        sim.faults.next(sim_mod.CloseAfter(kind=sim_mod.CloseKind.DROP, appends=300))
        with pytest.raises(Transient):
            await run(sim, make_job(), tmp_path)


async def test_handshake_429_is_throttled_with_retry_after(tmp_path: Path) -> None:
    async with simulator() as sim:
        sim.faults.next(sim_mod.Refuse(status=429, retry_after_s=7))
        with pytest.raises(Throttled) as info:
            await run(sim, make_job(), tmp_path)
    assert info.value.retry_after_s == 7


async def test_bad_key_is_transient_with_a_hint(tmp_path: Path) -> None:
    async with simulator() as sim:
        with pytest.raises(Transient, match="VOICELIVE_API_KEY"):
            await run(sim, make_job(), tmp_path, key="wrong")
