"""WirePacer on a fake clock: absolute deadlines, catch-up, pace, trailing silence, timeline mapping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from worker.pacing import LagRecorder, Paced, PacingStats, Unpaced, WirePacer

FRAME = b"\x01" * 960
SILENCE = b"\x00" * 960


class FakeTime:
    """A monotonic clock that only moves when the pacer sleeps (or a test stalls it)."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.oversleep: dict[int, float] = {}  # sleep index -> extra seconds (a late wake-up)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds + self.oversleep.get(len(self.sleeps), 0.0)
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


async def frames(n: int, payload: bytes = FRAME) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield payload


async def run_pacer(
    pacer: WirePacer, fake: FakeTime, n: int, *, cost_s: float = 0.0
) -> tuple[PacingStats, list[tuple[float, bytes]]]:
    sent: list[tuple[float, bytes]] = []

    async def send(frame: bytes) -> None:
        sent.append((fake.now, frame))
        fake.now += cost_s

    stats = await pacer.run(frames(n), send, silence_frame=SILENCE)
    return stats, sent


def make(fake: FakeTime, mode: Paced | Unpaced, **kw: int) -> WirePacer:
    return WirePacer(mode, clock=fake.clock, sleep=fake.sleep, **kw)


async def test_frames_go_out_on_absolute_deadlines_despite_send_cost() -> None:
    fake = FakeTime()
    stats, sent = await run_pacer(make(fake, Paced(1.0)), fake, 50, cost_s=0.003)
    times = [t - 100.0 for t, _ in sent]
    assert times == pytest.approx([n * 0.020 for n in range(50)])
    assert stats.frames == 50
    assert stats.lag_max_ms == pytest.approx(0.0)
    assert stats.end_drift_ms == pytest.approx(0.0)
    assert stats.wall_s == pytest.approx(1.0)
    assert stats.rtf == pytest.approx(1.0)


async def test_late_wake_up_catches_up_and_records_lag() -> None:
    fake = FakeTime()
    fake.oversleep[9] = 0.095  # the wake-up for frame 10 comes 95 ms late
    stats, sent = await run_pacer(make(fake, Paced(1.0)), fake, 30)
    times = [round((t - 100.0) * 1000, 6) for t, _ in sent]
    # frame 10 is due at 200 ms but sent at 295; 11-14 are overdue and go out at once; 15 is back on time.
    assert times[10:16] == [295.0, 295.0, 295.0, 295.0, 295.0, 300.0]
    assert times[16] == 320.0
    assert stats.lag_max_ms == pytest.approx(95.0)
    assert sorted(stats.lag_samples)[-5:] == pytest.approx([15.0, 35.0, 55.0, 75.0, 95.0])
    assert stats.end_drift_ms == pytest.approx(0.0)  # lag did not accumulate into drift


async def test_pace_four_takes_a_quarter_of_the_time() -> None:
    fake = FakeTime()
    stats, sent = await run_pacer(make(fake, Paced(4.0)), fake, 200)
    assert stats.audio_ms == 4000
    assert stats.wall_s == pytest.approx(1.0)
    assert stats.rtf == pytest.approx(4.0)
    assert sent[1][0] - sent[0][0] == pytest.approx(0.005)


async def test_trailing_silence_is_sent_at_pace_after_input() -> None:
    fake = FakeTime()
    pacer = make(fake, Paced(1.0), trailing_silence_ms=110)
    stats, sent = await run_pacer(pacer, fake, 10)
    payloads = [p for _, p in sent]
    assert payloads == [FRAME] * 10 + [SILENCE] * 6  # 110 ms rounds up to 6 frames
    assert sent[-1][0] - 100.0 == pytest.approx(15 * 0.020)
    assert (stats.frames, stats.input_frames, stats.input_ms, stats.audio_ms) == (16, 10, 200.0, 320.0)
    assert (pacer.input_ms_sent, pacer.audio_ms_sent) == (200.0, 320.0)


async def test_unpaced_sends_without_sleeping() -> None:
    fake = FakeTime()
    pacer = make(fake, Unpaced(), trailing_silence_ms=40)
    stats, sent = await run_pacer(pacer, fake, 100, cost_s=0.001)
    assert fake.sleeps == []
    assert len(sent) == 102
    assert (stats.lag_p50_ms, stats.lag_p99_ms, stats.lag_max_ms, stats.end_drift_ms) == (0, 0, 0, 0)
    assert stats.rtf == pytest.approx(2040 / 1000 / 0.102)
    assert pacer.input_ms_at(fake.now + 100) == 2040.0


async def test_input_ms_at_maps_time_to_input_clock_while_running() -> None:
    fake = FakeTime()
    pacer = make(fake, Paced(2.0))
    assert pacer.t0 is None
    assert pacer.input_ms_at(123.0) == 0.0
    seen: list[tuple[float, float, int]] = []

    async def send(frame: bytes) -> None:
        assert pacer.t0 == 100.0
        seen.append((pacer.input_ms_at(fake.now), pacer.input_ms_at(fake.now + 0.003), pacer.frames_sent))

    await pacer.run(frames(5), send, silence_frame=SILENCE)
    # at pace 2 frame n goes out at 10·n ms, which is 20·n ms on the input clock
    assert [s[0] for s in seen] == pytest.approx([0.0, 20.0, 40.0, 60.0, 80.0])
    # 3 ms later is 6 ms of input, but never more than what was sent
    assert [s[1] for s in seen] == pytest.approx([0.0, 20.0, 40.0, 60.0, 80.0])
    assert pacer.input_ms_at(100.0 + 0.003) == pytest.approx(6.0)
    assert pacer.input_ms_at(50.0) == 0.0
    assert pacer.input_ms_at(1e9) == 100.0
    assert pacer.finished


async def test_errors_from_frames_or_send_propagate() -> None:
    fake = FakeTime()

    async def broken() -> AsyncIterator[bytes]:
        yield FRAME
        raise ConnectionError("decoder died")

    async def send(frame: bytes) -> None:
        return None

    with pytest.raises(ConnectionError):
        await make(fake, Paced(1.0)).run(broken(), send, silence_frame=SILENCE)


async def test_run_twice_is_refused() -> None:
    fake = FakeTime()
    pacer = make(fake, Paced(1.0))
    await run_pacer(pacer, fake, 1)
    with pytest.raises(RuntimeError, match="once"):
        await run_pacer(pacer, fake, 1)


@pytest.mark.parametrize("pace", [0.0, -1.0, float("inf"), float("nan")])
def test_paced_validates(pace: float) -> None:
    with pytest.raises(ValueError, match="pace"):
        Paced(pace)


def test_lag_recorder_is_bounded_and_exact_when_small() -> None:
    small = LagRecorder(capacity=100)
    for v in range(1, 101):
        small.record(float(v))
    assert (small.percentile(50), small.percentile(99), small.max_ms) == (50.0, 99.0, 100.0)
    big = LagRecorder(capacity=256)
    for v in range(180_000):
        big.record(float(v % 1000))
    assert len(big.samples) == 256
    assert big.count == 180_000
    assert big.max_ms == 999.0
    assert 300 < big.percentile(50) < 700


async def test_summary_has_no_samples() -> None:
    fake = FakeTime()
    stats, _ = await run_pacer(make(fake, Paced(1.0)), fake, 3)
    summary = stats.summary()
    assert "lag_samples" not in summary
    assert summary["frames"] == 3
