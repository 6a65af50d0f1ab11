"""The `<entity>/$management` node: renew-lock, update-disposition, peek, schedule, deferred receive."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from proton import UNDESCRIBED, Array, Data, Message, int32, symbol

from .codec import annotation_time, read_info, render
from .faults import Faults
from .queues import LockLost, MessageNotFound, QueueStore, ReceiveMode

__all__ = ["ManagementNode", "Reply"]

_log = logging.getLogger(__name__)
_VENDOR = "com.microsoft:"
LOCK_LOST = "com.microsoft:message-lock-lost"
SERVER_BUSY = "com.microsoft:server-busy"


@dataclass(frozen=True, kw_only=True)
class Reply:
    """A management response: HTTP-like status, optional error condition (the SDK maps errors by it)."""

    status: int
    description: str
    body: Any = None
    condition: str | None = None

    def to_message(self, correlation_id: object) -> Message:
        properties: dict[str, Any] = {"statusCode": int32(self.status), "statusDescription": self.description}
        if self.condition is not None:
            properties["errorCondition"] = symbol(self.condition)
        return Message(body=self.body, correlation_id=correlation_id, properties=properties)


_OK = Reply(status=200, description="OK")


def _items(value: Any) -> list[Any]:
    """Elements of an AMQP array or list as proton decoded it."""
    if value is None:
        return []
    if isinstance(value, Array):
        return list(value.elements)
    return list(value)


def _array(type_code: int, values: Iterable[Any]) -> Array:
    return Array(cast(Any, UNDESCRIBED), type_code, *values)


class ManagementNode:
    """Answers management requests against a `QueueStore`. Runs on the broker's reactor thread."""

    def __init__(self, *, store: QueueStore, faults: Faults) -> None:
        self._store = store
        self._faults = faults
        self._operations: dict[str, Callable[[str, dict[str, Any]], Reply]] = {
            "renew-lock": self._renew_lock,
            "update-disposition": self._update_disposition,
            "peek-message": self._peek,
            "schedule-message": self._schedule,
            "cancel-scheduled-message": self._cancel_scheduled,
            "receive-by-sequence-number": self._receive_deferred,
        }

    def handle(self, entity: str, request: Message) -> Reply:
        properties: dict[Any, Any] = dict(request.properties or {})
        operation = str(properties.get("operation", ""))
        handler = self._operations.get(operation.removeprefix(_VENDOR))
        if handler is None:
            return Reply(
                status=501,
                description=f"unsupported operation {operation!r}",
                condition="amqp:not-implemented",
            )
        if self._faults.take_server_busy():
            return Reply(status=503, description="server busy (injected)", condition=SERVER_BUSY)
        body = request.body if isinstance(request.body, dict) else {}
        try:
            return handler(entity, {str(k): v for k, v in body.items()})
        except LockLost as exc:
            return Reply(status=410, description=str(exc), condition=LOCK_LOST)
        except MessageNotFound as exc:
            return Reply(status=404, description=str(exc), condition="com.microsoft:message-not-found")
        except (KeyError, TypeError, ValueError) as exc:
            _log.warning("bad %s request on %s: %s", operation, entity, exc)
            return Reply(status=400, description=f"bad request: {exc}", condition="amqp:invalid-field")

    def _lose_lock_if_injected(self, tokens: list[uuid.UUID]) -> None:
        if tokens and self._faults.take_lock_loss():
            self._store.lose_lock(tokens[0])

    def _renew_lock(self, entity: str, body: dict[str, Any]) -> Reply:
        tokens = [uuid.UUID(str(t)) for t in _items(body["lock-tokens"])]
        self._lose_lock_if_injected(tokens)
        expirations = [annotation_time(self._store.renew(t)) for t in tokens]
        return Reply(status=200, description="OK", body={"expirations": _array(Data.TIMESTAMP, expirations)})

    def _update_disposition(self, entity: str, body: dict[str, Any]) -> Reply:
        tokens = [uuid.UUID(str(t)) for t in _items(body["lock-tokens"])]
        status = str(body["disposition-status"])
        self._lose_lock_if_injected(tokens)
        for token in tokens:
            if status == "completed":
                self._store.complete(token)
            elif status == "abandoned":
                self._store.abandon(token)
            elif status == "defered":  # sic: the SDK's spelling
                self._store.defer(token)
            elif status == "suspended":
                self._store.dead_letter(
                    token,
                    reason=_optional_str(body.get("deadletter-reason")),
                    description=_optional_str(body.get("deadletter-description")),
                )
            else:
                raise ValueError(f"unknown disposition-status {status!r}")
        return _OK

    def _peek(self, entity: str, body: dict[str, Any]) -> Reply:
        found = self._store.peek(entity, int(body["from-sequence-number"]), int(body["message-count"]))
        if not found:
            return Reply(status=204, description="No messages")
        return Reply(status=200, description="OK", body={"messages": [{"message": render(m)} for m in found]})

    def _schedule(self, entity: str, body: dict[str, Any]) -> Reply:
        numbers: list[int] = []
        for item in _items(body["messages"]):
            raw = bytes(item["message"])
            info = read_info(raw)
            numbers.append(
                self._store.enqueue(
                    entity,
                    raw,
                    message_id=info.message_id,
                    scheduled_at=info.scheduled_enqueue_s,
                    ttl_s=info.ttl_s,
                )
            )
        return Reply(status=200, description="OK", body={"sequence-numbers": _array(Data.LONG, numbers)})

    def _cancel_scheduled(self, entity: str, body: dict[str, Any]) -> Reply:
        self._store.cancel_scheduled(entity, [int(n) for n in _items(body["sequence-numbers"])])
        return _OK

    def _receive_deferred(self, entity: str, body: dict[str, Any]) -> Reply:
        numbers = [int(n) for n in _items(body["sequence-numbers"])]
        # receiver-settle-mode is the AMQP rcv-settle-mode of the receiver: 0 = first (receive-and-delete).
        mode = (
            ReceiveMode.RECEIVE_AND_DELETE
            if int(body.get("receiver-settle-mode", 1)) == 0
            else ReceiveMode.PEEK_LOCK
        )
        taken = self._store.receive_deferred(entity, numbers, mode)
        messages: list[dict[str, Any]] = []
        for message in taken:
            item: dict[str, Any] = {"message": render(message)}
            if message.lock_token is not None:
                item["lock-token"] = message.lock_token
            messages.append(item)
        return Reply(status=200, description="OK", body={"messages": messages})


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)
