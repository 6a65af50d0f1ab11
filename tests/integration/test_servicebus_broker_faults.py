"""Conformance of the devstack Service Bus broker with the real async SDK: locks, limits, faults, load."""

from __future__ import annotations

import asyncio

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessageSizeExceededError,
    ServiceBusAuthenticationError,
)
from servicebus_fixtures import (
    LOCK_S,
    MAX_DELIVERIES,
    QUEUE,
    RENEW_LOCK_S,
    RENEW_QUEUE,
    make_client,
    sb_broker,
    sb_client,
)

from devstack.servicebus import BrokerState, ServiceBusBroker

pytestmark = pytest.mark.integration
__all__ = ["sb_broker", "sb_client"]  # fixtures, re-exported for pytest


async def send(client: ServiceBusClient, *texts: str, queue: str = QUEUE) -> None:
    async with client.get_queue_sender(queue) as sender:
        await sender.send_messages([ServiceBusMessage(t, message_id=t) for t in texts])


async def receive_one(receiver: ServiceBusReceiver) -> object:
    for _ in range(5):
        received = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
        if received:
            return received[0]
    raise AssertionError("no message received")


def locked_until(state: BrokerState, sequence_number: int, queue: str = QUEUE) -> float:
    (view,) = [m for m in state.queue(queue).messages if m.sequence_number == sequence_number]
    assert view.locked_until is not None
    return view.locked_until


async def test_auto_lock_renewer_holds_a_message_across_three_lock_durations(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    await send(sb_client, "long job", queue=RENEW_QUEUE)
    failures: list[Exception] = []

    async def on_failure(_: object, error: Exception | None) -> None:
        failures.append(error or RuntimeError("renewal stopped"))

    renewer = AutoLockRenewer(max_lock_renewal_duration=60, on_lock_renew_failure=on_failure)
    receiver = sb_client.get_queue_receiver(RENEW_QUEUE, auto_lock_renewer=renewer)
    async with renewer, receiver:
        message = await receive_one(receiver)
        number = message.sequence_number
        first = locked_until(await sb_broker.state(), number, RENEW_QUEUE)
        # Locked-until = last renewal + lock duration, so this holds only once >= 3 locks have passed.
        await sb_broker.wait_for(
            lambda s: locked_until(s, number, RENEW_QUEUE) >= first + 3 * RENEW_LOCK_S, timeout=30
        )
        await receiver.complete_message(message)
    state = await sb_broker.state()
    assert failures == []
    assert state.counters.lock_expirations == 0
    assert state.counters.renewed >= 3
    assert state.counters.completed == 1


async def test_lock_expiry_gives_lock_lost_on_settle_and_redelivery_with_count(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    await send(sb_client, "slow")
    async with sb_client.get_queue_receiver(QUEUE) as receiver:
        first = await receive_one(receiver)
        await sb_broker.wait_for(lambda s: s.counters.lock_expirations == 1, timeout=LOCK_S + 10)
        with pytest.raises(MessageLockLostError):
            await receiver.complete_message(first)
        second = await receive_one(receiver)
        assert second.sequence_number == first.sequence_number
        assert second.delivery_count == (first.delivery_count or 0) + 1
        await receiver.complete_message(second)
    assert (await sb_broker.state()).counters.completed == 1


async def test_broker_side_lock_loss_on_settle_and_renew(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    await send(sb_client, "a", "b")
    async with sb_client.get_queue_receiver(QUEUE) as receiver:
        message = await receive_one(receiver)
        sb_broker.lose_next_lock()
        with pytest.raises(MessageLockLostError):
            await receiver.complete_message(message)  # echoed rejected{com.microsoft:message-lock-lost}
        other = await receive_one(receiver)
        sb_broker.lose_next_lock()
        with pytest.raises(MessageLockLostError):
            await receiver.renew_message_lock(other)  # $management 410
    state = await sb_broker.state()
    assert state.counters.lock_expirations == 2
    assert state.counters.completed == 0


async def test_max_delivery_count_moves_message_to_dead_letter_queue(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    await send(sb_client, "poison")
    async with sb_client.get_queue_receiver(QUEUE) as receiver:
        for attempt in range(MAX_DELIVERIES):
            message = await receive_one(receiver)
            assert (message.delivery_count or 0) == attempt
            await receiver.abandon_message(message)
        assert await receiver.receive_messages(max_wait_time=0.5) == []
    async with sb_client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        dead = await receive_one(dlq)
        assert str(dead) == "poison"
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        await dlq.complete_message(dead)


async def test_bad_key_raises_authentication_error(sb_broker: ServiceBusBroker) -> None:
    bad = sb_broker.connection_string.replace("SharedAccessKey=", "SharedAccessKey=wrong")
    async with ServiceBusClient.from_connection_string(bad, retry_total=0) as client:
        with pytest.raises(ServiceBusAuthenticationError):
            async with client.get_queue_sender(QUEUE) as sender:
                await sender.send_messages(ServiceBusMessage("never"))
    assert (await sb_broker.state()).counters.enqueued == 0


async def test_injected_auth_rejection(sb_broker: ServiceBusBroker) -> None:
    sb_broker.reject_auth(times=1)
    async with make_client(sb_broker, retry_total=0) as client:
        with pytest.raises(ServiceBusAuthenticationError):
            await send(client, "never")
        await send(client, "after")  # a fresh handler authenticates again
    await sb_broker.wait_for(lambda s: s.queue(QUEUE).active == 1)


async def test_message_over_256_kib_raises_size_error(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    async with sb_client.get_queue_sender(QUEUE) as sender:
        with pytest.raises(MessageSizeExceededError):
            await sender.send_messages(ServiceBusMessage(b"x" * (256 * 1024 + 1)))
        await sender.send_messages(ServiceBusMessage(b"x" * (200 * 1024)))  # under the limit is fine
    await sb_broker.wait_for(lambda s: s.queue(QUEUE).active == 1)


async def test_forced_link_detach_is_recovered(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    await send(sb_client, "held", "next")
    async with sb_client.get_queue_receiver(QUEUE) as receiver:
        held = await receive_one(receiver)
        assert await sb_broker.detach_links(QUEUE) >= 1
        await receiver.complete_message(held)  # link gone: the SDK settles through $management
        following = await receive_one(receiver)  # and re-attaches to receive
        assert str(following) == "next"
        await receiver.complete_message(following)
    state = await sb_broker.wait_for(lambda s: s.counters.completed == 2)
    assert state.queue(QUEUE).total == 0


async def test_forced_connection_close_is_recovered(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    await send(sb_client, "in flight")
    async with sb_client.get_queue_receiver(QUEUE) as receiver:
        first = await receive_one(receiver)
        assert await sb_broker.close_connections() >= 1
        # The lock survives the connection; after it expires the message comes back on a new connection.
        second = await receive_one(receiver)
        assert second.sequence_number == first.sequence_number
        assert second.delivery_count == 1
        await receiver.complete_message(second)
    state = await sb_broker.wait_for(lambda s: s.counters.completed == 1)
    assert state.counters.lock_expirations == 1


async def test_prefetched_messages_are_released_on_close(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    await send(sb_client, *[f"p{i}" for i in range(5)])
    async with sb_client.get_queue_receiver(QUEUE, prefetch_count=10) as receiver:
        message = await receive_one(receiver)
        await sb_broker.wait_for(lambda s: s.queue(QUEUE).locked == 5)  # the rest sit in the SDK's buffer
        await receiver.complete_message(message)
    state = await sb_broker.wait_for(lambda s: s.queue(QUEUE).active == 4)
    assert state.locks_held == 0
    assert [m.delivery_count for m in state.queue(QUEUE).messages] == [0, 0, 0, 0]
    assert state.counters.released == 4


async def test_server_busy_send_is_retried_by_the_sdk(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    sb_broker.server_busy(times=1)
    await send(sb_client, "eventually")
    await sb_broker.wait_for(lambda s: s.queue(QUEUE).active == 1)


async def test_paused_delivery_holds_messages_until_resumed(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    sb_broker.pause_delivery()
    await send(sb_client, "held back")
    async with sb_client.get_queue_receiver(QUEUE) as receiver:
        assert await receiver.receive_messages(max_wait_time=0.5) == []
        await sb_broker.resume_delivery()
        message = await receive_one(receiver)
        await receiver.complete_message(message)


async def test_fifty_concurrent_clients(sb_broker: ServiceBusBroker) -> None:
    clients = 50

    async def one_client(index: int) -> str:
        async with make_client(sb_broker) as client:
            await send(client, f"job-{index}")
            async with client.get_queue_receiver(QUEUE) as receiver:
                message = await receive_one(receiver)
                await receiver.complete_message(message)
                return str(message)

    async with asyncio.timeout(90):
        results = await asyncio.gather(*(one_client(i) for i in range(clients)))
    assert sorted(results) == sorted(f"job-{i}" for i in range(clients))
    state = await sb_broker.wait_for(lambda s: s.counters.completed == clients)
    assert state.queue(QUEUE).total == 0
