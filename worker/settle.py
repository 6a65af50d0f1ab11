"""Settlement (DESIGN.md §6): one short mapping from a job's outcome to what happens to its message.

outcome                          Service Bus                          outputs
succeeded                        complete                             artifacts, manifest (pipeline)
duplicate (succeeded manifest)   complete                             none
Permanent(reason)                dead-letter reason + description     failed manifest (pipeline)
Throttled                        scheduled copy, same attempt; complete  none
Transient, attempt < max         scheduled copy, attempt + 1; complete    none
Transient, attempt = max         dead-letter RetriesExhausted         failed manifest
LockLost                         nothing (the broker redelivers)      none
shutdown, grace over             abandon                              none
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusSender
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode

from worker.errors import LockLost, Permanent, Reason, Throttled, Transient
from worker.jobs import ParsedJob
from worker.pipeline import JobOutcome, Ports, commit_failure
from worker.queue import (
    THROTTLED_PROPERTY,
    BusFatal,
    BusUnavailable,
    JobMessage,
    QueueConsumer,
    translate_bus_errors,
)
from worker.telemetry import Attr, SpanName, tracer

__all__ = ["ResultsPublisher", "Settlement", "Settler", "classify"]

log = logging.getLogger(__name__)

Action = Literal["complete", "duplicate", "dead_letter", "retry", "throttled", "abandon", "none"]
#: Throttled retries keep their attempt number; past this many in a row they start to count.
MAX_FREE_THROTTLES = 20


@dataclass(frozen=True, slots=True)
class Settlement:
    action: Action
    reason: str | None = None
    description: str = ""
    delay_s: float = 0.0
    next_attempt: int | None = None
    status: Literal["succeeded", "failed"] | None = None

    def with_delay(self, delay_s: float) -> Settlement:
        return dataclasses.replace(self, delay_s=delay_s)


def classify(
    *,
    outcome: JobOutcome | None = None,
    error: BaseException | None = None,
    attempt: int,
    max_attempts: int,
) -> Settlement:
    """Outcome or error → settlement. Unknown exceptions are bugs, retried like transient failures."""
    if outcome is not None:
        return Settlement("duplicate" if outcome.duplicate else "complete", status="succeeded")
    if isinstance(error, Permanent):
        return Settlement("dead_letter", reason=str(error.reason), description=error.detail, status="failed")
    if isinstance(error, LockLost):
        return Settlement("none", reason="LockLost", description=error.detail)
    if isinstance(error, Throttled):
        return Settlement(
            "throttled", reason="Throttled", description=error.detail,
            delay_s=error.retry_after_s or 0.0, next_attempt=attempt,
        )  # fmt: skip
    detail = error.detail if isinstance(error, Transient) else f"unexpected {type(error).__name__}: {error}"
    if not isinstance(error, Transient):
        log.error("unexpected error, treated as transient", exc_info=error)
    if attempt >= max_attempts:
        return Settlement(
            "dead_letter", reason=str(Reason.RETRIES_EXHAUSTED),
            description=f"{attempt} attempt(s); last: {detail}", status="failed",
        )  # fmt: skip
    retry_after = error.retry_after_s if isinstance(error, Transient) else None
    return Settlement("retry", reason="Transient", description=detail, delay_s=retry_after or 0.0,
                      next_attempt=attempt + 1)  # fmt: skip


class ResultsPublisher:
    """Sends `{job_id, status, reason, manifest_url}` to the optional results queue (sender borrowed)."""

    def __init__(self, sender: ServiceBusSender) -> None:
        self._sender = sender

    async def publish(
        self, *, job_id: str, status: str, reason: str | None, manifest_url: str | None
    ) -> None:
        body = {"job_id": job_id, "status": status, "reason": reason, "manifest_url": manifest_url}
        with tracer().start_as_current_span(
            SpanName.PUBLISH_RESULT, kind=SpanKind.PRODUCER, attributes={Attr.JOB_ID: job_id}
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)  # the job's trace continues in whoever reads the results queue
            properties: dict[str | bytes, Any] = {}
            properties.update(carrier)
            message = ServiceBusMessage(
                json.dumps(body), content_type="application/json", message_id=f"{job_id}:result",
                application_properties=properties,
            )  # fmt: skip
            with translate_bus_errors("publish result"):
                await self._sender.send_messages(message)


class Settler:
    """Carries out settlements against the queue, shielded from cancellation and bounded in time."""

    def __init__(
        self,
        consumer: QueueConsumer,
        ports: Ports,
        *,
        results: ResultsPublisher | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self._consumer = consumer
        self._ports = ports
        self._results = results
        self._timeout_s = timeout_s

    async def settle(
        self, message: JobMessage, parsed: ParsedJob | None, settlement: Settlement, *, elapsed_s: float
    ) -> None:
        job_id = parsed.job.job_id if parsed else (message.message_id or "?")
        attributes = {Attr.JOB_ID: job_id, Attr.JOB_ACTION: settlement.action}
        with tracer().start_as_current_span(SpanName.SETTLE, attributes=attributes) as span:
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._apply(message, parsed, settlement)
            except LockLost as exc:
                span.set_status(Status(StatusCode.ERROR, "LockLost"))
                log.warning("⊘ %s not settled (%s): it will be redelivered", job_id, exc.detail)
                return
            except (BusUnavailable, TimeoutError) as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                log.warning("⊘ %s settlement failed (%s): it will be redelivered", job_id, exc)
                return
            except BusFatal:
                span.set_status(Status(StatusCode.ERROR, "BusFatal"))
                log.exception("⊘ %s settlement refused", job_id)
                return
        glyph = {"complete": "←", "duplicate": "←", "retry": "↻", "throttled": "↻", "dead_letter": "✗"}
        log.info(
            "%s %s %s%s attempt %d in %.1f s",
            glyph.get(settlement.action, "⊘"), job_id, settlement.action,
            f" {settlement.reason}" if settlement.reason else "", message.attempt, elapsed_s,
        )  # fmt: skip

    async def _apply(self, message: JobMessage, parsed: ParsedJob | None, settlement: Settlement) -> None:
        action = settlement.action
        if action == "throttled":
            throttles = int(message.properties.get(THROTTLED_PROPERTY, "0") or 0) + 1
            if throttles > MAX_FREE_THROTTLES:  # persistent throttling starts to burn attempts
                action, settlement = (
                    "retry",
                    dataclasses.replace(settlement, next_attempt=message.attempt + 1),
                )
        if settlement.reason == Reason.RETRIES_EXHAUSTED and parsed is not None:
            await commit_failure(parsed, self._ports, reason=str(Reason.RETRIES_EXHAUSTED),
                                 detail=settlement.description, attempt=message.attempt)  # fmt: skip
        if settlement.status is not None and self._results is not None:
            await self._publish(message, parsed, settlement)
        if action in {"complete", "duplicate"}:
            await self._consumer.complete(message)
        elif action == "dead_letter":
            await self._consumer.dead_letter(
                message, reason=settlement.reason or "Unknown", description=settlement.description
            )
        elif action in {"retry", "throttled"}:
            await self._consumer.retry_later(
                message, delay_s=settlement.delay_s, attempt=settlement.next_attempt or message.attempt,
                throttled=action == "throttled",
            )  # fmt: skip
        elif action == "abandon":
            await self._consumer.abandon(message)

    async def _publish(self, message: JobMessage, parsed: ParsedJob | None, settlement: Settlement) -> None:
        assert self._results is not None and settlement.status is not None
        job_id = parsed.job.job_id if parsed else (message.message_id or "unknown")
        manifest_url = parsed.output.child("manifest.json").url if parsed else None
        await self._results.publish(job_id=job_id, status=settlement.status, reason=settlement.reason,
                                    manifest_url=manifest_url)  # fmt: skip
