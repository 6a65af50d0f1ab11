"""Fixtures for the Service Bus broker conformance tests: a fresh broker per test, fast-retrying clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from azure.servicebus.aio import ServiceBusClient

from devstack.servicebus import QueueOptions, ServiceBusBroker

LOCK_S = 2.0  # short, so lock-expiry and renewal tests finish in seconds
MAX_DELIVERIES = 3
QUEUE = "audio-jobs"
# AutoLockRenewer checks once a second and, for short locks, renews when <= 0.75 * int(seconds left)
# remain: a 2 s lock gives a 0.75 s window it can miss, so the renewal test uses a 3 s lock.
RENEW_QUEUE = "long-jobs"
RENEW_LOCK_S = 3.0


def make_client(broker: ServiceBusBroker, **kwargs: Any) -> ServiceBusClient:
    """The real async SDK client with small retry backoffs (defaults: 3 tries, 0.8 s factor, 120 s cap)."""
    options: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.05, "retry_backoff_max": 0.5}
    options.update(kwargs)
    return ServiceBusClient.from_connection_string(broker.connection_string, **options)


@pytest_asyncio.fixture()
async def sb_broker() -> AsyncIterator[ServiceBusBroker]:
    queues = {
        QUEUE: QueueOptions(lock_duration_s=LOCK_S, max_delivery_count=MAX_DELIVERIES),
        RENEW_QUEUE: QueueOptions(lock_duration_s=RENEW_LOCK_S),
    }
    async with ServiceBusBroker(
        queues=queues, lock_duration_s=LOCK_S, max_delivery_count=MAX_DELIVERIES
    ) as broker:
        yield broker


@pytest_asyncio.fixture()
async def sb_client(sb_broker: ServiceBusBroker) -> AsyncIterator[ServiceBusClient]:
    async with make_client(sb_broker) as client:
        yield client
