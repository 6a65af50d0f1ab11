"""The real `voicelive-worker run` process against devstack: health probes, SIGTERM drain (and abandon
after the grace period), SIGKILL with 20 jobs in flight then a restart, and a clear exit on bad credentials.

Each worker is a subprocess (`python -m worker run`) with the Stack's env and JSON logs; tests wait on its
log lines, the broker's state and the simulator's connections — never on the clock.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from runtime_harness import QUEUE, Stack, WorkerProcess, check_artifacts, http_status, stack

from devstack.azurite import Azurite
from devstack.servicebus import BrokerState
from devstack.voicelive import ConnectionRecord, VoiceLiveSimulator

pytestmark = pytest.mark.integration


@asynccontextmanager
async def worker_process(s: Stack, cwd: Path, **env: str) -> AsyncIterator[WorkerProcess]:
    """A running worker (killed on exit if the test did not end it)."""
    settings = {"VOICELIVE_CONNECTS_PER_MINUTE": "600", **env}
    proc = await WorkerProcess.start(s.env(**settings), cwd=cwd)
    try:
        yield proc
    finally:
        await proc.aclose()


async def streaming(sim: VoiceLiveSimulator, first: int, count: int) -> list[ConnectionRecord]:
    """The `count` connections after index `first`, once each has received audio (jobs are mid-stream)."""
    records = (await sim.wait_for_connections(first + count, within_s=30))[first : first + count]
    for record in records:
        await record.wait_until(lambda r: r.append_count > 0, within_s=30)
    return records


def settled(expected_completed: int) -> Callable[[BrokerState], bool]:
    def done(state: BrokerState) -> bool:
        return state.queue(QUEUE).total == 0 and state.counters.completed >= expected_completed

    return done


async def test_health_and_readiness_while_running_and_draining(
    azurite: Azurite, voicelive: VoiceLiveSimulator, tmp_path: Path
) -> None:
    async with stack(azurite, voicelive) as s, worker_process(s, tmp_path, SHUTDOWN_GRACE_S="60") as w:
        assert await http_status(w.port, "/healthz") == 200
        body = await s.job(streaming={"pace": 0.5, "trailing_silence_ms": 0})  # 5.5 s on the wire
        first = len(voicelive.connections)
        await s.enqueue([body])
        await streaming(voicelive, first, 1)  # received a message, so connected to the queue
        assert await http_status(w.port, "/readyz") == 200
        w.signal(signal.SIGTERM)
        await w.wait_log(lambda r: r["message"].startswith("shutdown requested"))
        assert await http_status(w.port, "/readyz") == 503  # draining: take no new traffic
        assert await http_status(w.port, "/healthz") == 200  # but alive
        assert await w.wait_exit(timeout=60) == 0, w.tail()
        state = await s.broker.state()
        assert state.queue(QUEUE).total == 0 and state.counters.completed == 1
        await check_artifacts(s, body["job_id"])


async def test_sigterm_drains_jobs_in_flight_and_exits_0(
    azurite: Azurite, voicelive: VoiceLiveSimulator, tmp_path: Path
) -> None:
    async with stack(azurite, voicelive) as s:
        bodies = [await s.job(streaming={"pace": 1.0}) for _ in range(4)]  # ~3.3 s each
        first = len(voicelive.connections)
        async with worker_process(s, tmp_path, MAX_CONCURRENT_JOBS="4", SHUTDOWN_GRACE_S="60") as w:
            await s.enqueue(bodies)
            await streaming(voicelive, first, 4)
            w.signal(signal.SIGTERM)
            assert await w.wait_exit(timeout=60) == 0, w.tail()
        state = await s.broker.state()
        assert state.queue(QUEUE).total == 0 and state.dead_letters(QUEUE).total == 0
        assert (state.counters.completed, state.counters.abandoned) == (4, 0)
        assert "draining 4 job(s) for up to 60 s" in w.messages()
        for body in bodies:
            await check_artifacts(s, body["job_id"])


async def test_sigterm_past_the_grace_abandons_and_a_new_worker_finishes(
    azurite: Azurite, voicelive: VoiceLiveSimulator, tmp_path: Path
) -> None:
    async with stack(azurite, voicelive) as s:
        bodies = [await s.job(streaming={"pace": 0.5, "trailing_silence_ms": 0}) for _ in range(2)]  # 5.5 s
        ids = {b["job_id"] for b in bodies}
        first = len(voicelive.connections)
        async with worker_process(s, tmp_path, MAX_CONCURRENT_JOBS="2", SHUTDOWN_GRACE_S="1") as w:
            await s.enqueue(bodies)
            await streaming(voicelive, first, 2)
            w.signal(signal.SIGTERM)
            assert await w.wait_exit(timeout=30) == 0, w.tail()
        state = await s.broker.state()
        assert state.counters.abandoned == 2 and state.counters.completed == 0
        back = state.queue(QUEUE).messages
        assert {m.message_id for m in back} == ids
        assert [m.delivery_count for m in back] == [1, 1]  # abandoned: delivery count + 1, back in line
        for body in bodies:
            assert await s.manifest(body["job_id"]) is None  # nothing committed by the abandoned attempt
        async with worker_process(s, tmp_path, MAX_CONCURRENT_JOBS="2") as w2:
            await s.broker.wait_for(settled(2), timeout=60)
            w2.signal(signal.SIGTERM)
            assert await w2.wait_exit(timeout=30) == 0, w2.tail()
        for body in bodies:
            manifest = await check_artifacts(s, body["job_id"])
            assert manifest.attempt == 1  # abandoning is not a failed attempt
            # The SDK's delivery_count is the raw 0-based AMQP header: 0 first, 1 after one abandon.
            assert f"→ {body['job_id']} attempt 1 (delivery 0)" in w.messages()
            assert f"→ {body['job_id']} attempt 1 (delivery 1)" in w2.messages()


@pytest.mark.slow
async def test_sigkill_with_20_jobs_in_flight_then_restart_loses_and_duplicates_nothing(
    azurite: Azurite, voicelive: VoiceLiveSimulator, tmp_path: Path
) -> None:
    async with stack(azurite, voicelive, lock_s=5.0) as s:
        # ~11 s each on the wire: all 20 are surely mid-stream when the kill comes, even on a busy machine.
        bodies = [await s.job(streaming={"pace": 0.3}) for _ in range(20)]
        first = len(voicelive.connections)
        async with worker_process(s, tmp_path, MAX_CONCURRENT_JOBS="20") as w:
            await s.enqueue(bodies)
            await streaming(voicelive, first, 20)
            w.kill()
            assert await w.wait_exit(timeout=30) == -signal.SIGKILL
        killed = await s.broker.state()
        assert killed.counters.completed == 0
        assert killed.queue(QUEUE).total == 20  # still locked by the dead worker, or already back
        async with worker_process(s, tmp_path, MAX_CONCURRENT_JOBS="20") as w2:
            state = await s.broker.wait_for(settled(20), timeout=120)
            w2.signal(signal.SIGTERM)
            assert await w2.wait_exit(timeout=30) == 0, w2.tail()
        assert state.dead_letters(QUEUE).total == 0
        assert state.counters.completed == 20 and state.counters.lock_expirations >= 20
        for body in bodies:
            await check_artifacts(s, body["job_id"])
        completes = [m for m in w2.messages() if " complete attempt " in m or " duplicate attempt " in m]
        assert len(completes) == 20, completes


async def test_wrong_service_bus_key_exits_non_zero_with_a_clear_message(
    azurite: Azurite, voicelive: VoiceLiveSimulator, tmp_path: Path
) -> None:
    async with stack(azurite, voicelive) as s:
        env = s.env()
        good = env["SERVICEBUS_CONNECTION_STRING"]
        key = good.split("SharedAccessKey=", 1)[1].split(";", 1)[0]
        env["SERVICEBUS_CONNECTION_STRING"] = good.replace(key, "d3Jvbmcta2V5LXdyb25nLWtleQ==")
        w = await WorkerProcess.start(env, cwd=tmp_path)
        try:
            code = await w.wait_exit(timeout=60)
        finally:
            await w.aclose()
        assert code not in (0, None), w.tail()
        assert any("refused our credentials" in m for m in w.messages()), w.tail()


async def test_settlement_table_in_the_real_process(
    azurite: Azurite, voicelive: VoiceLiveSimulator, tmp_path: Path
) -> None:
    """success (after a transient retry) · permanent · invalid message · duplicate · retries exhausted."""
    from devstack.voicelive import CloseAfter, CloseKind, Refuse

    async with stack(azurite, voicelive) as s, worker_process(s, tmp_path, MAX_ATTEMPTS="2") as w:
        good, bad = await s.job(), await s.job("bad/garbage.flac")
        voicelive.faults.next(CloseAfter(kind=CloseKind.DROP, appends=5))  # the good job's first session
        await s.enqueue([good, bad], raw=[b"\x00not json"])
        await s.broker.wait_for(lambda st: st.queue(QUEUE).total == 0 and st.dead_letters(QUEUE).total == 2,
                                timeout=60)  # fmt: skip
        manifest = await s.manifest(good["job_id"])
        assert manifest is not None and (manifest.status, manifest.attempt) == ("succeeded", 2)
        failed = await s.manifest(bad["job_id"])
        assert failed is not None and (failed.status, failed.reason) == ("failed", "UnsupportedAudio")

        await s.enqueue([good])  # the same job again: short-circuited by its succeeded manifest
        await w.wait_log(lambda r: f"{good['job_id']} duplicate" in r["message"], timeout=30)

        voicelive.faults.always(Refuse(status=500))
        doomed = await s.job()
        await s.enqueue([doomed])
        state = await s.broker.wait_for(
            lambda st: st.queue(QUEUE).total == 0 and st.dead_letters(QUEUE).total == 3, timeout=60
        )
        voicelive.faults.clear()
        reasons = sorted(str(m.dead_letter_reason) for m in state.dead_letters(QUEUE).messages)
        assert reasons == ["InvalidMessage", "RetriesExhausted", "UnsupportedAudio"]
        exhausted = await s.manifest(doomed["job_id"])
        assert exhausted is not None and (exhausted.reason, exhausted.attempt) == ("RetriesExhausted", 2)
        await check_artifacts(s, good["job_id"])
        w.signal(signal.SIGTERM)
        assert await w.wait_exit(timeout=30) == 0
