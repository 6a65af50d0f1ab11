"""The simulator's handshake, injected faults, connect-rate limit and sink mode, seen through the real SDK."""

from __future__ import annotations

import aiohttp
import pytest
from azure.ai.voicelive.aio import ConnectionError as VoiceLiveConnectionError
from azure.ai.voicelive.models import InputTextContentPart, ServerEventError, UserMessageItem
from voicelive_helpers import KEY, collect, is_type, sdk, send_audio, simulator

from devstack.voicelive import (
    CloseAfter,
    CloseKind,
    ErrorEvent,
    HoldResponse,
    Mode,
    Refuse,
    ResponseTiming,
    VoiceLiveSimulator,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

SILENCE_20MS = bytes(960)  # 24 kHz pcm16


async def _refused(sim: VoiceLiveSimulator, **kwargs: object) -> aiohttp.WSServerHandshakeError:
    with pytest.raises(VoiceLiveConnectionError) as info:
        async with sdk(sim, **kwargs):
            pass
    cause = info.value.__cause__
    assert isinstance(cause, aiohttp.WSServerHandshakeError)
    return cause


async def test_handshake_records_query_headers_and_auth_variants() -> None:
    async with simulator(bearer_tokens=("tok",)) as sim:
        async with sdk(sim, query={"extra": "1"}) as conn:
            await collect(conn, until=is_type("session.created"))
        record = sim.connections[0]
        assert record.path == "/voice-live/realtime" and record.handshake_status == 101
        assert record.query["api-version"] == "2026-07-15" and record.query["extra"] == "1"
        assert (
            record.headers["api-key"] == KEY and "azsdk-python-ai-voicelive" in record.headers["User-Agent"]
        )
        async with sdk(sim, headers={"Authorization": "Bearer tok", "api-key": ""}) as conn:
            pass
        assert (await _refused(sim, credential=_key("wrong"))).status == 401
        assert (await _refused(sim, model=None)).status == 400
    assert [r.handshake_status for r in sim.connections] == [101, 101, 401, 400]
    assert sim.connections[1].key == "entra"


def _key(value: str) -> object:
    from azure.core.credentials import AzureKeyCredential

    return AzureKeyCredential(value)


@pytest.mark.parametrize(("status", "retry_after"), [(429, 7), (401, None), (500, None)])
async def test_refuse_fault(status: int, retry_after: int | None) -> None:
    async with simulator() as sim:
        sim.faults.next(Refuse(status=status, retry_after_s=retry_after))
        cause = await _refused(sim)
        assert cause.status == status
        assert (cause.headers or {}).get("Retry-After") == (None if retry_after is None else str(retry_after))
        async with sdk(sim) as conn:  # only the next attempt was refused
            await collect(conn, until=is_type("session.created"))


async def test_fault_from_query_parameter() -> None:
    async with simulator() as sim:
        cause = await _refused(sim, query={"fault": "refuse:429:retry_after=3"})
        assert cause.status == 429 and cause.headers is not None and cause.headers["Retry-After"] == "3"


@pytest.mark.parametrize(
    ("kind", "code"), [(CloseKind.NORMAL, 1000), (CloseKind.ERROR, 1011), (CloseKind.DROP, 1006)]
)
async def test_close_after_appends(kind: CloseKind, code: int) -> None:
    async with simulator() as sim:
        sim.faults.next(CloseAfter(kind=kind, appends=5))
        async with sdk(sim) as conn:
            await send_audio(conn, SILENCE_20MS * 5, chunk=960)
            events = await collect(conn, until=lambda e: False)  # `async for` ends silently on any close
            server_code = (
                conn._connection.close_code
            )  # only the private attribute has the code (research §1.8)
        record = sim.connections[0]
        await record.closed.wait()
    assert [e.type for e in events] == ["session.created"]
    assert record.close_code == code and record.append_count == 5
    if kind is CloseKind.ERROR:
        assert server_code == 1011


async def test_close_after_ms() -> None:
    async with simulator() as sim:
        sim.faults.next(CloseAfter(kind=CloseKind.ERROR, ms=50))
        async with sdk(sim) as conn:
            events = await collect(conn, until=lambda e: False)
    assert [e.type for e in events] == ["session.created"] and sim.connections[0].close_code == 1011


async def test_error_event_after_appends_then_close() -> None:
    async with simulator() as sim:
        sim.faults.next(ErrorEvent(code="rate_limit_exceeded", after_appends=3, close=CloseKind.ERROR))
        async with sdk(sim) as conn:
            await send_audio(conn, SILENCE_20MS * 10, chunk=960)
            events = await collect(conn, until=lambda e: False)
    error = events[-1]
    assert isinstance(error, ServerEventError) and error.error.code == "rate_limit_exceeded"
    assert error.error.type == "invalid_request_error"
    assert sim.connections[0].close_code == 1011


async def test_server_error_replaces_the_next_response() -> None:
    async with simulator() as sim:
        sim.faults.next(ErrorEvent(code="server_error"))
        async with sdk(sim) as conn:
            await conn.conversation.item.create(
                item=UserMessageItem(content=[InputTextContentPart(text="hi")])
            )
            await conn.send({"type": "response.create", "event_id": "r1"})
            first = await collect(conn, until=is_type("error"))
            await conn.response.create()
            second = await collect(conn, until=is_type("response.done"))
    assert first[-1].error.type == "server_error" and first[-1].error.event_id == "r1"
    assert "response.created" not in [e.type for e in first]
    assert second[-1].response.status == "completed"


async def test_response_done_delayed() -> None:
    async with simulator(
        mode=Mode.NORMAL, timing=ResponseTiming(first_output_delay_ms=0, pace=1000.0)
    ) as sim:
        sim.faults.next(HoldResponse(delay_ms=50))
        async with sdk(sim) as conn:
            await conn.conversation.item.create(
                item=UserMessageItem(content=[InputTextContentPart(text="hi")])
            )
            await conn.response.create()
            events = await collect(conn, until=is_type("response.done"))
    assert events[-1].response.status == "completed"


async def test_connects_per_minute_limit_uses_injected_clock() -> None:
    now = [1000.0]
    async with simulator(connects_per_minute=2, clock=lambda: now[0]) as sim:
        for _ in range(2):
            async with sdk(sim):
                pass
        cause = await _refused(sim)
        assert cause.status == 429 and cause.headers is not None and cause.headers["Retry-After"] == "60"
        now[0] += 61.0
        async with sdk(sim):
            pass
    assert [r.handshake_status for r in sim.connections] == [101, 101, 429, 101]


async def test_aclose_ends_open_sessions() -> None:
    async with simulator() as sim, sdk(sim) as conn:
        await collect(conn, until=is_type("session.created"))
        await sim.aclose()
        assert await collect(conn, until=lambda e: False) == []
        assert sim.connections[0].close_code == 1001


async def test_sink_mode_timestamps_appends_and_answers_session_update() -> None:
    async with simulator(mode=Mode.SINK) as sim, sdk(sim) as conn:
        await conn.session.update(session={"modalities": ["text"]})
        await send_audio(conn, SILENCE_20MS * 50, chunk=960)
        await conn.response.create()
        record = (await sim.wait_for_connections(1))[0]
        await record.wait_until(lambda r: r.append_count == 50)
        events = await collect(conn, until=is_type("session.updated"))
    assert [e.type for e in events] == ["session.created", "session.updated"]
    assert record.bytes_received == 50 * 960 and list(record.append_times) == sorted(record.append_times)
    assert record.sent_types() == ["session.created", "session.updated"]
