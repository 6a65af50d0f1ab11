"""Sink mode: a connection that only timestamps appends and answers `session.update` (hundreds per core)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from ._ids import new_id
from .audio import b64_decoded_len
from .faults import CloseAfter
from .records import ConnectionRecord

__all__ = ["serve_sink"]

# The SDK serialises appends as {"audio":"<b64>","type":"input_audio_buffer.append"} (research §1.6): find the
# payload by position and never parse or decode it.
_APPEND_PREFIX = '{"audio":"'


async def serve_sink(
    ws: web.WebSocketResponse,
    record: ConnectionRecord,
    *,
    session: dict[str, Any],
    clock: Callable[[], float],
    close: Callable[[CloseAfter], Any],
) -> None:
    """Serve until the socket closes; `close` is awaited on the N-th append for `CloseAfter(appends=N)`."""
    times, sizes = record.append_times, record.append_bytes
    limits = [f for f in record.faults if isinstance(f, CloseAfter) and f.appends is not None]
    close_at = min((f.appends or 0) for f in limits) if limits else -1
    await _send(ws, record, {"type": "session.created", "session": session})
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            continue
        data: str = msg.data
        if data.startswith(_APPEND_PREFIX):
            times.append(clock())
            sizes.append(b64_decoded_len(data[len(_APPEND_PREFIX) : data.find('"', len(_APPEND_PREFIX))]))
        else:
            await _other(ws, record, data, session, clock)
        record.watch.changed()
        if len(times) == close_at:
            await close(limits[0])


async def _other(
    ws: web.WebSocketResponse,
    record: ConnectionRecord,
    data: str,
    session: dict[str, Any],
    clock: Callable[[], float],
) -> None:
    try:
        event = json.loads(data)
    except json.JSONDecodeError:
        return
    kind = event.get("type") if isinstance(event, dict) else None
    record.received.append(str(kind))
    if kind == "input_audio_buffer.append":  # another client's key order
        audio = event.get("audio") or ""
        record.append_times.append(clock())
        record.append_bytes.append(b64_decoded_len(audio) if isinstance(audio, str) else 0)
    elif kind == "session.update" and isinstance(event.get("session"), dict):
        session.update({k: v for k, v in event["session"].items() if k not in ("id", "model", "object")})
        record.session = session
        await _send(ws, record, {"type": "session.updated", "session": session})


async def _send(ws: web.WebSocketResponse, record: ConnectionRecord, event: dict[str, Any]) -> None:
    record.sent.append({"type": event["type"]})
    if not ws.closed:
        await ws.send_str(json.dumps({"event_id": new_id("event"), **event}))
