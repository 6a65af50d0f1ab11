"""The simulator's real recogniser (pocketsphinx), driven by the real SDK: transcripts, order, failure."""

from __future__ import annotations

import asyncio
import wave
from typing import Any

import numpy as np
import pytest
import soxr
from voicelive_helpers import (
    AUDIO,
    collect,
    is_type,
    sdk,
    send_audio,
    shape,
    simulator,
    wav_data_chunk,
    wav_pcm,
)

from devstack.voicelive import PocketsphinxRecognizer, ToolRule, ToolRuleMode
from devstack.voicelive.recognizer import Samples
from devstack.voicelive.tape import InputTape

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"
FAILED = "conversation.item.input_audio_transcription.failed"


def weather_24k() -> bytes:
    """weather_44k1_stereo.wav as the worker sends it: pcm16 mono at 24 kHz."""
    with wave.open(str(AUDIO / "weather_44k1_stereo.wav")) as w:
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
        rate = w.getframerate()
    mono = ((stereo[:, 0].astype(np.int32) + stereo[:, 1]) >> 1).astype(np.int16)
    return bytes(soxr.resample(mono, rate, 24000).astype("<i2").tobytes())


def session(**over: object) -> dict[str, object]:
    return {
        "type": "session.update",
        "session": {
            "modalities": ["text", "audio"],
            "turn_detection": {"type": "server_vad"},
            "input_audio_transcription": {"model": "whisper-1"},
            **over,
        },
    }


def transcripts(events: list[Any]) -> list[str]:
    return [str(e.transcript) for e in events if e.type == COMPLETED]


def check_transcription_order(events: list[Any]) -> None:
    """Per user item: committed, then one delta, then completed with the same text (research §3.3/§3.8)."""
    kinds = [e.type for e in events]
    committed = [e.item_id for e in events if e.type == "input_audio_buffer.committed"]
    assert [e.item_id for e in events if e.type == COMPLETED] == committed
    for item_id in committed:
        mine = [(i, e) for i, e in enumerate(events) if getattr(e, "item_id", None) == item_id]
        order = [e.type for _, e in mine if e.type in ("input_audio_buffer.committed", DELTA, COMPLETED)]
        assert order == ["input_audio_buffer.committed", DELTA, COMPLETED], kinds
        delta, completed = (e for _, e in mine if e.type in (DELTA, COMPLETED))
        assert (delta.content_index, completed.content_index) == (0, 0)
        assert delta.delta == completed.transcript


async def test_weather_at_24k_is_recognised_and_answered_from_the_transcript() -> None:
    async with simulator(recognizer="pocketsphinx") as sim, sdk(sim) as conn:
        await conn.send(session())
        await send_audio(conn, weather_24k(), chunk=960)  # 20 ms appends, unpaced
        events: list[Any] = await collect(conn, until=is_type("response.done"))
    (text,) = transcripts(events)
    assert "weather" in text and "seattle" in text, text
    assert not text.startswith("utterance")
    check_transcription_order(events)
    # The response waited for the transcript and answers it; its event shape is unchanged.
    answer = next(e for e in events if e.type == "response.audio_transcript.done")
    assert answer.transcript == f"You said: {text}"
    assert "response.done" in shape(e.type for e in events)
    assert sim.connections[0].sent[-1]["response"]["status"] == "completed"


async def test_three_caller_turns_at_16k_give_three_real_transcripts() -> None:
    raw, rate = wav_pcm("caller_3turns_16k.wav")
    async with simulator(recognizer="pocketsphinx") as sim, sdk(sim) as conn:
        await conn.send(session(input_audio_sampling_rate=rate))
        await send_audio(conn, raw, chunk=rate * 2 // 50)
        events: list[Any] = await collect(conn, until=is_type("response.done"), count=3)
    texts = transcripts(events)
    assert len(texts) == 3, texts
    for text, words in zip(texts, [("weather", "seattle"), ("table", "seven"), ("thanks",)], strict=True):
        assert all(w in text for w in words), texts
    assert not any(t.startswith("utterance") for t in texts)
    check_transcription_order(events)
    started = [e.audio_start_ms for e in events if e.type == "input_audio_buffer.speech_started"]
    assert len(started) == 3  # VAD turns are as with the placeholder
    assert sim.recognizer is not None


async def test_g711_ulaw_manual_commit_is_recognised_and_keyword_tool_fires() -> None:
    raw = wav_data_chunk("support_8k_mulaw.wav")
    tool = {
        "type": "function",
        "name": "report_internet",
        "description": "Report an internet problem.",
        "parameters": {"type": "object", "properties": {"when": {"type": "string"}}},
    }
    rule = ToolRule(mode=ToolRuleMode.KEYWORD, keywords={"report_internet": ("internet",)})
    async with simulator(recognizer="pocketsphinx", tool_rule=rule) as sim, sdk(sim) as conn:
        await conn.send(session(input_audio_format="g711_ulaw", turn_detection=None, tools=[tool]))
        await send_audio(conn, raw, chunk=160)
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        events: list[Any] = await collect(conn, until=is_type("response.done"))
    (text,) = transcripts(events)
    assert "internet" in text and "evening" in text, text
    check_transcription_order(events)
    # The keyword rule saw the real transcript, although the response was requested before it existed.
    calls = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [c.name for c in calls] == ["report_internet"]
    assert sim.connections[0].session["input_audio_format"] == "g711_ulaw"


class _Failing:
    """A recogniser that fails every utterance, once the test lets it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def start(self) -> None:
        return None

    async def transcribe(self, samples: Samples, *, rate: int) -> str:
        self.calls += 1
        await self.release.wait()
        raise RuntimeError("decoder exploded")

    async def aclose(self) -> None:
        self.release.set()


async def test_a_failing_recogniser_sends_failed_and_the_response_still_completes() -> None:
    failing = _Failing()
    async with simulator(recognizer=failing) as sim, sdk(sim) as conn:
        await conn.send(session())
        await send_audio(conn, weather_24k(), chunk=960)
        head = await collect(conn, until=is_type("response.created"))
        failing.release.set()  # the response is created before the transcription ends, and waits for it
        tail = await collect(conn, until=is_type("response.done"))
    events: list[Any] = head + tail
    kinds = [e.type for e in events]
    assert COMPLETED not in kinds and DELTA not in kinds
    (failed,) = [e for e in events if e.type == FAILED]
    committed = next(e for e in events if e.type == "input_audio_buffer.committed")
    assert failed.item_id == committed.item_id and failed.error.message == "decoder exploded"
    assert kinds.index(FAILED) < kinds.index("response.output_item.added")
    assert failing.calls == 1 and sim.connections[0].sent[-1]["response"]["status"] == "completed"


def test_input_tape_keeps_absolute_positions() -> None:
    tape = InputTape()
    tape.append(np.arange(10, dtype=np.int16))
    tape.append(np.arange(10, 20, dtype=np.int16))
    tape.trim(5)
    assert (tape.start, tape.end, len(tape)) == (15, 20, 5)
    tape.append(np.arange(20, 30, dtype=np.int16))
    assert tape.cut(18).tolist() == list(range(18, 30))
    assert (tape.start, tape.end) == (30, 30)
    tape.skip(5)
    tape.append(np.arange(35, 40, dtype=np.int16))
    assert tape.cut(0).tolist() == list(range(35, 40))


async def test_pocketsphinx_transcript_does_not_depend_on_what_the_decoder_heard_before() -> None:
    raw, rate = wav_pcm("caller_3turns_16k.wav")
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    first, last = samples[: rate * 7 // 2], samples[rate * 117 // 10 : rate * 29 // 2]
    recognizer = PocketsphinxRecognizer()
    await recognizer.start()
    try:
        alone = await recognizer.transcribe(last, rate=rate)
        await recognizer.transcribe(first, rate=rate)
        after_other = await recognizer.transcribe(last, rate=rate)
    finally:
        await recognizer.aclose()
    assert alone == after_other and "thanks" in alone
    assert recognizer.utterances == 3
