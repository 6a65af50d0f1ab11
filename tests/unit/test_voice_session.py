"""run_session driven by the scripted in-memory service: scripted server events in, recorded sends out."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from worker.audio.formats import AudioFormat
from worker.errors import Throttled, Transient, VoiceLiveRejected
from worker.jobs import Job
from worker.pacing import Unpaced, WirePacer
from worker.voice import FakeVoiceConnector, SessionOptions, SessionResult, run_session, to_vtt
from worker.voice.testing import ScriptedTool, ScriptedVoiceService, VadTurn
from worker.voice.tools import ToolRegistry

FMT = AudioFormat("pcm16", 16000)
FRAME_MS = 20
OPTIONS = SessionOptions(drain_window_s=0.02, session_update_timeout_s=5.0)
THREE_TURNS = [(500, 3040), (6040, 9120), (12120, 14000)]


def make_job(**fields: Any) -> Job:
    base: dict[str, Any] = {
        "version": 1,
        "job_id": "job-1",
        "input": {"url": "https://a.blob.core.windows.net/in/x.wav"},
    }
    streaming = {"sample_rate": 16000, "trailing_silence_ms": 1000, "response_timeout_s": 5.0}
    streaming |= fields.pop("streaming", {})
    return Job.model_validate(base | {"streaming": streaming} | fields)


async def speech_frames(segments: list[tuple[int, int]], total_ms: int) -> AsyncIterator[bytes]:
    """pcm16 16 kHz frames: a loud tone inside `segments` (ms), digital silence elsewhere."""
    n = FMT.frame_bytes(FRAME_MS) // 2
    tone = (8000 * np.sin(np.arange(n) * 2 * np.pi * 440 / 16000)).astype("<i2").tobytes()
    for start in range(0, total_ms, FRAME_MS):
        loud = any(a <= start < b for a, b in segments)
        yield tone if loud else bytes(2 * n)


async def run(
    service: ScriptedVoiceService,
    job: Job,
    tmp_path: Path,
    *,
    segments: list[tuple[int, int]] = THREE_TURNS,
    total_ms: int = 16000,
    options: SessionOptions = OPTIONS,
) -> tuple[SessionResult, FakeVoiceConnector]:
    connector = FakeVoiceConnector(service.handle, on_connect=service.on_connect)
    pacer = WirePacer(Unpaced(), frame_ms=FRAME_MS, trailing_silence_ms=job.streaming.trailing_silence_ms)
    result = await run_session(
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
    return result, connector


async def test_three_vad_turns_each_get_a_response(tmp_path: Path) -> None:
    service = ScriptedVoiceService(turns=[VadTurn(a, b, f"turn {i}") for i, (a, b) in enumerate(THREE_TURNS)])
    job = make_job(session={"input_audio_transcription": {"model": "azure-speech"}, "voice": "alloy"})
    result, connector = await run(service, job, tmp_path)

    turns = result.timeline.user_turns
    assert [(t.start_ms, t.end_ms) for t in turns] == [(500, 3040), (6040, 9120), (12120, 14000)]
    assert [t.transcript for t in turns] == ["turn 0", "turn 1", "turn 2"]
    assert all(len(t.response_ids) == 1 and not t.no_response for t in turns)
    responses = result.timeline.responses
    assert [r.status for r in responses] == ["completed"] * 3
    assert [r.user_item_id for r in responses] == [t.item_id for t in turns]
    assert all(r.audio_bytes == 200 * 48 and r.transcript == "Sure." for r in responses)
    assert (tmp_path / "response-001.pcm").stat().st_size == 200 * 48
    assert result.timeline.usage["total_tokens"] == 30
    # input.pcm is exactly what was streamed: the input plus the trailing silence
    assert result.input_pcm.stat().st_size == (16000 + 1000) * 32
    assert (result.session_id, result.model, result.voice) == ("sess_0001", "gpt-realtime", "alloy")
    assert result.drained and service.violations == []
    sent = connector.server.sent_types()
    assert sent[0] == "session.update"
    assert "response.create" not in sent  # the server's VAD creates the responses
    assert connector.server.sent[0]["session"]["input_audio_sampling_rate"] == 16000
    assert to_vtt(result.timeline).count("<v User>") == 3


async def test_config_rejection_is_permanent_and_sends_no_audio(tmp_path: Path) -> None:
    service = ScriptedVoiceService(reject_config=True)
    with pytest.raises(VoiceLiveRejected, match="session.voice"):
        await run(service, make_job(), tmp_path)


async def test_disconnect_mid_stream_is_transient(tmp_path: Path) -> None:
    service = ScriptedVoiceService(turns=[VadTurn(500, 3040)], drop_at_ms=7000)
    with pytest.raises(Transient, match="ended mid-stream|connection closed"):
        await run(service, make_job(), tmp_path)


async def test_tool_round_trip_waits_for_response_done(tmp_path: Path) -> None:
    service = ScriptedVoiceService(
        turns=[VadTurn(500, 3040)],
        tool_calls=[ScriptedTool("get_weather", {"city": "Seattle", "date": "tomorrow"})],
        hold_tool_response_ms=1000,
    )
    result, connector = await run(service, make_job(tools=["get_weather"]), tmp_path, segments=[(500, 3040)])

    assert service.violations == []
    (call,) = result.timeline.tool_calls
    assert (call.name, call.error, call.source) == ("get_weather", None, "executed")
    assert call.result["city"] == "Seattle"
    sent = [e for e in connector.server.sent if e["type"] != "input_audio_buffer.append"]
    output_at = next(i for i, e in enumerate(sent) if e.get("item", {}).get("type") == "function_call_output")
    assert sent[output_at + 1]["type"] == "response.create"
    assert json.loads(sent[output_at]["item"]["output"])["city"] == "Seattle"
    assert [r.trigger for r in result.timeline.responses] == ["server_vad", "tool"]
    assert connector.server.sent[0]["session"]["tools"][0]["name"] == "get_weather"


async def test_fixture_result_replaces_the_tool(tmp_path: Path) -> None:
    service = ScriptedVoiceService(
        turns=[VadTurn(500, 3040)], tool_calls=[ScriptedTool("get_weather", {"city": "Seattle"})]
    )
    job = make_job(tools=["get_weather"], tool_fixtures=[{"tool": "get_weather", "result": {"pinned": True}}])
    result, _ = await run(service, job, tmp_path, segments=[(500, 3040)])
    (call,) = result.timeline.tool_calls
    assert (call.source, call.result) == ("fixture", {"pinned": True})


async def test_bad_tool_arguments_go_back_to_the_model(tmp_path: Path) -> None:
    service = ScriptedVoiceService(
        turns=[VadTurn(500, 3040)], tool_calls=[ScriptedTool("get_weather", {"town": "X"})]
    )
    result, connector = await run(service, make_job(tools=["get_weather"]), tmp_path, segments=[(500, 3040)])
    (call,) = result.timeline.tool_calls
    assert call.error is not None and "invalid arguments" in call.error
    outputs = [e for e in connector.server.sent if e.get("item", {}).get("type") == "function_call_output"]
    assert "error" in json.loads(outputs[0]["item"]["output"])
    assert len(result.timeline.responses) == 2


async def test_manual_turns_commit_and_create_per_utterance(tmp_path: Path) -> None:
    service = ScriptedVoiceService()
    job = make_job(session={"turn_detection": None})
    result, connector = await run(service, job, tmp_path)

    sent = connector.server.sent_types()
    assert sent.count("input_audio_buffer.commit") == 3
    assert sent.count("response.create") == 3
    assert service.violations == []
    turns = result.timeline.user_turns
    assert [t.source for t in turns] == ["manual"] * 3
    assert [(t.start_ms, t.end_ms) for t in turns] == [(500, 3040), (6040, 9120), (12120, 14000)]
    assert all(len(t.response_ids) == 1 for t in turns)
    assert connector.server.sent[0]["session"]["turn_detection"] is None


async def test_manual_single_commit_at_end(tmp_path: Path) -> None:
    service = ScriptedVoiceService()
    options = SessionOptions(drain_window_s=0.02, manual_segmentation="single")
    result, connector = await run(
        service, make_job(session={"turn_detection": None}), tmp_path, options=options
    )
    assert connector.server.sent_types().count("input_audio_buffer.commit") == 1
    assert len(result.timeline.responses) == 1


async def test_drain_timeout_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    service = ScriptedVoiceService(
        turns=[VadTurn(500, 3040)],
        tool_calls=[ScriptedTool("get_time", {})],
        hold_tool_response_ms=10**9,  # the response never finishes
    )
    job = make_job(tools=["get_time"], streaming={"response_timeout_s": 0.2})
    result, _ = await run(service, job, tmp_path, segments=[(500, 3040)], total_ms=4000)
    assert not result.drained
    assert any("stopped waiting" in w for w in result.timeline.warnings)
    assert any("never finished" in w for w in result.timeline.warnings)


async def test_barge_in_cancels_and_is_recorded(tmp_path: Path) -> None:
    service = ScriptedVoiceService(
        turns=[VadTurn(500, 3040), VadTurn(6040, 9120)],
        tool_calls=[ScriptedTool("get_time", {})],
        hold_tool_response_ms=10**6,  # still active when the second turn starts
    )
    result, connector = await run(
        service, make_job(tools=["get_time"]), tmp_path, segments=[(500, 3040), (6040, 9120)]
    )
    first = result.timeline.responses[0]
    assert (first.status, first.status_reason, first.truncated) == ("cancelled", "turn_detected", True)
    assert result.timeline.responses[1].status == "completed"
    # the cancelled response's tool result is recorded but not sent back
    assert len(result.timeline.tool_calls) == 1
    assert not any(e.get("item", {}).get("type") == "function_call_output" for e in connector.server.sent)
    assert any("tool results were not sent" in w for w in result.timeline.warnings)


async def test_turn_without_response_is_recorded(tmp_path: Path) -> None:
    service = ScriptedVoiceService(turns=[VadTurn(500, 3040)])
    job = make_job(session={"turn_detection": {"type": "server_vad", "create_response": False}})
    result, _ = await run(service, job, tmp_path, segments=[(500, 3040)], total_ms=4000)
    (turn,) = result.timeline.user_turns
    assert turn.no_response
    assert any("got no response" in w for w in result.timeline.warnings)


async def test_seeded_conversation_goes_before_audio(tmp_path: Path) -> None:
    service = ScriptedVoiceService()
    job = make_job(conversation=[{"role": "user", "text": "hi"}, {"role": "assistant", "text": "hello"}])
    _, connector = await run(service, job, tmp_path, segments=[], total_ms=200)
    sent = connector.server.sent
    assert [e["type"] for e in sent[:4]] == ["session.update"] + ["conversation.item.create"] * 2 + [
        "input_audio_buffer.append"
    ]
    assert sent[2]["item"]["content"][0]["type"] == "output_text"


async def test_events_log_elides_audio(tmp_path: Path) -> None:
    service = ScriptedVoiceService(turns=[VadTurn(500, 3040)])
    job = make_job(outputs={"events": True})
    result, _ = await run(service, job, tmp_path, segments=[(500, 3040)], total_ms=4000)
    assert result.events_file is not None
    lines = [json.loads(x) for x in gzip.decompress(result.events_file.read_bytes()).splitlines()]
    deltas = [x["event"] for x in lines if x["event"]["type"] == "response.audio.delta"]
    assert deltas and deltas[0]["delta"] == f"<b64 {200 * 48} bytes>"
    assert not any(x["event"]["type"] == "input_audio_buffer.append" for x in lines)


async def test_rate_limit_error_event_is_throttled(tmp_path: Path) -> None:
    service = ScriptedVoiceService()

    def handler(event: Any, server: Any) -> None:
        service.handle(event, server)
        if event["type"] == "conversation.item.create":
            server.emit({"type": "error", "error": {"type": "rate_limit_exceeded", "message": "slow down"}})

    connector = FakeVoiceConnector(handler, on_connect=service.on_connect)
    job = make_job(conversation=[{"role": "user", "text": "hi"}])
    pacer = WirePacer(Unpaced(), frame_ms=FRAME_MS)
    with pytest.raises(Throttled):
        await run_session(
            job,
            speech_frames([], 4000),
            connector=connector,
            tools=[],
            audio_format=FMT,
            pacer=pacer,
            workdir=tmp_path,
            model_default="m",
            options=OPTIONS,
        )


async def test_connect_timeout_is_transient(tmp_path: Path) -> None:
    class Hanging:
        @asynccontextmanager
        async def connect(self, *, model: str) -> AsyncIterator[Any]:
            await asyncio.Event().wait()
            yield None

    with pytest.raises(Transient, match="connect timed out"):
        await run_session(
            make_job(),
            speech_frames([], 100),
            connector=Hanging(),
            tools=[],
            audio_format=FMT,
            pacer=WirePacer(Unpaced(), frame_ms=FRAME_MS),
            workdir=tmp_path,
            model_default="m",
            options=SessionOptions(connect_timeout_s=0.05),
        )


async def test_connect_error_passes_through(tmp_path: Path) -> None:
    connector = FakeVoiceConnector(lambda e, s: None, connect_error=Throttled("429", retry_after_s=3))
    with pytest.raises(Throttled) as info:
        await run_session(
            make_job(),
            speech_frames([], 100),
            connector=connector,
            tools=[],
            audio_format=FMT,
            pacer=WirePacer(Unpaced(), frame_ms=FRAME_MS),
            workdir=tmp_path,
            model_default="m",
        )
    assert info.value.retry_after_s == 3
