"""Unit tests of the broker's in-memory queue state, driven by a fake clock."""

from __future__ import annotations

import uuid

import pytest

from devstack.servicebus.queues import (
    LockLost,
    MessageNotFound,
    MessageState,
    QueueOptions,
    QueueStore,
    ReceiveMode,
)

PEEK = ReceiveMode.PEEK_LOCK


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> QueueStore:
    return QueueStore(clock=clock, default_options=QueueOptions(lock_duration_s=10, max_delivery_count=3))


def _lock(store: QueueStore, queue: str = "q") -> uuid.UUID:
    message = store.acquire(queue, PEEK)
    assert message is not None
    assert message.lock_token is not None
    return message.lock_token


def test_messages_come_out_in_sequence_order_and_lock(store: QueueStore, clock: FakeClock) -> None:
    first = store.enqueue("q", b"a", message_id="a")
    second = store.enqueue("Q", b"b", message_id="b")  # names are case-insensitive
    taken = store.acquire("q", PEEK)
    assert taken is not None
    assert taken.sequence_number == first
    assert taken.state is MessageState.LOCKED
    assert taken.locked_until == clock.now + 10
    assert store.acquire("q", PEEK) is not None
    assert store.acquire("q", PEEK) is None
    assert second == first + 1


def test_complete_removes_and_second_settle_loses_lock(store: QueueStore) -> None:
    store.enqueue("q", b"a")
    token = _lock(store)
    store.complete(token)
    assert store.snapshot()["q"].total == 0
    with pytest.raises(LockLost):
        store.complete(token)


def test_abandon_counts_a_delivery_and_redelivers_first(store: QueueStore) -> None:
    store.enqueue("q", b"a")
    store.enqueue("q", b"b")
    token = _lock(store)
    store.abandon(token)
    again = store.acquire("q", PEEK)
    assert again is not None
    assert (again.sequence_number, again.delivery_count) == (1, 1)


def test_release_does_not_count(store: QueueStore) -> None:
    store.enqueue("q", b"a")
    store.release(_lock(store))
    again = store.acquire("q", PEEK)
    assert again is not None
    assert again.delivery_count == 0


def test_lock_expiry_redelivers_with_count_and_renew_extends(store: QueueStore, clock: FakeClock) -> None:
    store.enqueue("q", b"a")
    token = _lock(store)
    clock.advance(6)
    assert store.renew(token) == clock.now + 10
    clock.advance(6)
    assert store.tick() is False  # renewed lock still valid
    clock.advance(5)
    assert store.tick() is True
    with pytest.raises(LockLost):
        store.complete(token)
    again = store.acquire("q", PEEK)
    assert again is not None
    assert again.delivery_count == 1
    assert store.counters.lock_expirations == 1


def test_max_delivery_count_moves_to_dead_letter_queue(store: QueueStore) -> None:
    store.enqueue("q", b"a", message_id="poison")
    for _ in range(3):
        store.abandon(_lock(store))
    assert store.acquire("q", PEEK) is None
    dead = store.snapshot()["q/$deadletterqueue"].messages
    assert [(m.message_id, m.dead_letter_reason) for m in dead] == [("poison", "MaxDeliveryCountExceeded")]


def test_explicit_dead_letter_keeps_reason_and_description(store: QueueStore) -> None:
    store.enqueue("q", b"a")
    store.dead_letter(_lock(store), reason="bad-json", description="line 1")
    dead = store.acquire("q/$DeadLetterQueue", PEEK)
    assert dead is not None
    assert (dead.dead_letter_reason, dead.dead_letter_description, dead.dead_letter_source) == (
        "bad-json",
        "line 1",
        "q",
    )


def test_scheduled_messages_wait_until_due_and_can_be_cancelled(store: QueueStore, clock: FakeClock) -> None:
    kept = store.enqueue("q", b"a", scheduled_at=clock.now + 30)
    cancelled = store.enqueue("q", b"b", scheduled_at=clock.now + 30)
    store.cancel_scheduled("q", [cancelled])
    assert store.snapshot()["q"].scheduled == 1
    assert store.acquire("q", PEEK) is None
    clock.advance(30)
    assert store.tick() is True
    taken = store.acquire("q", PEEK)
    assert taken is not None
    assert taken.sequence_number == kept


def test_defer_then_receive_by_sequence_number(store: QueueStore) -> None:
    number = store.enqueue("q", b"a")
    store.defer(_lock(store))
    assert store.acquire("q", PEEK) is None
    (taken,) = store.receive_deferred("q", [number], PEEK)
    assert taken.state is MessageState.LOCKED
    with pytest.raises(MessageNotFound):
        store.receive_deferred("q", [number], PEEK)


def test_receive_and_delete_and_ttl(store: QueueStore, clock: FakeClock) -> None:
    store.enqueue("q", b"a", ttl_s=5)
    store.enqueue("q", b"b")
    clock.advance(6)
    taken = store.acquire("q", ReceiveMode.RECEIVE_AND_DELETE)
    assert taken is not None
    assert taken.raw == b"b"
    assert store.snapshot()["q"].total == 0
    assert store.counters.expired_messages == 1


def test_lose_lock_acts_like_expiry(store: QueueStore) -> None:
    store.enqueue("q", b"a")
    token = _lock(store)
    store.lose_lock(token)
    assert not store.is_locked(token)
    with pytest.raises(LockLost):
        store.renew(token)


def test_configured_queue_options_and_validation(clock: FakeClock) -> None:
    store = QueueStore(clock=clock, queues={"Jobs": QueueOptions(lock_duration_s=2, max_delivery_count=1)})
    assert store.options("jobs").lock_duration_s == 2
    store.enqueue("jobs", b"a")
    store.abandon(_lock(store, "jobs"))
    assert store.snapshot()["jobs/$deadletterqueue"].active == 1
    with pytest.raises(ValueError, match="lock_duration_s"):
        QueueOptions(lock_duration_s=0)


def test_peek_returns_any_state_from_sequence(store: QueueStore) -> None:
    for body in (b"a", b"b", b"c"):
        store.enqueue("q", body)
    _lock(store)
    assert [m.raw for m in store.peek("q", 1, 2)] == [b"a", b"b"]
    assert [m.raw for m in store.peek("q", 3, 10)] == [b"c"]
