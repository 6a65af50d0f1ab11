"""Conformance of the Voice Live simulator's turns, driven by the real SDK: VAD, manual, text, formats."""

from __future__ import annotations

import pytest
from azure.ai.voicelive.models import (
    InputTextContentPart,
    ServerEventError,
    ServerEventInputAudioBufferSpeechStarted,
    ServerEventInputAudioBufferSpeechStopped,
    ServerEventResponseAudioDelta,
    ServerEventResponseDone,
    ServerEventSessionUpdated,
    UserMessageItem,
)
from voicelive_helpers import (
    collect,
    is_type,
    sdk,
    send_audio,
    shape,
    simulator,
    trace_server_types,
    wav_data_chunk,
    wav_pcm,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

CALLER_TURNS_MS = [(500, 3050), (6050, 9120), (12120, 14000)]  # shared/audio/INDEX.md


async def test_session_update_echoes_full_session_and_rejects_bad_values() -> None:
    async with simulator() as sim, sdk(sim) as conn:
        await conn.send(
            {
                "type": "session.update",
                "session": {
                    "modalities": ["text", "audio"],
                    "voice": "alloy",
                    "turn_detection": {"type": "server_vad"},
                },
            }
        )
        await conn.send({"type": "session.update", "session": {"voice": "fable"}, "event_id": "evt_1"})
        events = await collect(conn, until=is_type("error"))
    assert [e.type for e in events] == ["session.created", "session.updated", "error"]
    created, updated, error = events
    assert created.session.turn_detection.prefix_padding_ms == 300  # creation defaults (cassette)
    assert isinstance(updated, ServerEventSessionUpdated)
    session = updated.session
    assert session.modalities == ["audio", "text"]
    assert session.voice == {"name": "alloy", "type": "openai"}
    td = session.turn_detection
    assert (td.threshold, td.prefix_padding_ms, td.silence_duration_ms) == (0.5, 400, 500)
    assert session.model == "gpt-realtime-global-standard"
    assert session.expires_at is not None
    assert isinstance(error, ServerEventError)
    assert (error.error.param, error.error.event_id) == ("session.voice", "evt_1")
    assert sim.connections[0].session["voice"] == {"name": "alloy", "type": "openai"}


async def test_server_vad_finds_three_turns_in_audio_time_and_matches_trace() -> None:
    raw, rate = wav_pcm("caller_3turns_16k.wav")
    async with simulator() as sim, sdk(sim) as conn:
        await conn.send(
            {
                "type": "session.update",
                "session": {
                    "modalities": ["text", "audio"],
                    "input_audio_sampling_rate": rate,
                    "turn_detection": {"type": "server_vad"},
                    "input_audio_transcription": {"model": "whisper-1"},
                },
            }
        )
        await send_audio(conn, raw, chunk=rate * 2 // 50)  # 20 ms appends, unpaced
        events = await collect(conn, until=is_type("response.done"), count=3)
    started = [e for e in events if isinstance(e, ServerEventInputAudioBufferSpeechStarted)]
    stopped = [e for e in events if isinstance(e, ServerEventInputAudioBufferSpeechStopped)]
    found = [(a.audio_start_ms, b.audio_end_ms) for a, b in zip(started, stopped, strict=True)]
    assert len(found) == 3
    for (start, end), (want_start, want_end) in zip(found, CALLER_TURNS_MS, strict=True):
        assert abs(start - want_start) <= 100 and abs(end - want_end) <= 100, found
    committed = [e for e in events if e.type == "input_audio_buffer.committed"]
    assert [s.item_id for s in started] == [s.item_id for s in stopped] == [c.item_id for c in committed]
    transcripts = [e.transcript for e in events if e.type.endswith("input_audio_transcription.completed")]
    assert transcripts[0].startswith("utterance 1 (2.") and len(transcripts) == 3
    done = [e for e in events if isinstance(e, ServerEventResponseDone)]
    assert [d.response.status for d in done] == ["completed"] * 3
    assert all(d.response.usage.total_tokens > 0 for d in done)
    audio = b"".join(e.delta for e in events if isinstance(e, ServerEventResponseAudioDelta))
    assert len(audio) == 3 * 1200 * 48  # 1.2 s reply per turn, pcm16 at 24 kHz
    # Per turn, the event order is the recorded one (golden trace 2, transcription events float).
    first_turn = shape(e.type for e in events[: events.index(done[0]) + 1])
    assert first_turn == shape(trace_server_types("test_audio_in_server_vad_turn.jsonl"))
    record = sim.connections[0]
    assert record.bytes_received == len(raw) and record.append_count == -(-len(raw) // 640)


async def test_g711_ulaw_at_8k_and_output_format() -> None:
    raw = wav_data_chunk("support_8k_mulaw.wav")
    async with simulator() as sim, sdk(sim) as conn:
        await conn.send(
            {
                "type": "session.update",
                "session": {
                    "modalities": ["audio", "text"],
                    "input_audio_format": "g711_ulaw",
                    "output_audio_format": "g711_ulaw",
                    "turn_detection": {"type": "azure_semantic_vad"},
                },
            }
        )
        await send_audio(conn, raw + bytes([0xFF]) * 8000, chunk=160)
        events = await collect(conn, until=is_type("response.done"))
    started = next(e for e in events if e.type == "input_audio_buffer.speech_started")
    stopped = next(e for e in events if e.type == "input_audio_buffer.speech_stopped")
    assert abs(started.audio_start_ms - 500) <= 100 and abs(stopped.audio_end_ms - 3420) <= 100
    deltas = [e.delta for e in events if isinstance(e, ServerEventResponseAudioDelta)]
    assert {len(d) for d in deltas} == {800}  # 100 ms of 8 kHz G.711 per delta
    assert sim.connections[0].session["turn_detection"]["prefix_padding_ms"] == 420


async def test_manual_turns_commit_then_response_create() -> None:
    raw, rate = wav_pcm("caller_3turns_16k.wav")
    turn1 = raw[: 4 * rate * 2]
    async with simulator() as sim, sdk(sim) as conn:
        await conn.send(
            {
                "type": "session.update",
                "session": {
                    "modalities": ["audio", "text"],
                    "input_audio_sampling_rate": rate,
                    "turn_detection": None,
                },
            }
        )
        await conn.input_audio_buffer.commit()  # nothing appended yet
        await send_audio(conn, turn1, chunk=640)
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        events = await collect(conn, until=is_type("response.done"))
        await send_audio(conn, raw[6 * rate * 2 : 10 * rate * 2], chunk=640)
        await conn.input_audio_buffer.clear()
        await conn.send({"type": "input_audio_buffer.commit", "event_id": "c2"})
        tail = await collect(conn, until=is_type("error"))
    kinds = [e.type for e in events]
    assert "input_audio_buffer.speech_started" not in kinds
    assert kinds[2] == "error" and events[2].error.code == "input_audio_buffer_commit_empty"
    assert kinds[3:7] == [
        "input_audio_buffer.committed",
        "conversation.item.created",
        "conversation.item.done",
        "response.created",
    ]
    assert events[-1].response.status == "completed"
    assert [e.type for e in tail] == ["input_audio_buffer.cleared", "error"]
    assert tail[1].error.event_id == "c2"
    assert sim.connections[0].received.count("input_audio_buffer.commit") == 3


@pytest.mark.parametrize(
    ("modalities", "trace"),
    [
        (["text"], "test_text_output_modality_returns_text.jsonl"),
        (["text", "audio"], "test_text_in_audio_out_turn.jsonl"),
    ],
)
async def test_text_turn_matches_trace(modalities: list[str], trace: str) -> None:
    async with simulator() as sim, sdk(sim) as conn:
        await conn.send({"type": "session.update", "session": {"modalities": modalities}})
        await collect(conn, until=is_type("session.updated"))
        item = UserMessageItem(content=[InputTextContentPart(text="Say hello")])
        await conn.conversation.item.create(item=item)
        await conn.response.create()
        events = await collect(conn, until=is_type("response.done"))
    trace_shape = shape(trace_server_types(trace))
    assert ["session.created", "session.updated", *shape(e.type for e in events)] == trace_shape
    done = events[-1]
    assert done.response.output[0].content[0].transcript if "audio" in modalities else True
    text = done.response.output[0].content[0]
    assert "Say hello" in (text.get("text") or text.get("transcript"))
    created = events[0]
    assert created.item.content[0].text == "Say hello" and created.previous_item_id is None
    assert "response.audio.delta" not in sim.connections[0].sent_types() or "audio" in modalities


async def test_output_rate_follows_output_audio_format() -> None:
    async with simulator() as sim, sdk(sim) as conn:
        await conn.send(
            {
                "type": "session.update",
                "session": {"modalities": ["audio", "text"], "output_audio_format": "pcm16_16000hz"},
            }
        )
        await conn.conversation.item.create(item=UserMessageItem(content=[InputTextContentPart(text="hi")]))
        await conn.response.create()
        events = await collect(conn, until=is_type("response.done"))
    assert {len(e.delta) for e in events if isinstance(e, ServerEventResponseAudioDelta)} == {3200}
    assert sim.connections[0].events("response.done")[0]["response"]["output_audio_format"] == "pcm16_16000hz"
