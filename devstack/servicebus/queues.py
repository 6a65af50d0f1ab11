"""In-memory Service Bus queue state: messages, peek-locks, scheduling, deferral, dead-lettering."""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from .views import Counters, MessageState, MessageView, QueueSnapshot

__all__ = [
    "DEAD_LETTER_SUFFIX",
    "Counters",
    "LockLost",
    "MessageNotFound",
    "MessageState",
    "MessageView",
    "QueueOptions",
    "QueueSnapshot",
    "QueueStore",
    "ReceiveMode",
    "StoredMessage",
]

DEAD_LETTER_SUFFIX = "/$deadletterqueue"
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
Clock = Callable[[], float]


@dataclass(frozen=True, kw_only=True)
class QueueOptions:
    """Per-queue settings. Durations in seconds; `default_ttl_s=None` means messages never expire."""

    lock_duration_s: float = 30.0
    max_delivery_count: int = 10
    default_ttl_s: float | None = None
    max_message_size: int = 256 * 1024

    def __post_init__(self) -> None:
        if self.lock_duration_s <= 0:
            raise ValueError("lock_duration_s must be > 0")
        if self.max_delivery_count < 1:
            raise ValueError("max_delivery_count must be >= 1")


class ReceiveMode(Enum):
    PEEK_LOCK = "peek-lock"
    RECEIVE_AND_DELETE = "receive-and-delete"


class LockLost(Exception):
    """The lock token is unknown, expired or already settled."""


class MessageNotFound(Exception):
    """No message with that sequence number is in the state the operation needs."""


@dataclass(kw_only=True)
class StoredMessage:
    """One message as the broker keeps it; `raw` is the AMQP encoding the sender sent."""

    sequence_number: int
    raw: bytes
    message_id: str | None
    enqueued_at: float
    scheduled_at: float | None = None
    expires_at: float | None = None
    delivery_count: int = 0
    state: MessageState = MessageState.ACTIVE
    lock_token: uuid.UUID | None = None
    locked_until: float | None = None
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None
    dead_letter_source: str | None = None


@dataclass
class _Entity:
    name: str
    options: QueueOptions
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    ready: list[int] = field(default_factory=list)
    scheduled: list[tuple[float, int]] = field(default_factory=list)

    def make_ready(self, message: StoredMessage) -> None:
        message.state = MessageState.ACTIVE
        message.lock_token = None
        message.locked_until = None
        heapq.heappush(self.ready, message.sequence_number)


class QueueStore:
    """All entities of one namespace. Not thread-safe: the broker calls it from its reactor thread only.

    Args:
        clock: seconds since the epoch (wall clock; lock expiries are sent to clients as UTC times).
        default_options: options for queues created on first use.
        queues: queues created up front with their own options (names are case-insensitive).
    """

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        default_options: QueueOptions | None = None,
        queues: Mapping[str, QueueOptions] | None = None,
    ) -> None:
        self._clock = clock
        self._default = default_options or QueueOptions()
        self._entities: dict[str, _Entity] = {}
        self._locks: dict[uuid.UUID, tuple[_Entity, StoredMessage]] = {}
        self._next_sequence = 1
        self.counters = Counters()
        for name, options in (queues or {}).items():
            self._create(name, options)

    # ---- entities -------------------------------------------------------------------------------------

    def _create(self, name: str, options: QueueOptions) -> _Entity:
        base = name.strip("/").lower().removesuffix(DEAD_LETTER_SUFFIX)
        entity = _Entity(name=base, options=options)
        dead_letter = _Entity(
            name=base + DEAD_LETTER_SUFFIX,
            options=replace(options, max_delivery_count=2**31 - 1, default_ttl_s=None),
        )
        self._entities[base] = entity
        self._entities[dead_letter.name] = dead_letter
        return entity

    def _entity(self, path: str) -> _Entity:
        key = path.strip("/").lower()
        found = self._entities.get(key)
        if found is None:
            self._create(key, self._default)
            found = self._entities[key]
        return found

    def options(self, path: str) -> QueueOptions:
        return self._entity(path).options

    def names(self) -> list[str]:
        return sorted(self._entities)

    # ---- sending --------------------------------------------------------------------------------------

    def enqueue(
        self,
        path: str,
        raw: bytes,
        *,
        message_id: str | None = None,
        scheduled_at: float | None = None,
        ttl_s: float | None = None,
    ) -> int:
        """Store a message, receivable now or from `scheduled_at` (epoch s). Returns its sequence number."""
        entity = self._entity(path)
        now = self._clock()
        ttl = ttl_s if ttl_s is not None else entity.options.default_ttl_s
        message = StoredMessage(
            sequence_number=self._next_sequence,
            raw=raw,
            message_id=message_id,
            enqueued_at=now,
            expires_at=None if ttl is None else now + ttl,
            scheduled_at=scheduled_at,
        )
        self._next_sequence += 1
        entity.messages[message.sequence_number] = message
        if scheduled_at is not None and scheduled_at > now:
            message.state = MessageState.SCHEDULED
            heapq.heappush(entity.scheduled, (scheduled_at, message.sequence_number))
        else:
            entity.make_ready(message)
        self.counters.enqueued += 1
        return message.sequence_number

    def cancel_scheduled(self, path: str, sequence_numbers: Iterable[int]) -> None:
        entity = self._entity(path)
        for number in sequence_numbers:
            message = entity.messages.get(number)
            if message is not None and message.state is MessageState.SCHEDULED:
                del entity.messages[number]

    # ---- receiving ------------------------------------------------------------------------------------

    def acquire(self, path: str, mode: ReceiveMode) -> StoredMessage | None:
        """Take the next active message: lock it (peek-lock) or remove it (receive-and-delete)."""
        entity = self._entity(path)
        while entity.ready:
            number = heapq.heappop(entity.ready)
            message = entity.messages.get(number)
            if message is None or message.state is not MessageState.ACTIVE:
                continue  # stale heap entry
            if self._expired(entity, message):
                continue
            return self._take(entity, message, mode)
        return None

    def has_ready(self, path: str) -> bool:
        entity = self._entity(path)
        return any(
            (m := entity.messages.get(n)) is not None and m.state is MessageState.ACTIVE for n in entity.ready
        )

    def receive_deferred(
        self, path: str, sequence_numbers: Iterable[int], mode: ReceiveMode
    ) -> list[StoredMessage]:
        entity = self._entity(path)
        taken: list[StoredMessage] = []
        for number in sequence_numbers:
            message = entity.messages.get(number)
            if message is None or message.state is not MessageState.DEFERRED:
                raise MessageNotFound(f"deferred message {number} not found in {entity.name}")
            taken.append(self._take(entity, message, mode))
        return taken

    def _take(self, entity: _Entity, message: StoredMessage, mode: ReceiveMode) -> StoredMessage:
        self.counters.delivered += 1
        if mode is ReceiveMode.RECEIVE_AND_DELETE:
            del entity.messages[message.sequence_number]
            return message
        message.state = MessageState.LOCKED
        message.lock_token = uuid.uuid4()
        message.locked_until = self._clock() + entity.options.lock_duration_s
        self._locks[message.lock_token] = (entity, message)
        return message

    def peek(self, path: str, from_sequence: int, count: int) -> list[StoredMessage]:
        """Up to `count` messages (any state) with sequence number >= `from_sequence`, in order."""
        entity = self._entity(path)
        numbers = sorted(n for n in entity.messages if n >= from_sequence)
        return [entity.messages[n] for n in numbers[:count]]

    # ---- settlement -----------------------------------------------------------------------------------

    def _locked(self, token: uuid.UUID) -> tuple[_Entity, StoredMessage]:
        found = self._locks.get(token)
        if found is None or found[1].locked_until is None or found[1].locked_until <= self._clock():
            raise LockLost(f"lock {token} is lost or expired")
        return found

    def _unlock(self, message: StoredMessage) -> None:
        if message.lock_token is not None:
            self._locks.pop(message.lock_token, None)
        message.lock_token = None
        message.locked_until = None

    def is_locked(self, token: uuid.UUID) -> bool:
        try:
            self._locked(token)
        except LockLost:
            return False
        return True

    def complete(self, token: uuid.UUID) -> None:
        entity, message = self._locked(token)
        self._unlock(message)
        del entity.messages[message.sequence_number]
        self.counters.completed += 1

    def abandon(self, token: uuid.UUID) -> None:
        entity, message = self._locked(token)
        self._unlock(message)
        self.counters.abandoned += 1
        self._count_failed_delivery(entity, message)

    def release(self, token: uuid.UUID) -> None:
        """Give a message back without counting a delivery (a client released a prefetched message)."""
        entity, message = self._locked(token)
        self._unlock(message)
        entity.make_ready(message)
        self.counters.released += 1

    def defer(self, token: uuid.UUID) -> None:
        _, message = self._locked(token)
        self._unlock(message)
        message.state = MessageState.DEFERRED
        self.counters.deferred += 1

    def dead_letter(self, token: uuid.UUID, *, reason: str | None, description: str | None) -> None:
        entity, message = self._locked(token)
        self._unlock(message)
        self._move_to_dead_letter(entity, message, reason=reason, description=description)

    def renew(self, token: uuid.UUID) -> float:
        """Extend a lock by the queue's lock duration; returns the new locked-until (epoch s)."""
        entity, message = self._locked(token)
        message.locked_until = self._clock() + entity.options.lock_duration_s
        self.counters.renewed += 1
        return message.locked_until

    def lose_lock(self, token: uuid.UUID) -> None:
        """Expire a lock now, as if its time had run out (fault injection)."""
        found = self._locks.get(token)
        if found is not None:
            self._expire_lock(*found)

    def _count_failed_delivery(self, entity: _Entity, message: StoredMessage) -> None:
        message.delivery_count += 1
        if message.delivery_count >= entity.options.max_delivery_count:
            self._move_to_dead_letter(
                entity,
                message,
                reason=MAX_DELIVERY_COUNT_EXCEEDED,
                description=f"Message could not be consumed after {message.delivery_count} deliveries.",
            )
        else:
            entity.make_ready(message)

    def _move_to_dead_letter(
        self, entity: _Entity, message: StoredMessage, *, reason: str | None, description: str | None
    ) -> None:
        del entity.messages[message.sequence_number]
        target = self._entity(entity.name + DEAD_LETTER_SUFFIX)
        message.dead_letter_reason = reason
        message.dead_letter_description = description
        message.dead_letter_source = entity.name
        message.expires_at = None
        target.messages[message.sequence_number] = message
        target.make_ready(message)
        self.counters.dead_lettered += 1

    # ---- time -----------------------------------------------------------------------------------------

    def tick(self) -> bool:
        """Expire locks and release due scheduled messages. Returns True if anything changed."""
        now = self._clock()
        changed = False
        due = [
            (e, m) for e, m in self._locks.values() if m.locked_until is not None and m.locked_until <= now
        ]
        for entity, message in due:
            self._expire_lock(entity, message)
            changed = True
        for entity in list(self._entities.values()):
            while entity.scheduled and entity.scheduled[0][0] <= now:
                _, number = heapq.heappop(entity.scheduled)
                due_message = entity.messages.get(number)
                if due_message is not None and due_message.state is MessageState.SCHEDULED:
                    entity.make_ready(due_message)
                    changed = True
        return changed

    def _expire_lock(self, entity: _Entity, message: StoredMessage) -> None:
        self._unlock(message)
        self.counters.lock_expirations += 1
        self._count_failed_delivery(entity, message)

    def _expired(self, entity: _Entity, message: StoredMessage) -> bool:
        if message.expires_at is None or message.expires_at > self._clock():
            return False
        del entity.messages[message.sequence_number]
        self.counters.expired_messages += 1
        return True

    # ---- inspection -----------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, QueueSnapshot]:
        return {name: self._snapshot(entity) for name, entity in self._entities.items()}

    @staticmethod
    def _snapshot(entity: _Entity) -> QueueSnapshot:
        views = tuple(
            MessageView(
                sequence_number=m.sequence_number,
                message_id=m.message_id,
                state=m.state,
                delivery_count=m.delivery_count,
                locked_until=m.locked_until,
                dead_letter_reason=m.dead_letter_reason,
                dead_letter_description=m.dead_letter_description,
            )
            for m in sorted(entity.messages.values(), key=lambda m: m.sequence_number)
        )
        states = [v.state for v in views]
        return QueueSnapshot(
            name=entity.name,
            active=states.count(MessageState.ACTIVE),
            scheduled=states.count(MessageState.SCHEDULED),
            locked=states.count(MessageState.LOCKED),
            deferred=states.count(MessageState.DEFERRED),
            messages=views,
        )
