"""The worker's metric instruments (DESIGN.md §10): names, units and the few helpers that record them.

Instruments come from the global meter; before `telemetry.setup` installs a provider they are proxies
that record nothing, so importing this module is free. Per-frame facts (pacing lag, audio streamed)
are recorded here as metrics, never as spans.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from opentelemetry import metrics

__all__ = ["METER_NAME", "MetricName", "instruments"]

METER_NAME = "voicelive_worker"


class MetricName:
    JOBS = "voicelive_worker.jobs"
    JOB_DURATION = "voicelive_worker.job.duration"
    SESSIONS_ACTIVE = "voicelive_worker.sessions.active"
    AUDIO_STREAMED = "voicelive_worker.audio.streamed"
    PACING_LAG = "voicelive_worker.pacing.lag"
    RESPONSE_LATENCY = "voicelive_worker.response.latency"
    TOOL_DURATION = "voicelive_worker.tool.duration"
    CONNECT_ERRORS = "voicelive_worker.voicelive.connect_errors"
    TOKENS = "voicelive_worker.voicelive.tokens"


class _Instruments:
    def __init__(self) -> None:
        meter = metrics.get_meter(METER_NAME)
        self.jobs = meter.create_counter(
            MetricName.JOBS, unit="{job}", description="Jobs settled, by status, action and reason"
        )
        self.job_duration = meter.create_histogram(
            MetricName.JOB_DURATION, unit="s", description="Receive to settle, per job"
        )
        self.sessions_active = meter.create_up_down_counter(
            MetricName.SESSIONS_ACTIVE, unit="{session}", description="Voice Live sessions open now"
        )
        self.audio_streamed = meter.create_counter(
            MetricName.AUDIO_STREAMED, unit="s", description="Input audio sent to Voice Live"
        )
        self.pacing_lag = meter.create_histogram(
            MetricName.PACING_LAG, unit="ms",
            description="Frame send time minus due time (a bounded uniform sample of each job's frames)",
        )  # fmt: skip
        self.response_latency = meter.create_histogram(
            MetricName.RESPONSE_LATENCY, unit="ms",
            description="End of user speech to first response audio",
        )  # fmt: skip
        self.tool_duration = meter.create_histogram(
            MetricName.TOOL_DURATION, unit="ms", description="Tool call run time"
        )
        self.connect_errors = meter.create_counter(
            MetricName.CONNECT_ERRORS, unit="{error}", description="Failed Voice Live connects, by kind"
        )
        self.tokens = meter.create_counter(
            MetricName.TOKENS, unit="{token}", description="Voice Live usage tokens, by type"
        )

    def record_usage(self, usage: Mapping[str, int]) -> None:
        """Response usage (flattened keys like `input_tokens`, `output_token_details.audio_tokens`):
        the top-level `*_tokens` totals, by type."""
        for key, value in usage.items():
            if "." not in key and key.endswith("_tokens") and key != "total_tokens" and value > 0:
                self.tokens.add(value, {"type": key.removesuffix("_tokens")})


@functools.cache
def instruments() -> _Instruments:
    """The process's instruments (created on first use, from the global meter)."""
    return _Instruments()
