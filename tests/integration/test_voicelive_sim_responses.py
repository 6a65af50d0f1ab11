"""Conformance of the simulator's responses (real SDK): tool round trips, cancel, barge-in, truncate."""

from __future__ import annotations

import json

import jsonschema
import pytest
from azure.ai.voicelive.models import (
    FunctionCallOutputItem,
    InputTextContentPart,
    ResponseFunctionCallItem,
    ServerEventResponseDone,
    ServerEventResponseFunctionCallArgumentsDone,
    UserMessageItem,
)
from voicelive_helpers import collect, is_type, sdk, send_audio, shape, simulator, trace_server_types, wav_pcm

from devstack.voicelive import HoldResponse, Mode, ResponseTiming, ToolRule, ToolRuleMode

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Look up the weather for a city.",
    "parameters": {
        "additionalProperties": False,
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "type": "object",
    },
}
BOOKING = {
    "type": "function",
    "name": "book_table",
    "parameters": {
        "type": "object",
        "properties": {
            "people": {"type": "integer", "minimum": 1},
            "time": {"type": "string", "format": "date-time"},
            "area": {"enum": ["indoor", "outdoor"]},
            "notes": {"type": "string"},
        },
        "required": ["people", "time", "area"],
    },
}


def _ask(text: str) -> UserMessageItem:
    return UserMessageItem(content=[InputTextContentPart(text=text)])


async def test_tool_round_trip_matches_trace_and_uses_the_output() -> None:
    async with simulator() as sim, sdk(sim) as conn:
        await conn.send(
            {
                "type": "session.update",
                "session": {"modalities": ["text"], "tools": [WEATHER], "parallel_tool_calls": False},
            }
        )
        await conn.conversation.item.create(item=_ask("What is the weather in London?"))
        await conn.response.create()
        first = await collect(conn, until=is_type("response.done"))
        call = next(e for e in first if isinstance(e, ServerEventResponseFunctionCallArgumentsDone))
        await conn.conversation.item.create(
            item=FunctionCallOutputItem(call_id=call.call_id, output="Foggy, 12 C")
        )
        await conn.response.create()
        second = await collect(conn, until=is_type("response.done"))
    events = first + second
    assert shape(e.type for e in events) == shape(trace_server_types("test_tool_call_round.jsonl"))
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    added = next(e for e in first if e.type == "response.output_item.added")
    assert isinstance(added.item, ResponseFunctionCallItem) and added.item.call_id == call.call_id
    done = first[-1]
    assert isinstance(done, ServerEventResponseDone) and done.response.output[0].arguments == call.arguments
    output_created = second[0]
    assert (
        output_created.item.type == "function_call_output"
        and output_created.previous_item_id == added.item.id
    )
    answer = second[-1].response.output[0].content[0]
    assert "Foggy, 12 C" in answer["text"]


async def test_parallel_tool_calls_in_one_response() -> None:
    rule = ToolRule(mode=ToolRuleMode.EVERY_TURN, parallel_calls=2)
    async with simulator(tool_rule=rule) as sim, sdk(sim) as conn:
        await conn.send(
            {"type": "session.update", "session": {"modalities": ["text"], "tools": [WEATHER, BOOKING]}}
        )
        await conn.conversation.item.create(item=_ask("weather and a table"))
        await conn.response.create()
        events = await collect(conn, until=is_type("response.done"))
    calls = [e for e in events if isinstance(e, ServerEventResponseFunctionCallArgumentsDone)]
    assert [(c.name, c.output_index) for c in calls] == [("get_weather", 0), ("book_table", 1)]
    jsonschema.validate(json.loads(calls[1].arguments), BOOKING["parameters"])
    assert len(events[-1].response.output) == 2


async def test_keyword_rule_calls_only_matching_tool() -> None:
    rule = ToolRule(mode=ToolRuleMode.KEYWORD, keywords={"book_table": ("reservation",)})
    async with simulator(tool_rule=rule) as sim, sdk(sim) as conn:
        await conn.send(
            {"type": "session.update", "session": {"modalities": ["text"], "tools": [WEATHER, BOOKING]}}
        )
        await conn.conversation.item.create(item=_ask("I want a reservation"))
        await conn.response.create()
        events = await collect(conn, until=is_type("response.done"))
    assert [e.name for e in events if isinstance(e, ServerEventResponseFunctionCallArgumentsDone)] == [
        "book_table"
    ]


async def test_response_cancel_mid_stream_and_when_idle() -> None:
    async with simulator(mode=Mode.ZERO_LATENCY) as sim:
        sim.faults.next(HoldResponse(after_audio_deltas=2))  # taken by the next handshake
        async with sdk(sim) as conn:
            await conn.session.update(session={"modalities": ["audio", "text"]})
            await conn.conversation.item.create(item=_ask("talk"))
            await conn.response.create()
            await collect(conn, until=is_type("response.audio.delta"), count=2)
            await conn.response.cancel()
            events = await collect(conn, until=is_type("response.done"))
            await conn.send({"type": "response.cancel", "event_id": "late"})
            late = await collect(conn, until=is_type("error"))
    assert shape(e.type for e in events) == [
        "response.audio.done",
        "response.audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    done = events[-1].response
    assert done.status == "cancelled" and done.status_details.reason == "client_cancelled"
    assert done.output[0].status == "incomplete"
    assert late[-1].error.code == "response_cancel_not_active" and late[-1].error.event_id == "late"


async def test_barge_in_cancels_with_turn_detected_then_truncate() -> None:
    raw, rate = wav_pcm("caller_3turns_16k.wav")
    async with simulator(
        mode=Mode.NORMAL, timing=ResponseTiming(first_output_delay_ms=0, pace=1000.0)
    ) as sim:
        sim.faults.always(HoldResponse())  # every response stalls before response.done until cancelled
        async with sdk(sim) as conn:
            await conn.send(
                {
                    "type": "session.update",
                    "session": {
                        "modalities": ["audio", "text"],
                        "input_audio_sampling_rate": rate,
                        "turn_detection": {"type": "server_vad", "interrupt_response": True},
                    },
                }
            )
            await send_audio(conn, raw[: 5 * rate * 2], chunk=640)
            first = await collect(conn, until=is_type("response.output_item.done"))
            await send_audio(conn, raw[5 * rate * 2 : 7 * rate * 2], chunk=640)
            events = await collect(conn, until=is_type("response.done"))
            item = first[-1].item
            await conn.conversation.item.truncate(item_id=item.id, audio_end_ms=300, content_index=0)
            await conn.conversation.item.truncate(item_id=item.id, audio_end_ms=99_000, content_index=0)
            after = await collect(conn, until=is_type("error"))
    assert [e.type for e in events] == ["input_audio_buffer.speech_started", "response.done"]
    assert events[0].audio_start_ms == pytest.approx(6050, abs=100)
    assert (
        events[1].response.status == "cancelled"
        and events[1].response.status_details.reason == "turn_detected"
    )
    truncated = next(e for e in after if e.type == "conversation.item.truncated")
    assert (truncated.item_id, truncated.audio_end_ms) == (item.id, 300)
    assert after[-1].error.param == "audio_end_ms"


async def test_response_create_while_active_cancels_previous() -> None:
    async with simulator() as sim:
        sim.faults.next(HoldResponse())
        async with sdk(sim) as conn:
            await conn.session.update(session={"modalities": ["text"]})
            await conn.conversation.item.create(item=_ask("one"))
            await conn.response.create()
            await collect(conn, until=is_type("response.output_item.done"))
            await conn.response.create()
            events = await collect(conn, until=is_type("response.created"))
    done = next(e for e in events if e.type == "response.done")
    assert done.response.status == "cancelled" and events[-1].type == "response.created"
