"""`JobClient`: how Python services enqueue jobs (validated against Job v1, message_id = job_id, JSON,
W3C traceparent from the caller's current span), plus the dead-letter tools behind `voicelive-worker dlq`.

    async with JobClient.from_connection_string(conn, queue="audio-jobs") as jobs:
        await jobs.enqueue({"version": 1, "job_id": "call-1", "input": {"url": "https://..."}})
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind
from pydantic import ValidationError

from worker.errors import InvalidJob
from worker.jobs import Job
from worker.queue import ATTEMPT_PROPERTY, translate_bus_errors
from worker.telemetry import Attr, SpanName, tracer

__all__ = ["DeadLetter", "JobClient", "job_to_message"]


def job_to_message(job: Job | Mapping[str, Any]) -> ServiceBusMessage:
    """A validated job as a Service Bus message; raises `InvalidJob` before anything is sent."""
    model = _validated(job)
    with _enqueue_span(model):
        return _message(model)


def _validated(job: Job | Mapping[str, Any]) -> Job:
    try:
        return job if isinstance(job, Job) else Job.model_validate(dict(job))
    except ValidationError as exc:
        raise InvalidJob(str(exc.errors(include_url=False, include_input=False)[:3])) from None


def _enqueue_span(model: Job) -> AbstractContextManager[Span]:
    """A PRODUCER span per job (a child of the caller's span, if any). The SDK's own message span is
    created under it when the message is sent or batched, and the worker's `process job` span is
    parented to that and linked with it: one trace per job from here to its settlement."""
    attributes = {Attr.JOB_ID: model.job_id, Attr.MESSAGING_SYSTEM: "servicebus",
                  Attr.MESSAGING_OPERATION: "send", Attr.MESSAGE_ID: model.job_id}  # fmt: skip
    return tracer().start_as_current_span(SpanName.ENQUEUE_JOB, kind=SpanKind.PRODUCER, attributes=attributes)


def _message(model: Job) -> ServiceBusMessage:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)  # traceparent (and tracestate/baggage) of the current span
    properties: dict[str | bytes, Any] = {ATTEMPT_PROPERTY: "1"}
    properties.update(carrier)
    return ServiceBusMessage(
        model.model_dump_json(exclude_defaults=True),
        content_type="application/json",
        message_id=model.job_id,
        application_properties=properties,
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    sequence_number: int
    job_id: str | None
    reason: str | None
    description: str | None
    body: bytes


class JobClient:
    """Enqueues jobs on one queue. Owns its `ServiceBusClient` unless one was passed in."""

    def __init__(self, client: ServiceBusClient, *, queue: str, owns_client: bool = False) -> None:
        self._client = client
        self._queue = queue
        self._owns_client = owns_client
        self._sender: ServiceBusSender | None = None

    @classmethod
    def from_connection_string(cls, connection_string: str, *, queue: str, **options: Any) -> JobClient:
        return cls(
            ServiceBusClient.from_connection_string(connection_string, **options),
            queue=queue,
            owns_client=True,
        )

    @classmethod
    def from_namespace(cls, namespace: str, credential: Any, *, queue: str, **options: Any) -> JobClient:
        """Managed identity / Entra ID: `namespace` is the FQDN, `credential` an async token credential."""
        return cls(ServiceBusClient(namespace, credential, **options), queue=queue, owns_client=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            await sender.close()
        if self._owns_client:
            await self._client.close()

    async def _get_sender(self) -> ServiceBusSender:
        if self._sender is None:
            self._sender = self._client.get_queue_sender(self._queue)
        return self._sender

    async def enqueue(self, job: Job | Mapping[str, Any]) -> str:
        """Send one job; returns its job_id."""
        model = _validated(job)
        sender = await self._get_sender()
        with _enqueue_span(model), translate_bus_errors("enqueue"):
            await sender.send_messages(_message(model))
        return model.job_id

    async def enqueue_many(self, jobs: Iterable[Job | Mapping[str, Any]]) -> list[str]:
        """Send jobs in as few batches as the size limit allows (all validated before the first send)."""
        models = [_validated(job) for job in jobs]
        sender = await self._get_sender()
        with translate_bus_errors("enqueue"):
            batch = await sender.create_message_batch()
            for model in models:
                with _enqueue_span(model):  # the SDK traces the message when it is added
                    message = _message(model)
                    try:
                        batch.add_message(message)
                    except ValueError:  # batch full: send it, start the next
                        await sender.send_messages(batch)
                        batch = await sender.create_message_batch()
                        batch.add_message(message)
            if len(batch):
                await sender.send_messages(batch)
        return [model.job_id for model in models]

    async def dead_letters(self, *, max_count: int = 100) -> list[DeadLetter]:
        """Peek (without locking) up to `max_count` dead-lettered jobs."""
        receiver = self._client.get_queue_receiver(self._queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
        async with receiver:
            with translate_bus_errors("peek dead letters"):
                peeked = await receiver.peek_messages(max_message_count=max_count)
        return [_dead_letter(m) for m in peeked]

    async def redrive(self, *, job_id: str | None = None, max_count: int = 100) -> list[str]:
        """Re-send dead-lettered jobs as fresh attempts, then complete their DLQ messages (send first: a
        crash in between leaves a duplicate, never a lost job). Only `job_id` when given."""
        receiver = self._client.get_queue_receiver(
            self._queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, prefetch_count=0
        )
        sender = await self._get_sender()
        redriven: list[str] = []
        async with receiver:
            with translate_bus_errors("redrive"):
                messages = await receiver.receive_messages(max_message_count=max_count, max_wait_time=2)
                for message in messages:
                    body = b"".join(bytes(part) for part in message.body)
                    if job_id is not None and str(message.message_id or "").split("~")[0] != job_id:
                        await receiver.abandon_message(message)
                        continue
                    # A new message id: the queue's duplicate detection would drop a reused one.
                    copy = ServiceBusMessage(
                        body,
                        content_type="application/json",
                        message_id=f"{_job_id(body) or message.message_id}~redrive-{message.sequence_number}",
                        application_properties={ATTEMPT_PROPERTY: "1"},
                    )
                    await sender.send_messages(copy)
                    await receiver.complete_message(message)
                    redriven.append(_job_id(body) or str(message.message_id))
        return redriven


def _job_id(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    value = data.get("job_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _dead_letter(message: Any) -> DeadLetter:
    body = b"".join(bytes(part) for part in message.body)
    return DeadLetter(
        sequence_number=message.sequence_number,
        job_id=_job_id(body),
        reason=message.dead_letter_reason,
        description=message.dead_letter_error_description,
        body=body,
    )
