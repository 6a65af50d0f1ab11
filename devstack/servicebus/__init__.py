"""A local Azure Service Bus broker (AMQP 1.0 on python-qpid-proton) for the real `azure-servicebus` SDK.

Start one with `async with ServiceBusBroker(...) as broker:` and hand `broker.env()` (or
`broker.connection_string`) to the code under test; inspect it with `await broker.state()` /
`await broker.wait_for(...)`, and inject faults with `detach_links`, `close_connections`, `reject_auth`,
`lose_next_lock`, `server_busy` and `pause_delivery`. The wire contract is research/servicebus.md §1.
"""

from __future__ import annotations

import argparse

# Public types
from .broker import DEV_KEY, DEV_KEY_NAME, BrokerState, ServiceBusBroker
from .queues import Counters, MessageState, MessageView, QueueOptions, QueueSnapshot

__all__ = [
    # CLI factory (devstack.__main__)
    "DEV_KEY",
    "DEV_KEY_NAME",
    # Inspection
    "BrokerState",
    "Counters",
    "MessageState",
    "MessageView",
    # Broker and settings
    "QueueOptions",
    "QueueSnapshot",
    "ServiceBusBroker",
    "add_arguments",
    "from_args",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m devstack servicebus`."""
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=5672, help="listen port; 0 picks a free one (default 5672)"
    )
    parser.add_argument(
        "--queue", default="audio-jobs", help="queue named in SERVICEBUS_QUEUE (default audio-jobs)"
    )
    parser.add_argument(
        "--lock-duration", type=float, default=30.0, metavar="S", help="lock duration, seconds"
    )
    parser.add_argument(
        "--max-delivery-count", type=int, default=10, metavar="N", help="deliveries before DLQ"
    )
    parser.add_argument("--key-name", default=DEV_KEY_NAME, help="SharedAccessKeyName clients must use")
    parser.add_argument("--key", default=DEV_KEY, help="SharedAccessKey clients must sign with")


def from_args(args: argparse.Namespace) -> ServiceBusBroker:
    return ServiceBusBroker(
        host=args.host,
        port=args.port,
        key_name=args.key_name,
        key=args.key,
        lock_duration_s=args.lock_duration,
        max_delivery_count=args.max_delivery_count,
        default_queue=args.queue,
    )
