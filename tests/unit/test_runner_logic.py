"""The runtime's pure decisions, without a broker: settlement mapping, retry backoff bounds, lock budgets,
the connect token bucket on a fake clock, and decoding of received messages (bytes keys, None counts)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.admission import TokenBucket
from worker.errors import InvalidJob, LockLost, Throttled, Transient, UnsupportedAudio
from worker.jobs import Job
from worker.pipeline import JobOutcome
from worker.queue import JobMessage, job_message
from worker.runner import MAX_AUDIO_S, RunnerOptions, Worker, lock_budget_s
from worker.settle import classify

# ---- settlement: one row per outcome -----------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    duplicate: bool = False


def outcome(*, duplicate: bool = False) -> JobOutcome:
    return cast(JobOutcome, _Outcome(duplicate))


def test_success_completes_and_a_duplicate_completes_without_output() -> None:
    done = classify(outcome=outcome(), attempt=1, max_attempts=5)
    dup = classify(outcome=outcome(duplicate=True), attempt=3, max_attempts=5)
    assert (done.action, done.status) == ("complete", "succeeded")
    assert (dup.action, dup.status) == ("duplicate", "succeeded")


def test_permanent_dead_letters_with_its_reason_and_detail() -> None:
    s = classify(error=UnsupportedAudio("no audio stream"), attempt=1, max_attempts=5)
    assert (s.action, s.reason, s.description, s.status) == (
        "dead_letter", "UnsupportedAudio", "no audio stream", "failed",
    )  # fmt: skip
    s = classify(error=InvalidJob("bad job_id"), attempt=5, max_attempts=5)
    assert (s.action, s.reason) == ("dead_letter", "InvalidJob")  # permanent wins over the attempt cap


def test_lock_lost_is_never_settled() -> None:
    s = classify(error=LockLost("renewal failed"), attempt=1, max_attempts=5)
    assert (s.action, s.status) == ("none", None)


def test_throttled_keeps_its_attempt_and_honours_retry_after() -> None:
    s = classify(error=Throttled("429", retry_after_s=7), attempt=5, max_attempts=5)
    assert (s.action, s.next_attempt, s.delay_s, s.status) == ("throttled", 5, 7, None)


def test_transient_retries_with_the_next_attempt_until_the_cap() -> None:
    s = classify(error=Transient("dropped", retry_after_s=3), attempt=2, max_attempts=5)
    assert (s.action, s.next_attempt, s.delay_s, s.status) == ("retry", 3, 3, None)
    s = classify(error=Transient("dropped"), attempt=5, max_attempts=5)
    assert (s.action, s.reason, s.status) == ("dead_letter", "RetriesExhausted", "failed")
    assert s.description.startswith("5 attempt(s); last: dropped")


def test_an_unexpected_exception_is_retried_like_a_transient_one() -> None:
    s = classify(error=KeyError("bug"), attempt=1, max_attempts=2)
    assert (s.action, s.next_attempt) == ("retry", 2)
    assert "unexpected KeyError" in s.description
    s = classify(error=KeyError("bug"), attempt=2, max_attempts=2)
    assert (s.action, s.reason) == ("dead_letter", "RetriesExhausted")


# ---- retry backoff ------------------------------------------------------------------------------------


class _FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def backoff(attempt: int, *, draw: float, base_s: float = 5.0, cap_s: float = 300.0) -> float:
    worker = Worker(cast(Any, None), cast(Any, None), policy=cast(Any, None), settler=cast(Any, None),
                    rng=_FixedRandom(draw))  # fmt: skip
    return worker._backoff(attempt, base_s, cap_s)


def test_backoff_doubles_per_attempt_with_jitter_between_half_and_full() -> None:
    assert [backoff(n, draw=0.0) for n in (1, 2, 3, 4)] == [2.5, 5.0, 10.0, 20.0]
    assert [backoff(n, draw=1.0) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]


@given(attempt=st.integers(1, 60), draw=st.floats(0.0, 1.0, exclude_max=True))
def test_backoff_stays_within_its_bounds_and_cap(attempt: int, draw: float) -> None:
    delay = backoff(attempt, draw=draw, base_s=5.0, cap_s=300.0)
    ceiling = min(300.0, 5.0 * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling <= 300.0


# ---- lock renewal budget ------------------------------------------------------------------------------


def make_job(**streaming: Any) -> Job:
    return Job.model_validate(
        {"version": 1, "job_id": "j-1", "input": {"url": "https://a.blob.core.windows.net/c/x.wav"},
         "streaming": streaming}
    )  # fmt: skip


def test_lock_budget_covers_the_longest_input_at_the_jobs_pace_plus_tail_and_margin() -> None:
    options = RunnerOptions(lock_margin_s=600.0, lock_renewal_cap_s=10 * 3600.0)
    job = make_job(pace=4.0, response_timeout_s=30.0)
    assert lock_budget_s(job, options) == MAX_AUDIO_S / 4.0 + 30.0 + 600.0


def test_lock_budget_is_capped_and_an_unpaced_job_gets_a_finite_one() -> None:
    options = RunnerOptions(lock_margin_s=600.0, lock_renewal_cap_s=3 * 3600.0)
    assert lock_budget_s(make_job(pace=1.0), options) == 3 * 3600.0  # 4 h + tail + margin > cap
    unpaced = lock_budget_s(make_job(pace=0.0, response_timeout_s=30.0), options)
    assert unpaced == MAX_AUDIO_S / 50.0 + 30.0 + 600.0
    assert unpaced > RunnerOptions().lock_margin_s  # never below the margin, however fast


# ---- token bucket on a fake clock ---------------------------------------------------------------------


@dataclass
class FakeTime:
    """A clock whose `sleep` advances it at once and records each requested sleep."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def bucket(rate: float, t: FakeTime, *, burst: int | None = None) -> TokenBucket:
    return TokenBucket(rate, burst=burst, clock=t.clock, sleep=t.sleep)


async def test_bucket_grants_a_burst_then_one_token_per_interval() -> None:
    t = FakeTime()
    b = bucket(60, t, burst=3)  # one a second after a burst of three
    for _ in range(3):
        await b.acquire()
    assert t.sleeps == []
    await b.acquire()
    await b.acquire()
    assert t.sleeps == [pytest.approx(1.0), pytest.approx(1.0)]
    assert b.granted == 5


async def test_bucket_refills_with_elapsed_time_up_to_its_capacity() -> None:
    t = FakeTime()
    b = bucket(30, t)  # capacity 30, one token every 2 s
    for _ in range(30):
        await b.acquire()
    t.now += 3600.0  # an idle hour refills to the capacity, not beyond
    for _ in range(30):
        await b.acquire()
    assert t.sleeps == []
    await b.acquire()
    assert t.sleeps == [pytest.approx(2.0)]


async def test_pause_holds_every_token_until_it_ends() -> None:
    t = FakeTime()
    b = bucket(600, t, burst=10)
    b.pause(7.0)
    b.pause(2.0)  # a shorter pause does not shorten the current one
    await b.acquire()
    assert t.sleeps == [pytest.approx(7.0)]
    assert b.granted == 1


async def test_bucket_never_exceeds_rate_times_window_plus_burst() -> None:
    t = FakeTime()
    b = bucket(120, t, burst=5)  # two a second
    grants: list[float] = []
    for _ in range(50):
        await b.acquire()
        grants.append(t.now)
    for i, start in enumerate(grants):
        for j in range(i, len(grants)):
            assert j - i + 1 <= 5 + 2.0 * (grants[j] - start) + 1e-9


async def test_concurrent_waiters_are_served_in_order() -> None:
    t = FakeTime()
    b = bucket(60, t, burst=1)
    order: list[int] = []

    async def take(n: int) -> None:
        await b.acquire()
        order.append(n)

    async with asyncio.TaskGroup() as tg:
        for n in range(5):
            tg.create_task(take(n))
    assert order == [0, 1, 2, 3, 4]
    assert t.now == pytest.approx(1004.0)


def test_bucket_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="rate_per_minute"):
        TokenBucket(0)


# ---- decoding received messages -----------------------------------------------------------------------


@dataclass
class _Received:
    """The attributes of a ServiceBusReceivedMessage that `job_message` reads."""

    body: Any
    application_properties: dict[Any, Any] | None = None
    delivery_count: int | None = None
    message_id: Any = "m-1"


def decode(raw: _Received) -> JobMessage:
    return job_message(cast(Any, raw))


def test_bytes_keys_and_values_are_decoded_and_a_none_delivery_count_is_zero() -> None:
    props = {b"attempt": b"3", b"traceparent": b"00-ab", "x": 5}
    msg = decode(_Received(body=iter([b'{"a":', b"1}"]), application_properties=props))
    assert msg.body == b'{"a":1}'
    assert msg.properties == {"attempt": "3", "traceparent": "00-ab", "x": "5"}
    assert (msg.attempt, msg.delivery_count, msg.message_id) == (3, 0, "m-1")


def test_missing_or_junk_attempt_is_the_first_attempt() -> None:
    assert decode(_Received(body=[b"{}"])).attempt == 1
    assert decode(_Received(body=[b"{}"], application_properties={b"attempt": b"many"})).attempt == 1
    assert decode(_Received(body=[b"{}"], application_properties={b"attempt": b"-4"})).attempt == 1


def test_delivery_count_and_message_id_pass_through() -> None:
    msg = decode(_Received(body=[b"{}"], delivery_count=4, message_id=None))
    assert (msg.delivery_count, msg.message_id) == (4, None)


def test_a_value_body_is_re_encoded_as_json() -> None:
    msg = decode(_Received(body={"version": 1}))
    assert msg.body == b'{"version": 1}'
    assert decode(_Received(body=None)).body == b""
