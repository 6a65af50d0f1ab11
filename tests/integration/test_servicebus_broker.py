"""Conformance of the devstack Service Bus broker with the real async `azure-servicebus` SDK: the basics."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from servicebus_fixtures import QUEUE, make_client, sb_broker, sb_client

from devstack.servicebus import BrokerState, MessageState, ServiceBusBroker

pytestmark = pytest.mark.integration
__all__ = ["sb_broker", "sb_client"]  # fixtures, re-exported for pytest


def bodies(messages: list[object]) -> list[str]:
    return [str(m) for m in messages]


async def test_env_and_connection_string(sb_broker: ServiceBusBroker) -> None:
    env = sb_broker.env()
    assert env["SERVICEBUS_QUEUE"] == "audio-jobs"
    assert env["SERVICEBUS_CONNECTION_STRING"] == sb_broker.connection_string
    assert sb_broker.connection_string.startswith(f"Endpoint=sb://127.0.0.1:{sb_broker.port};")
    assert sb_broker.connection_string.endswith(";UseDevelopmentEmulator=true")
    assert "***" in repr(sb_broker)
    assert sb_broker.connection_string.split("SharedAccessKey=")[1] not in repr(sb_broker)


async def test_send_single_and_batch_then_receive_in_order(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    async with sb_client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages(
            ServiceBusMessage("one", message_id="m1", application_properties={"k": "v"})
        )
        await sender.send_messages([ServiceBusMessage("two"), ServiceBusMessage("three")])
        batch = await sender.create_message_batch()
        for text in ("four", "five"):
            batch.add_message(ServiceBusMessage(text))
        await sender.send_messages(batch)
    state = await sb_broker.state()
    assert state.queue(QUEUE).active == 5
    async with sb_client.get_queue_receiver(QUEUE) as receiver:
        received = []
        while len(received) < 5:
            received += await receiver.receive_messages(max_message_count=5, max_wait_time=5)
        assert bodies(received) == ["one", "two", "three", "four", "five"]
        first = received[0]
        assert first.message_id == "m1"
        assert first.application_properties == {b"k": b"v"}
        assert first.delivery_count == 0
        assert first.sequence_number is not None
        assert first.enqueued_time_utc is not None
        assert first.locked_until_utc is not None
        assert first.locked_until_utc > datetime.now(UTC)
        assert [m.sequence_number for m in received] == sorted(m.sequence_number for m in received)
        for message in received:
            await receiver.complete_message(message)
    state = await sb_broker.wait_for(lambda s: s.counters.completed == 5)
    assert state.queue(QUEUE).total == 0


async def test_scheduled_send_is_invisible_until_due_and_can_be_cancelled(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    async with sb_client.get_queue_sender(QUEUE) as sender:
        (kept,) = await sender.schedule_messages(ServiceBusMessage("scheduled"), later)
        (cancelled,) = await sender.schedule_messages(ServiceBusMessage("cancelled"), later)
        await sender.send_messages(ServiceBusMessage("annotated", scheduled_enqueue_time_utc=later))
        await sender.cancel_scheduled_messages(cancelled)
        state = await sb_broker.state()
        assert (state.queue(QUEUE).scheduled, state.queue(QUEUE).active) == (2, 0)
        assert cancelled not in [m.sequence_number for m in state.queue(QUEUE).messages]
        soon = datetime.now(UTC) + timedelta(milliseconds=300)
        await sender.schedule_messages(ServiceBusMessage("due soon"), soon)
        await sender.send_messages(ServiceBusMessage("annotated soon", scheduled_enqueue_time_utc=soon))
    await sb_broker.wait_for(lambda s: s.queue(QUEUE).active == 2)
    async with sb_client.get_queue_receiver(
        QUEUE, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as r:
        received = await r.receive_messages(max_message_count=2, max_wait_time=5)
        received += (
            [] if len(received) == 2 else await r.receive_messages(max_message_count=1, max_wait_time=5)
        )
        peeked = await r.peek_messages(max_message_count=5, sequence_number=kept)
    assert sorted(bodies(received)) == ["annotated soon", "due soon"]
    assert all(m.scheduled_enqueue_time_utc is not None for m in received)
    assert sorted(bodies(peeked)) == ["annotated", "scheduled"]


async def test_peek_does_not_lock_or_remove(sb_broker: ServiceBusBroker, sb_client: ServiceBusClient) -> None:
    async with sb_client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages([ServiceBusMessage(f"p{i}") for i in range(3)])
    async with sb_client.get_queue_receiver(QUEUE) as receiver:
        peeked = await receiver.peek_messages(max_message_count=2)
        assert bodies(peeked) == ["p0", "p1"]
        assert bodies(await receiver.peek_messages(max_message_count=5)) == ["p2"]
        assert bodies(await receiver.peek_messages(max_message_count=5, sequence_number=1)) == [
            "p0",
            "p1",
            "p2",
        ]
    state = await sb_broker.state()
    assert (state.queue(QUEUE).active, state.locks_held) == (3, 0)


async def test_receive_and_delete_removes_on_delivery(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    async with sb_client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages([ServiceBusMessage("x"), ServiceBusMessage("y")])
    mode = ServiceBusReceiveMode.RECEIVE_AND_DELETE
    async with sb_client.get_queue_receiver(QUEUE, receive_mode=mode) as receiver:
        received = await receiver.receive_messages(max_message_count=2, max_wait_time=5)
        received += [] if len(received) == 2 else await receiver.receive_messages(max_wait_time=5)
    assert bodies(received) == ["x", "y"]
    state = await sb_broker.state()
    assert state.queue(QUEUE).total == 0
    assert state.counters.delivered == 2


async def test_abandon_redelivers_with_delivery_count_plus_one(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    async with sb_client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages(ServiceBusMessage("retry me"))
    async with sb_client.get_queue_receiver(QUEUE) as receiver:
        (first,) = await receiver.receive_messages(max_wait_time=5)
        await receiver.abandon_message(first)
        (second,) = await receiver.receive_messages(max_wait_time=5)
        assert second.sequence_number == first.sequence_number
        assert (first.delivery_count or 0, second.delivery_count) == (0, 1)
        assert second.lock_token != first.lock_token
        await receiver.complete_message(second)
    state = await sb_broker.state()
    assert (state.counters.abandoned, state.counters.completed) == (1, 1)


async def test_defer_then_receive_deferred_by_sequence_number(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    async with sb_client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages(ServiceBusMessage("later"))
    async with sb_client.get_queue_receiver(QUEUE) as receiver:
        (message,) = await receiver.receive_messages(max_wait_time=5)
        await receiver.defer_message(message)
        state = await sb_broker.state()
        assert (state.queue(QUEUE).deferred, state.queue(QUEUE).active) == (1, 0)
        assert await receiver.receive_messages(max_wait_time=0.5) == []
        (deferred,) = await receiver.receive_deferred_messages([message.sequence_number])
        assert str(deferred) == "later"
        assert deferred.lock_token is not None
        await receiver.complete_message(deferred)
    await sb_broker.wait_for(lambda s: s.queue(QUEUE).total == 0)


async def test_dead_letter_reason_and_description_read_back_from_dlq(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    async with sb_client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages(ServiceBusMessage("poison", message_id="job-1"))
    async with sb_client.get_queue_receiver(QUEUE) as receiver:
        (message,) = await receiver.receive_messages(max_wait_time=5)
        await receiver.dead_letter_message(message, reason="InvalidJob", error_description="missing input")
    state = await sb_broker.state()
    (dead,) = state.dead_letters(QUEUE).messages
    assert (dead.message_id, dead.dead_letter_reason, dead.dead_letter_description) == (
        "job-1",
        "InvalidJob",
        "missing input",
    )
    async with sb_client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        (received,) = await dlq.receive_messages(max_wait_time=5)
        assert str(received) == "poison"
        assert received.dead_letter_reason == "InvalidJob"
        assert received.dead_letter_error_description == "missing input"
        assert received.dead_letter_source == QUEUE
        await dlq.complete_message(received)
    await sb_broker.wait_for(lambda s: s.dead_letters(QUEUE).total == 0)


async def test_renew_message_lock_moves_expiry_forward(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    async with sb_client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages(ServiceBusMessage("long job"))
    async with sb_client.get_queue_receiver(QUEUE) as receiver:
        (message,) = await receiver.receive_messages(max_wait_time=5)
        before = message.locked_until_utc
        assert before is not None
        renewed = await receiver.renew_message_lock(message)
        assert renewed >= before
        assert message.locked_until_utc == renewed
        await receiver.complete_message(message)
    state = await sb_broker.state()
    assert (state.counters.renewed, state.counters.completed) == (1, 1)


async def test_configured_and_on_demand_queues(
    sb_broker: ServiceBusBroker, sb_client: ServiceBusClient
) -> None:
    async with sb_client.get_queue_sender("Other-Queue") as sender:
        await sender.send_messages(ServiceBusMessage("elsewhere"))

    def other_has_one(state: BrokerState) -> bool:
        return [m.state for m in state.queue("other-queue").messages] == [MessageState.ACTIVE]

    await sb_broker.wait_for(other_has_one)
    assert (await sb_broker.state()).queue(QUEUE).total == 0


async def test_cli_factory_builds_a_broker() -> None:
    import argparse

    from devstack.servicebus import add_arguments, from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    broker = from_args(
        parser.parse_args(["--port", "0", "--lock-duration", "3", "--max-delivery-count", "4"])
    )
    async with broker:
        assert broker.port > 0
        assert broker.store.options(QUEUE).lock_duration_s == 3
        assert broker.store.options(QUEUE).max_delivery_count == 4
        async with make_client(broker) as client, client.get_queue_sender(QUEUE) as sender:
            await sender.send_messages(ServiceBusMessage("via cli"))
    assert not broker.is_running
    assert not [t for t in threading.enumerate() if t.name.startswith("servicebus-broker")]
    await broker.aclose()  # idempotent


async def test_aclose_hangs_up_on_idle_clients_and_leaks_no_thread() -> None:
    broker = ServiceBusBroker()
    await broker.start()
    client = make_client(broker, retry_total=0)
    receiver = client.get_queue_receiver(QUEUE)
    await receiver.__aenter__()  # an idle SDK client never reads our close frame
    assert (await broker.state()).connections == 1
    await broker.aclose()
    assert not [t for t in threading.enumerate() if t.name.startswith("servicebus-broker")]
    with pytest.raises(RuntimeError, match="not running"):
        await broker.state()
    await receiver.close()
    await client.close()


def test_module_cli_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "devstack.servicebus", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--lock-duration" in out
    assert "--max-delivery-count" in out
