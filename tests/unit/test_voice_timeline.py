"""Timeline renderings (WebVTT, tool_calls.jsonl), the manual-turn segmenter and error classification."""

from __future__ import annotations

import json

import aiohttp
import numpy as np
import pytest
from azure.ai.voicelive.aio import ConnectionError as SdkConnectionError
from multidict import CIMultiDict

from worker.errors import Throttled, Transient, VoiceLiveRejected
from worker.voice.connection import translate_error
from worker.voice.timeline import (
    AssistantResponse,
    Timeline,
    ToolCallRecord,
    UserTurn,
    to_vtt,
    tool_calls_jsonl,
)
from worker.voice.turns import EnergySegmenter
from worker.voice.wire import classify_error_event


def test_vtt_orders_cues_and_escapes_text() -> None:
    timeline = Timeline(
        user_turns=[UserTurn(index=1, start_ms=500, end_ms=3050, transcript="a <b> --> c")],
        responses=[
            AssistantResponse(
                index=1, response_id="r", start_ms=3600, audio_ms=1200, transcript="Hi\n\nthere"
            )
        ],
    )
    vtt = to_vtt(timeline)
    assert vtt.startswith("WEBVTT\n\n1\n00:00:00.500 --> 00:00:03.050\n<v User>a &lt;b&gt; -&gt; c\n")
    assert "2\n00:00:03.600 --> 00:00:04.800\n<v Assistant>Hi there\n" in vtt


def test_tool_calls_jsonl_one_object_per_line() -> None:
    calls = [
        ToolCallRecord(call_id=f"c{i}", name="get_time", arguments="{}", result={"i": i}) for i in range(2)
    ]
    lines = tool_calls_jsonl(Timeline(tool_calls=calls)).decode().splitlines()
    assert [json.loads(line)["result"] for line in lines] == [{"i": 0}, {"i": 1}]


def test_segmenter_finds_utterances_and_ignores_clicks() -> None:
    seg = EnergySegmenter(sample_rate=16000, silence_ms=600)
    loud = (8000 * np.sin(np.arange(320) * 0.17)).astype("<i2").tobytes()
    quiet = bytes(640)
    script = [quiet] * 10 + [loud] * 50 + [quiet] * 40 + [loud] * 2 + [quiet] * 40  # 20 ms frames
    found = [u for frame in script if (u := seg.push(frame)) is not None]
    assert [(u.start_ms, u.end_ms) for u in found] == [(200, 1200)]
    assert seg.flush() is None


@pytest.mark.parametrize(
    ("error", "configuring", "expected"),
    [
        ({"type": "invalid_request_error", "code": "rate_limit_exceeded"}, False, Throttled),
        ({"type": "invalid_request_error", "code": "conversation_already_has_active_response"}, False, None),
        ({"type": "invalid_request_error", "param": "session.voice"}, True, VoiceLiveRejected),
        ({"type": "invalid_request_error", "event_id": "vlw_config_seed_0"}, False, VoiceLiveRejected),
        ({"type": "invalid_request_error", "code": "x"}, False, Transient),
        ({"type": "server_error"}, True, Transient),
    ],
)
def test_error_events_are_classified(error: dict[str, str], configuring: bool, expected: type | None) -> None:
    outcome = classify_error_event(error, configuring=configuring)
    assert (type(outcome) if outcome else None) is expected


def _handshake(status: int, **headers: str) -> SdkConnectionError:
    err = SdkConnectionError("Failed to establish WebSocket connection")
    cause = aiohttp.WSServerHandshakeError(None, (), status=status, headers=CIMultiDict(headers))  # type: ignore[arg-type]
    err.__cause__ = cause
    return err


def test_handshake_errors_map_to_the_taxonomy() -> None:
    throttled = translate_error(_handshake(429, **{"Retry-After": "7"}))
    assert isinstance(throttled, Throttled) and throttled.retry_after_s == 7
    auth = translate_error(_handshake(401))
    assert type(auth) is Transient and "VOICELIVE_API_KEY" in auth.detail
    assert isinstance(translate_error(_handshake(404)), VoiceLiveRejected)
    assert type(translate_error(_handshake(503))) is Transient
    assert type(translate_error(SdkConnectionError("refused"))) is Transient
