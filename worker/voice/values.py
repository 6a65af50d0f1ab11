"""Session value objects — `SessionOptions` in, `SessionResult` out — and how a run's end is reported.

`describe` puts a finished session's facts on its span; `most_relevant` picks, from the errors a
session's TaskGroup raised together, the one that should settle the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from worker.errors import Permanent, Throttled, Transient, WorkerError
from worker.metrics import instruments
from worker.pacing import PacingStats
from worker.telemetry import Attr
from worker.voice.timeline import Timeline

__all__ = ["SessionOptions", "SessionResult", "describe", "most_relevant"]


@dataclass(frozen=True, kw_only=True)
class SessionOptions:
    """Knobs of a session that are not part of the job. Durations in seconds unless named `_ms`.

    `clock` must be the same monotonic clock the `WirePacer` uses (arrival times are mapped onto its
    input clock). `manual_segmentation` picks how manual-turn jobs are cut: our energy VAD ("vad") or
    one commit of everything at the end ("single"; with rollover, one commit per session).

    Rollover (the service caps a session at 60 min): once a session is `max_session_s` old — the larger
    of its wall time and the input audio it carried — the next silence boundary ends it; without one
    within `rollover_grace_s` it is cut anyway, with a warning. A new session is re-seeded with the
    job's conversation plus at most `reseed_max_chars` characters of the newest transcripts.
    """

    connect_timeout_s: float = 15.0
    session_update_timeout_s: float = 10.0
    drain_window_s: float = 1.0
    tool_timeout_s: float = 10.0
    manual_segmentation: Literal["vad", "single"] = "vad"
    manual_silence_ms: float = 600.0
    manual_threshold_dbfs: float = -40.0
    max_session_s: float = 55 * 60.0
    rollover_grace_s: float = 120.0
    reseed_max_chars: int = 8000
    clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True, kw_only=True)
class SessionResult:
    """What a finished session produced. Files live in the `workdir` given to `run_session`:
    `input_pcm` (pcm16 mono at `input_sample_rate`, exactly as streamed, trailing silence included),
    `response-NNN.pcm` per response with audio (see `timeline.responses[*].audio_file/placements`),
    and `events_file` when the job asked for events. `session_id` and `connect_ms` are the first
    session's; every session (after a rollover) is in `timeline.sessions`."""

    timeline: Timeline
    session_id: str | None
    model: str | None
    voice: str | None
    pacing: PacingStats
    input_pcm: Path
    input_sample_rate: int
    events_file: Path | None
    connect_ms: float
    drained: bool


def describe(span: Any, result: SessionResult) -> None:
    """The session's facts on its span; per-frame lag goes to the pacing-lag histogram."""
    stats = result.pacing
    for lag in stats.lag_samples:
        instruments().pacing_lag.record(lag)
    span.set_attributes({
        Attr.SESSION_ID: result.session_id or "", Attr.CONNECT_MS: round(result.connect_ms, 1),
        Attr.USER_TURNS: len(result.timeline.user_turns), Attr.RESPONSES: len(result.timeline.responses),
        Attr.AUDIO_S: round(stats.audio_ms / 1000.0, 3), Attr.DRAINED: result.drained,
        Attr.PACING_LAG_P50_MS: round(stats.lag_p50_ms, 3),
        Attr.PACING_LAG_P99_MS: round(stats.lag_p99_ms, 3),
        Attr.PACING_LAG_MAX_MS: round(stats.lag_max_ms, 3),
    })  # fmt: skip


def most_relevant(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that should settle the job: permanent beats throttled beats transient; a non-worker
    error (a bug) is re-raised as the group so it is not hidden."""
    errors = [e for e in _leaves(group) if isinstance(e, WorkerError)]
    for kind in (Permanent, Throttled, Transient, WorkerError):
        for err in errors:
            if isinstance(err, kind):
                return err
    return group


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]
