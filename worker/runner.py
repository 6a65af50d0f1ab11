"""The queue worker: explicit job slots, per-message lock renewal, settlement, reconnects and a written
shutdown sequence. One asyncio process per replica; Service Bus + KEDA do the distribution."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from worker.blobs import BlobPolicy
from worker.errors import LockLost, Permanent
from worker.jobs import Job, ParsedJob, parse_job
from worker.metrics import instruments
from worker.pipeline import JobProgress, Ports, process_job
from worker.queue import BusUnavailable, JobMessage, QueueConsumer
from worker.settle import Settlement, Settler, classify
from worker.telemetry import Attr, SpanName, consumer_span

__all__ = ["JobEvent", "RunnerOptions", "Worker", "lock_budget_s"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Longest input the decoder accepts (worker.audio.decode default), used to size lock renewal.
MAX_AUDIO_S = 4 * 3600.0


_COUNTER = {
    "complete": "succeeded", "duplicate": "duplicate", "dead_letter": "dead_lettered", "retry": "retried",
    "throttled": "retried", "abandon": "abandoned", "none": "lock_lost",
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class RunnerOptions:
    """Runtime knobs (units in names). Settings map onto the first four; the rest suit tests and ops."""

    max_concurrent_jobs: int = 4
    max_attempts: int = 5
    shutdown_grace_s: float = 60.0
    receive_wait_s: float = 5.0
    retry_base_s: float = 5.0
    retry_cap_s: float = 300.0
    reconnect_base_s: float = 1.0
    reconnect_cap_s: float = 30.0
    lock_renewal_cap_s: float = 6 * 3600.0
    lock_margin_s: float = 600.0


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A job's state change, for observers (the demo's live table, tests)."""

    job_id: str
    state: str  # received | running | <Settlement.action>
    progress: JobProgress | None = None
    reason: str | None = None


def lock_budget_s(job: Job, options: RunnerOptions) -> float:
    """How long to keep renewing a job's lock: the longest audio we accept at the job's pace, plus the
    response tail and a margin, capped. Renewal stops at settlement, so generous is safe; short is not
    (the AutoLockRenewer's 300 s default would lose the lock of any job longer than five minutes)."""
    pace = job.streaming.pace or 50.0  # unpaced streams at tens of × real time
    wire_s = MAX_AUDIO_S / pace
    return min(options.lock_renewal_cap_s, wire_s + job.streaming.response_timeout_s + options.lock_margin_s)


class Worker:
    """Consumes the jobs queue until `shutdown()`.

    Args:
        consumer: the queue adapter (borrowed; closed by `run` on exit).
        ports: what `process_job` needs (borrowed).
        policy: the blob allow-list applied to every message.
        settler: turns outcomes into Service Bus settlement (and failed manifests, result messages).
        options: slots, grace, backoffs.
        observer: called on each job state change; must not block or raise.
    """

    def __init__(
        self,
        consumer: QueueConsumer,
        ports: Ports,
        *,
        policy: BlobPolicy,
        settler: Settler,
        options: RunnerOptions = RunnerOptions(),
        observer: Callable[[JobEvent], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._consumer = consumer
        self._ports = ports
        self._policy = policy
        self._settler = settler
        self._options = options
        self._observer = observer
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(options.max_concurrent_jobs)
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock_lost: set[asyncio.Task[None]] = set()
        self._settling: set[asyncio.Task[None]] = set()  # past processing: a lost lock no longer cancels
        self.is_running = False
        self.counters = {"received": 0, "succeeded": 0, "duplicate": 0, "dead_lettered": 0, "retried": 0,
                         "abandoned": 0, "lock_lost": 0}  # fmt: skip

    def __repr__(self) -> str:
        state = f"running={self.is_running} draining={self.is_draining} in_flight={len(self._tasks)}"
        return f"<Worker {state} {self.counters}>"

    @property
    def is_draining(self) -> bool:
        return self._stop.is_set()

    @property
    def ready(self) -> bool:
        return self.is_running and not self.is_draining and self._consumer.connected

    def shutdown(self) -> None:
        """Stop taking new messages; `run` then drains. Safe to call twice, and before `run`."""
        if not self._stop.is_set():
            log.info("shutdown requested: draining %d job(s)", len(self._tasks))
        self._stop.set()

    async def run(self) -> None:
        """Receive and process until shutdown, then drain. Raises `BusFatal` if the queue is unusable."""
        self.is_running = True
        try:
            await self._receive_loop()
        finally:
            # Shutdown, in order: (1) no more receives (the loop has ended); (2) in-flight jobs get the
            # grace period; (3) the rest are cancelled, which abandons their messages; (4) links close.
            await self._drain()
            await self._consumer.aclose()
            self.is_running = False

    async def _receive_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if await self._until_stop(self._slots.acquire()) is None:
                break
            if self._stop.is_set():  # the slot came just as shutdown did
                self._slots.release()
                break
            # An idle receive waits up to receive_wait_s; shutdown interrupts it rather than waiting it out
            # (a message the link took meanwhile is released when the link closes).
            received = await self._until_stop(self._consumer.receive(max_wait_s=self._options.receive_wait_s))
            if received is None:
                self._slots.release()
                break
            try:
                message = received.result()
            except BusUnavailable as exc:
                self._slots.release()
                failures += 1
                delay = self._backoff(failures, self._options.reconnect_base_s, self._options.reconnect_cap_s)
                log.warning("↻ receive failed (%s); reconnecting in %.1f s", exc, delay)
                await self._consumer.reset()
                await self._until_stop(asyncio.sleep(delay))
                continue
            except BaseException:
                self._slots.release()
                raise
            failures = 0
            if message is None:
                self._slots.release()
                continue
            self.counters["received"] += 1
            task = asyncio.create_task(self._handle(message), name=f"job-{message.message_id}")
            self._tasks.add(task)
            task.add_done_callback(self._job_finished)

    def _job_finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._lock_lost.discard(task)
        self._settling.discard(task)
        self._slots.release()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("job task crashed", exc_info=exc)

    async def _until_stop(self, awaitable: Awaitable[T]) -> asyncio.Future[T] | None:
        """Await `awaitable` unless shutdown comes first (then cancel it and return None). Returns the
        finished future: its result or exception is the caller's to take."""
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
        return None if work.cancelled() else work

    async def _drain(self) -> None:
        if not self._tasks:
            return
        grace = self._options.shutdown_grace_s
        log.info("draining %d job(s) for up to %.0f s", len(self._tasks), grace)
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel("shutdown: grace period over")
        if pending:
            await asyncio.wait(pending)

    def _backoff(self, attempt: int, base_s: float, cap_s: float) -> float:
        """Exponential backoff with jitter: base·2^(attempt−1), capped, scaled by a factor in [0.5, 1]."""
        delay: float = min(cap_s, base_s * 2 ** (attempt - 1)) * (0.5 + self._rng.random() / 2)
        return delay

    def _emit(self, event: JobEvent) -> None:
        if self._observer is not None:
            try:
                self._observer(event)
            except Exception:
                log.exception("job observer failed")

    async def _handle(self, message: JobMessage) -> None:
        # One CONSUMER span per delivery, parented to (and linked with) the enqueuer's traceparent.
        attributes = {
            Attr.MESSAGING_SYSTEM: "servicebus", Attr.MESSAGING_OPERATION: "process",
            Attr.MESSAGE_ID: message.message_id or "", Attr.DELIVERY_COUNT: message.delivery_count,
            Attr.JOB_ATTEMPT: message.attempt,
        }  # fmt: skip
        with consumer_span(SpanName.PROCESS_JOB, message.properties, attributes=attributes):
            await self._handle_job(message)

    async def _handle_job(self, message: JobMessage) -> None:
        started = time.monotonic()
        task = asyncio.current_task()
        assert task is not None
        job_id = message.message_id or "?"
        parsed: ParsedJob | None = None
        progress: JobProgress | None = None
        try:
            parsed = parse_job(message.body, policy=self._policy)
            job_id = parsed.job.job_id
            trace.get_current_span().set_attribute(Attr.JOB_ID, job_id)
            progress = JobProgress(job_id)
            log.info("→ %s attempt %d (delivery %d)", job_id, message.attempt, message.delivery_count)
            self._emit(JobEvent(job_id, "running", progress))

            def lock_failed(_: JobMessage, error: BaseException | None) -> None:
                if task in self._settling:  # settlement itself will find out (LockLost) and not settle
                    log.warning("lock renewal for %s failed (%r) while settling", job_id, error)
                    return
                log.warning("lock renewal for %s failed (%r): cancelling the job", job_id, error)
                self._lock_lost.add(task)
                task.cancel("lock lost")

            self._consumer.renew_lock(message, budget_s=lock_budget_s(parsed.job, self._options),
                                      on_failure=lock_failed)  # fmt: skip
            span_ctx = trace.get_current_span().get_span_context()
            trace_id = f"{span_ctx.trace_id:032x}" if span_ctx.is_valid else None
            outcome = await process_job(parsed, self._ports, attempt=message.attempt, trace_id=trace_id,
                                        progress=progress)  # fmt: skip
            settlement = classify(
                outcome=outcome, attempt=message.attempt, max_attempts=self._options.max_attempts
            )
        except asyncio.CancelledError:
            if task in self._lock_lost:
                self.counters["lock_lost"] += 1
                _record(Settlement(action="none", reason="LockLost"), time.monotonic() - started)
                log.warning("⊘ %s lock lost: not settled, it will be redelivered", job_id)
                self._emit(JobEvent(job_id, "lock_lost", progress))
                return  # not settled: the broker redelivers
            await self._settle(message, parsed, Settlement(action="abandon", reason="shutdown"), started)
            raise
        except (Permanent, LockLost, Exception) as exc:
            if not isinstance(exc, Permanent):  # process_job records its Permanent failures itself
                trace.get_current_span().record_exception(exc)
            settlement = classify(error=exc, attempt=message.attempt, max_attempts=self._options.max_attempts)
        if settlement.action in {"retry", "throttled"}:  # never sooner than backoff, even on Retry-After: 0
            settlement = settlement.with_delay(
                max(settlement.delay_s, self._backoff(message.attempt, self._options.retry_base_s,
                                                      self._options.retry_cap_s))
            )  # fmt: skip
        self._settling.add(task)
        await self._settle(message, parsed, settlement, started)
        self._emit(JobEvent(job_id, settlement.action, progress, settlement.reason))

    async def _settle(
        self, message: JobMessage, parsed: ParsedJob | None, settlement: Settlement, started: float
    ) -> None:
        self.counters[_COUNTER[settlement.action]] += 1
        _record(settlement, time.monotonic() - started)
        await asyncio.shield(
            self._settler.settle(message, parsed, settlement, elapsed_s=time.monotonic() - started)
        )


def _record(settlement: Settlement, elapsed_s: float) -> None:
    """The settlement on the current `process job` span (status, action, reason code) and in metrics."""
    span = trace.get_current_span()
    status = settlement.status or ("abandoned" if settlement.action in {"abandon", "none"} else "retrying")
    span.set_attribute(Attr.JOB_ACTION, settlement.action)
    span.set_attribute(Attr.JOB_STATUS, status)
    span.set_attribute(Attr.JOB_DURATION_S, round(elapsed_s, 3))
    if settlement.reason:
        span.set_attribute(Attr.JOB_REASON, settlement.reason)
    if settlement.action not in {"complete", "duplicate"}:
        span.set_status(Status(StatusCode.ERROR, settlement.reason or settlement.action))
    attrs = {"status": status, "action": settlement.action, "reason": settlement.reason or "none"}
    instruments().jobs.add(1, attrs)
    instruments().job_duration.record(elapsed_s, {"status": status})
