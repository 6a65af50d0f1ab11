"""The queue worker against the devstack broker, Azurite and simulator: every row of the settlement
table, lock renewal beyond the lock duration, admission under a burst, faults at scale."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from runtime_harness import FAST_RETRY, QUEUE, stack

from devstack.azurite import Azurite
from devstack.voicelive import CloseAfter, CloseKind, Refuse, VoiceLiveSimulator
from worker.admission import TokenBucket
from worker.runner import RunnerOptions

pytestmark = pytest.mark.integration
SUCCEEDED = {"complete", "duplicate"}  # a job's final settlement when it succeeded (duplicate: on redelivery)


async def test_success_and_duplicate(azurite: Azurite, voicelive: VoiceLiveSimulator) -> None:
    async with stack(azurite, voicelive) as s:
        body = await s.job()
        await s.enqueue([body])
        run = await s.run_until_settled()
        assert run.actions() == {body["job_id"]: "complete"}
        first = await s.manifest(body["job_id"])
        assert first is not None and first.status == "succeeded"
        await s.enqueue([body | {"job_id": body["job_id"]}])  # a redelivered/duplicate job
        connections = len(voicelive.connections)
        run = await s.run_until_settled()
        assert run.actions() == {body["job_id"]: "duplicate"}
        assert len(voicelive.connections) == connections
        assert await s.manifest(body["job_id"]) == first


async def test_permanent_errors_dead_letter_with_reason(
    azurite: Azurite, voicelive: VoiceLiveSimulator
) -> None:
    async with stack(azurite, voicelive) as s:
        bad_audio = await s.job("bad/not_audio.wav")
        forbidden = await s.job() | {"input": {"url": "https://evil.blob.core.windows.net/x/y.wav"}}
        await s.enqueue([bad_audio, forbidden], raw=[b"not json at all", b'{"version": 2}'])
        run = await s.run_until_settled(dead_letters=4)
        letters = {m.message_id: m for m in run.state.dead_letters(QUEUE).messages}  # type: ignore[union-attr]
        reasons = Counter(m.dead_letter_reason for m in letters.values())
        assert reasons == Counter(
            {"UnsupportedAudio": 1, "InputForbidden": 1, "InvalidMessage": 1, "InvalidJob": 1}
        )
        assert letters[bad_audio["job_id"]].dead_letter_description
        failed = await s.manifest(bad_audio["job_id"])
        assert failed is not None and (failed.status, failed.reason) == ("failed", "UnsupportedAudio")
        assert await s.manifest(forbidden["job_id"]) is None  # its output location is not trusted


async def test_transient_failure_is_retried_with_a_new_attempt(
    azurite: Azurite, voicelive: VoiceLiveSimulator
) -> None:
    async with stack(azurite, voicelive) as s:
        voicelive.faults.next(CloseAfter(kind=CloseKind.DROP, appends=10))
        body = await s.job()
        await s.enqueue([body])
        run = await s.run_until_settled()
        assert [e.state for e in run.events if e.state != "running"] == ["retry", "complete"]
        manifest = await s.manifest(body["job_id"])
        assert manifest is not None and (manifest.status, manifest.attempt) == ("succeeded", 2)


async def test_retries_exhausted_dead_letters_with_failed_manifest(
    azurite: Azurite, voicelive: VoiceLiveSimulator
) -> None:
    async with stack(azurite, voicelive) as s:
        voicelive.faults.always(Refuse(status=500))
        body = await s.job()
        await s.enqueue([body])
        options = RunnerOptions(max_attempts=3, receive_wait_s=0.5, **FAST_RETRY)
        run = await s.run_until_settled(dead_letters=1, options=options)
        assert [e.state for e in run.events if e.state != "running"] == ["retry", "retry", "dead_letter"]
        letter = run.state.dead_letters(QUEUE).messages[0]  # type: ignore[union-attr]
        assert letter.dead_letter_reason == "RetriesExhausted"
        assert "3 attempt" in (letter.dead_letter_description or "")
        manifest = await s.manifest(body["job_id"])
        assert manifest is not None and (manifest.reason, manifest.attempt) == ("RetriesExhausted", 3)


async def test_throttling_backs_off_without_burning_attempts(
    azurite: Azurite, voicelive: VoiceLiveSimulator
) -> None:
    async with stack(azurite, voicelive) as s:
        voicelive.faults.next(Refuse(status=429, retry_after_s=1), count=2)
        body = await s.job()
        await s.enqueue([body])
        run = await s.run_until_settled(
            options=RunnerOptions(max_attempts=1, receive_wait_s=0.5, **FAST_RETRY)
        )
        assert [e.state for e in run.events if e.state != "running"] == ["throttled", "throttled", "complete"]
        manifest = await s.manifest(body["job_id"])
        assert manifest is not None and manifest.attempt == 1  # max_attempts=1, yet it succeeded


async def test_lock_lost_is_not_settled_and_redelivered(
    azurite: Azurite, voicelive: VoiceLiveSimulator
) -> None:
    # 3 s locks: the SDK's AutoLockRenewer ticks once a second and cannot keep a 2 s lock alive.
    async with stack(azurite, voicelive, lock_s=3.0) as s:
        body = await s.job(streaming={"pace": 1.0})  # ~3.3 s on the wire: renewal is needed
        await s.enqueue([body])
        s.broker.lose_next_lock()
        run = await s.run_until_settled()
        states = [e.state for e in run.events if e.state != "running"]
        assert states == ["lock_lost", "complete"]
        manifest = await s.manifest(body["job_id"])
        assert manifest is not None and manifest.status == "succeeded"
        counters = run.state.counters  # type: ignore[union-attr]
        assert counters.lock_expirations >= 1 or counters.delivered >= 2


async def test_job_four_times_the_lock_duration_keeps_its_lock(
    azurite: Azurite, voicelive: VoiceLiveSimulator
) -> None:
    async with stack(azurite, voicelive, lock_s=3.0) as s:
        body = await s.job("caller_3turns_16k.wav", streaming={"pace": 1.3, "trailing_silence_ms": 0})
        await s.enqueue([body])  # 16 s of audio at 1.3× ≈ 12.3 s ≥ 4 × 3 s
        run = await s.run_until_settled(timeout_s=60)
        assert run.actions() == {body["job_id"]: "complete"}
        counters = run.state.counters  # type: ignore[union-attr]
        assert counters.lock_expirations == 0
        assert counters.renewed >= 3
        assert counters.delivered == 1


async def test_connect_rate_limit_holds_under_a_burst(
    azurite: Azurite, voicelive: VoiceLiveSimulator
) -> None:
    async with stack(azurite, voicelive) as s:
        bodies = [await s.job(streaming={"pace": 20.0, "trailing_silence_ms": 0}) for _ in range(50)]
        await s.enqueue(bodies)
        before = len(voicelive.connections)
        bucket = TokenBucket(600, burst=5)  # 10 new sessions per second after a burst of 5
        options = RunnerOptions(max_concurrent_jobs=50, receive_wait_s=0.5, **FAST_RETRY)
        run = await s.run_until_settled(options=options, bucket=bucket, timeout_s=120)
        # Delivery is at-least-once: a redelivery after a lock hiccup ends as "duplicate", never as a
        # second run — every job still has exactly one succeeded manifest.
        assert set(run.actions().values()) <= SUCCEEDED
        assert len(run.actions()) == 50
        for body in bodies:
            manifest = await s.manifest(body["job_id"])
            assert manifest is not None and manifest.status == "succeeded"
        times = sorted(c.accepted_at for c in voicelive.connections[before:] if c.accepted_at is not None)
        assert len(times) == 50
        # In any window of w seconds at most burst + rate·w connects (small tolerance for clock reads).
        for i, start in enumerate(times):
            for j in range(i, len(times)):
                window = times[j] - start
                assert j - i + 1 <= 5 + 10 * window + 1, f"{j - i + 1} connects in {window:.2f} s"


async def test_hundred_jobs_with_injected_faults_all_end_right(
    azurite: Azurite, voicelive: VoiceLiveSimulator
) -> None:
    rng = random.Random(7)
    async with stack(azurite, voicelive) as s:
        good = [await s.job(streaming={"pace": 20.0, "trailing_silence_ms": 0}) for _ in range(80)]
        bad_audio = [await s.job("bad/garbage.flac") for _ in range(10)]
        raw = [b"{" * rng.randint(1, 5) for _ in range(5)] + [b'{"version":1,"job_id":"../x"}'] * 5
        faults = [CloseAfter(kind=CloseKind.DROP, appends=5), Refuse(status=429, retry_after_s=0),
                  Refuse(status=503)]  # fmt: skip
        for _ in range(12):  # drops and throttles hit whichever jobs connect next
            voicelive.faults.next(rng.choice(faults))
        await s.enqueue(good + bad_audio, raw=raw)
        options = RunnerOptions(max_concurrent_jobs=8, receive_wait_s=0.5, max_attempts=5, **FAST_RETRY)
        run = await s.run_until_settled(dead_letters=20, options=options, timeout_s=240)
        finals = run.actions()
        for body in good:
            assert finals[body["job_id"]] in SUCCEEDED, body["job_id"]
            manifest = await s.manifest(body["job_id"])
            assert manifest is not None and manifest.status == "succeeded"
        for body in bad_audio:
            assert finals[body["job_id"]] == "dead_letter"
        reasons = Counter(m.dead_letter_reason for m in run.state.dead_letters(QUEUE).messages)  # type: ignore[union-attr]
        assert reasons == Counter({"UnsupportedAudio": 10, "InvalidMessage": 5, "InvalidJob": 5})
