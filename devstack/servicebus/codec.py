"""AMQP 1.0 message bytes at section level: split, read fields, re-stamp annotations, unpack batches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proton import Data, Described, symbol, timestamp, ulong

from .queues import StoredMessage

__all__ = [
    "MessageInfo",
    "Section",
    "build_delivery",
    "normalize",
    "read_info",
    "render",
    "split_sections",
    "unpack_batch",
]

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
FOOTER = 0x78
_MESSAGE_SECTION_CODES = range(HEADER, FOOTER + 1)


@dataclass(frozen=True)
class Section:
    code: int
    raw: bytes


@dataclass(frozen=True, kw_only=True)
class MessageInfo:
    """What the broker needs from a message a client sent."""

    message_id: str | None
    ttl_s: float | None
    scheduled_enqueue_s: float | None


def normalize(value: Any) -> Any:
    """Turn proton's decoded values into re-encodable ones (memoryview → bytes, recursively)."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return type(value)({normalize(k): normalize(v) for k, v in value.items()})
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def split_sections(raw: bytes) -> list[Section]:
    """Split an encoded message into its described sections; raises ValueError if it is not one."""
    sections: list[Section] = []
    view = memoryview(raw)
    offset = 0
    while offset < len(view):
        data = Data()
        try:
            consumed = data.decode(bytes(view[offset:]))
        except Exception as exc:  # proton raises DataException subclasses from cffi
            raise ValueError(f"undecodable AMQP value at offset {offset}") from exc
        data.rewind()
        if consumed <= 0 or not data.next() or not data.is_described():
            raise ValueError(f"no described section at offset {offset}")
        data.enter()
        data.next()
        code = data.get_object()
        if not isinstance(code, int) or code not in _MESSAGE_SECTION_CODES:
            raise ValueError(f"unknown section descriptor {code!r}")
        sections.append(Section(code, bytes(view[offset : offset + consumed])))
        offset += consumed
    return sections


def _section_value(section: Section) -> Any:
    data = Data()
    data.decode(section.raw)
    data.rewind()
    data.next()
    data.enter()
    data.next()
    data.next()
    return normalize(data.get_object())


def _encode_section(code: int, value: Any) -> bytes:
    data = Data()
    data.put_object(Described(ulong(code), value))
    return bytes(data.encode())


def _header_fields(sections: list[Section]) -> list[Any]:
    for section in sections:
        if section.code == HEADER:
            fields = list(_section_value(section) or [])
            return fields + [None] * (5 - len(fields))
    return [None] * 5


def read_info(raw: bytes) -> MessageInfo:
    sections = split_sections(raw)
    ttl_ms = _header_fields(sections)[2]
    message_id: str | None = None
    scheduled: float | None = None
    for section in sections:
        if section.code == PROPERTIES:
            fields = _section_value(section) or []
            if fields and fields[0] is not None:
                message_id = str(fields[0])
        elif section.code == MESSAGE_ANNOTATIONS:
            annotations = _section_value(section) or {}
            value = annotations.get(symbol("x-opt-scheduled-enqueue-time"))
            if isinstance(value, int):
                scheduled = value / 1000.0
    return MessageInfo(
        message_id=message_id,
        ttl_s=None if not ttl_ms else ttl_ms / 1000.0,
        scheduled_enqueue_s=scheduled,
    )


def _header_section(fields: list[Any], delivery_count: int) -> bytes:
    # Written by hand so delivery-count 0 is sent explicitly (proton drops trailing defaults, SDK reads None).
    data = Data()
    data.put_described()
    data.enter()
    data.put_ulong(HEADER)
    data.put_list()
    data.enter()
    data.put_bool(bool(fields[0]))
    data.put_ubyte(4 if fields[1] is None else int(fields[1]))
    if fields[2] is None:
        data.put_null()
    else:
        data.put_uint(int(fields[2]))
    data.put_bool(bool(fields[3]))
    data.put_uint(delivery_count)
    data.exit()
    data.exit()
    return bytes(data.encode())


def build_delivery(
    raw: bytes,
    *,
    delivery_count: int,
    annotations: Mapping[str, Any],
    application_properties: Mapping[str, Any] | None = None,
) -> bytes:
    """Re-stamp a stored message for delivery: header delivery-count, merged message annotations and
    (for dead-lettered messages) extra application properties. Bodies are copied byte for byte."""
    sections = split_sections(raw)
    merged_annotations: dict[Any, Any] = {}
    merged_properties: dict[Any, Any] = {}
    rest: list[Section] = []
    for section in sections:
        if section.code == MESSAGE_ANNOTATIONS:
            merged_annotations.update(_section_value(section) or {})
        elif section.code == APPLICATION_PROPERTIES:
            merged_properties.update(_section_value(section) or {})
        elif section.code != HEADER:
            rest.append(section)
    merged_annotations.update({symbol(k): v for k, v in annotations.items()})
    parts = [_header_section(_header_fields(sections), delivery_count)]
    parts += [s.raw for s in rest if s.code == DELIVERY_ANNOTATIONS]
    parts.append(_encode_section(MESSAGE_ANNOTATIONS, merged_annotations))
    parts += [s.raw for s in rest if s.code == PROPERTIES]
    if application_properties:
        merged_properties.update(application_properties)
    if merged_properties:
        parts.append(_encode_section(APPLICATION_PROPERTIES, merged_properties))
    parts += [s.raw for s in rest if s.code > APPLICATION_PROPERTIES]
    return b"".join(parts)


def unpack_batch(raw: bytes) -> list[bytes] | None:
    """Inner messages of a batch transfer (format 0x80013700: one data section per encoded message),
    or None for an ordinary message. proton does not expose the message format, so this sniffs:
    a transfer is a batch when every data section is itself a complete AMQP message with a body."""
    sections = split_sections(raw)
    bodies = [bytes(_section_value(s)) for s in sections if s.code == DATA]
    if not bodies:
        return None
    for body in bodies:
        try:
            inner = split_sections(body)
        except ValueError:
            return None
        if not any(s.code >= DATA for s in inner):
            return None
    return bodies


def annotation_time(seconds: float) -> timestamp:
    """An AMQP timestamp (ms since the epoch) from epoch seconds."""
    return timestamp(int(seconds * 1000))


def render(message: StoredMessage) -> bytes:
    """The bytes the broker sends for a stored message: the sender's message plus broker annotations."""
    annotations: dict[str, Any] = {
        "x-opt-sequence-number": message.sequence_number,
        "x-opt-enqueued-time": annotation_time(message.enqueued_at),
    }
    if message.locked_until is not None:
        annotations["x-opt-locked-until"] = annotation_time(message.locked_until)
    if message.scheduled_at is not None:
        annotations["x-opt-scheduled-enqueue-time"] = annotation_time(message.scheduled_at)
    if message.dead_letter_source is not None:
        annotations["x-opt-deadletter-source"] = message.dead_letter_source
    properties: dict[str, Any] = {}
    if message.dead_letter_reason is not None:
        properties["DeadLetterReason"] = message.dead_letter_reason
    if message.dead_letter_description is not None:
        properties["DeadLetterErrorDescription"] = message.dead_letter_description
    return build_delivery(
        message.raw,
        delivery_count=message.delivery_count,
        annotations=annotations,
        application_properties=properties,
    )
