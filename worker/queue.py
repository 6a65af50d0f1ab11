"""Service Bus at the edge: receive one job message at a time (peek-lock, prefetch 0), renew its lock,
and settle it — complete, dead-letter, abandon, or send a scheduled retry copy and then complete.

Azure exceptions are translated here (`translate_bus_errors`) and nowhere else: `BusUnavailable` (back
off and reconnect), `BusFatal` (auth / missing entity: exit with a clear message) and `LockLost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusReceiveMode
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusError,
    SessionLockLostError,
)

from worker.errors import LockLost

__all__ = [
    "ATTEMPT_PROPERTY",
    "BusFatal",
    "BusUnavailable",
    "JobMessage",
    "QueueConsumer",
    "bus_client",
    "job_message",
    "translate_bus_errors",
]

log = logging.getLogger(__name__)

#: Application property carrying the attempt number across scheduled retry copies.
ATTEMPT_PROPERTY = "attempt"
#: Consecutive throttled retries (they do not burn attempts until there are too many).
THROTTLED_PROPERTY = "throttled"
#: Service Bus limits a dead-letter description; keep ours well inside it.
_MAX_DESCRIPTION = 1024


class BusUnavailable(Exception):
    """Service Bus could not be reached or answered busy: back off and reconnect."""


class BusFatal(Exception):
    """Retrying cannot help (bad credentials, missing queue, no permission): stop with this message."""


@contextlib.contextmanager
def translate_bus_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (MessageLockLostError, SessionLockLostError, MessageAlreadySettled) as exc:
        raise LockLost(f"{what}: the message lock was lost ({type(exc).__name__})") from exc
    except (ServiceBusAuthenticationError, ServiceBusAuthorizationError) as exc:
        raise BusFatal(
            f"{what}: Service Bus refused our credentials ({type(exc).__name__}); check "
            "SERVICEBUS_CONNECTION_STRING, or the identity's Service Bus Data Receiver/Sender roles"
        ) from exc
    except MessagingEntityNotFoundError as exc:
        raise BusFatal(f"{what}: the queue does not exist; check SERVICEBUS_QUEUE") from exc
    except MessageSizeExceededError as exc:
        raise BusFatal(f"{what}: message too large for the queue") from exc
    except ServiceBusError as exc:
        raise BusUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


def bus_client(
    *, connection_string: str | None, namespace: str | None, credential: Any = None, **options: Any
) -> ServiceBusClient:
    """A client by connection string (dev) or namespace FQDN + token credential (managed identity)."""
    if connection_string:
        return ServiceBusClient.from_connection_string(connection_string, **options)
    if not namespace or credential is None:
        raise ValueError("bus_client needs a connection string, or a namespace and a credential")
    return ServiceBusClient(namespace, credential, **options)


@dataclass(frozen=True, slots=True)
class JobMessage:
    """A received job message, decoded once: the SDK object stays inside this module's helpers."""

    raw: ServiceBusReceivedMessage
    body: bytes
    message_id: str | None
    attempt: int
    delivery_count: int
    properties: Mapping[str, str]

    @property
    def sequence_number(self) -> int | None:
        return self.raw.sequence_number


def job_message(raw: ServiceBusReceivedMessage) -> JobMessage:
    """Decode body and properties. Keys arrive as bytes; `delivery_count` may be None (treat as 0)."""
    props: dict[str, str] = {}
    for key, value in (raw.application_properties or {}).items():
        k = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        props[k] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    try:
        attempt = max(1, int(props.get(ATTEMPT_PROPERTY, "1")))
    except ValueError:
        attempt = 1
    try:
        body = b"".join(bytes(part) for part in raw.body)
    except (TypeError, ValueError):  # a value body (AMQP value/sequence) rather than data sections
        body = json.dumps(raw.body, default=str).encode() if raw.body is not None else b""
    return JobMessage(
        raw=raw,
        body=body,
        message_id=str(raw.message_id) if raw.message_id is not None else None,
        attempt=attempt,
        delivery_count=raw.delivery_count or 0,
        properties=props,
    )


LockFailureCallback = Callable[[JobMessage, BaseException | None], None]


class QueueConsumer:
    """One receiver (peek-lock, prefetch 0) and one sender on the jobs queue, over a borrowed client.

    `receive()` takes one message only when asked, so no message waits locked in a local buffer.
    `aclose()` closes the links and the lock renewer; the caller owns and closes the client.
    """

    def __init__(self, client: ServiceBusClient, *, queue: str) -> None:
        self._client = client
        self._queue = queue
        self._receiver: ServiceBusReceiver | None = None
        self._sender: ServiceBusSender | None = None
        self._renewer = AutoLockRenewer()
        # One send at a time: concurrent sends on one pyamqp sender can wedge its connection
        # (observed: every later send stuck in auth_complete). Retries are rare; the lock costs nothing.
        self._send_lock = asyncio.Lock()
        # One management operation at a time on the receiver: concurrent lock renewals race inside
        # pyamqp's management link ("Management Operation error occurred", handler shut down) — seen
        # with 50 jobs in flight even after the link was warmed.
        self._mgmt_lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._receiver is not None

    async def _ensure(self) -> tuple[ServiceBusReceiver, ServiceBusSender]:
        if self._receiver is None or self._sender is None:
            with translate_bus_errors(f"open queue {self._queue}"):
                receiver = self._client.get_queue_receiver(
                    self._queue, receive_mode=ServiceBusReceiveMode.PEEK_LOCK, prefetch_count=0
                )
                await receiver.__aenter__()
                # Warm the management link with one harmless operation. Concurrent first uses of it
                # (lock renewals of several messages) race to create it and the SDK shuts the handler
                # down ("Management Operation error occurred"); once it exists, concurrency is fine.
                await receiver.peek_messages(max_message_count=1)
                sender = self._client.get_queue_sender(self._queue)
                try:
                    await sender.__aenter__()
                except BaseException:
                    await receiver.close()
                    raise
                self._receiver, self._sender = receiver, sender
        return self._receiver, self._sender

    async def receive(self, *, max_wait_s: float) -> JobMessage | None:
        receiver, _ = await self._ensure()
        with translate_bus_errors("receive"):
            messages = await receiver.receive_messages(max_message_count=1, max_wait_time=max_wait_s)
        return job_message(messages[0]) if messages else None

    def renew_lock(self, message: JobMessage, *, budget_s: float, on_failure: LockFailureCallback) -> None:
        """Keep the lock for up to `budget_s` (the job's expected duration + margin) or until settled."""
        assert self._receiver is not None

        async def failed(renewable: Any, error: BaseException | None) -> None:
            on_failure(message, error)

        self._renewer.register(
            _SerialRenewals(self._receiver, self._mgmt_lock),  # type: ignore[arg-type]
            message.raw,
            max_lock_renewal_duration=budget_s,
            on_lock_renew_failure=failed,
        )

    async def complete(self, message: JobMessage) -> None:
        receiver, _ = await self._ensure()
        _check_renewal(message)
        with translate_bus_errors("complete"):
            await receiver.complete_message(message.raw)

    async def abandon(self, message: JobMessage) -> None:
        receiver, _ = await self._ensure()
        with translate_bus_errors("abandon"):
            await receiver.abandon_message(message.raw)

    async def dead_letter(self, message: JobMessage, *, reason: str, description: str) -> None:
        receiver, _ = await self._ensure()
        _check_renewal(message)
        with translate_bus_errors("dead-letter"):
            await receiver.dead_letter_message(
                message.raw, reason=reason, error_description=description[:_MAX_DESCRIPTION]
            )

    async def retry_later(
        self, message: JobMessage, *, delay_s: float, attempt: int, throttled: bool = False
    ) -> None:
        """Send a copy scheduled `delay_s` from now carrying `attempt`, THEN complete the original.

        `throttled` counts consecutive throttled retries in the copy (reset by any other retry).

        Send-then-complete: a crash in between leaves a duplicate, which the manifest check absorbs;
        the reverse order could lose the job. The copy gets a new message id, or the queue's duplicate
        detection would silently drop it.
        """
        _, sender = await self._ensure()
        _check_renewal(message)
        copy = ServiceBusMessage(
            message.body,
            content_type=message.raw.content_type or "application/json",
            message_id=f"{message.message_id or 'job'}~{attempt}",
            application_properties=_properties(message.properties, attempt=attempt, throttled=throttled),
            scheduled_enqueue_time_utc=datetime.now(UTC) + timedelta(seconds=delay_s),
        )
        async with self._send_lock:
            with translate_bus_errors("schedule retry"):
                await sender.send_messages(copy)
        await self.complete(message)

    async def reset(self) -> None:
        """Drop the links after a connection error; the next call reopens them."""
        receiver, sender, self._receiver, self._sender = self._receiver, self._sender, None, None
        for link in (receiver, sender):
            if link is not None:
                with contextlib.suppress(Exception):
                    await link.close()

    async def aclose(self) -> None:
        await self._renewer.close()
        await self.reset()


class _SerialRenewals:
    """What AutoLockRenewer needs of a receiver (`renew_message_lock`), one renewal at a time."""

    def __init__(self, receiver: ServiceBusReceiver, lock: asyncio.Lock) -> None:
        self._receiver = receiver
        self._lock = lock

    async def renew_message_lock(self, message: ServiceBusReceivedMessage, **kwargs: Any) -> datetime:
        async with self._lock:
            return await self._receiver.renew_message_lock(message, **kwargs)


def _properties(properties: Mapping[str, str], *, attempt: int, throttled: bool) -> dict[str | bytes, Any]:
    merged: dict[str | bytes, Any] = dict(properties.items())
    merged[ATTEMPT_PROPERTY] = str(attempt)
    merged[THROTTLED_PROPERTY] = (
        str(int(properties.get(THROTTLED_PROPERTY, "0") or 0) + 1) if throttled else "0"
    )
    return merged


def _check_renewal(message: JobMessage) -> None:
    """A renewal that already failed means the lock is gone: settling would fail or double-process."""
    error = getattr(message.raw, "auto_renew_error", None)
    if error is not None:
        raise LockLost(f"lock renewal failed earlier: {type(error).__name__}")
