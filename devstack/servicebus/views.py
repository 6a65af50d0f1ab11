"""Read-only snapshots of queue state that tests and tools inspect (no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Counters", "MessageState", "MessageView", "QueueSnapshot"]


class MessageState(Enum):
    ACTIVE = "active"
    SCHEDULED = "scheduled"
    LOCKED = "locked"
    DEFERRED = "deferred"


@dataclass(frozen=True, kw_only=True)
class MessageView:
    """Read-only view of a stored message for tests."""

    sequence_number: int
    message_id: str | None
    state: MessageState
    delivery_count: int
    locked_until: float | None
    dead_letter_reason: str | None
    dead_letter_description: str | None


@dataclass(frozen=True, kw_only=True)
class QueueSnapshot:
    """Counts and messages of one entity (a queue or its `$DeadLetterQueue`)."""

    name: str
    active: int
    scheduled: int
    locked: int
    deferred: int
    messages: tuple[MessageView, ...]

    @property
    def total(self) -> int:
        return len(self.messages)


@dataclass(kw_only=True)
class Counters:
    """Event counts since the store was created."""

    enqueued: int = 0
    delivered: int = 0
    completed: int = 0
    abandoned: int = 0
    deferred: int = 0
    dead_lettered: int = 0
    released: int = 0
    renewed: int = 0
    lock_expirations: int = 0
    expired_messages: int = 0
