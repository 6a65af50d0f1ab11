"""One trace per job, from `JobClient.enqueue` to settle, through devstack with the real SDKs: span tree,
Azure SDK spans, bounded span count, metrics, no transcript text by default; and `voicelive-worker run`
exporting OTLP/HTTP to a loopback receiver, and exiting on time when the collector hangs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from devstack.azurite import Azurite
from devstack.voicelive import VoiceLiveSimulator
from tests.integration.runtime_harness import QUEUE, Stack, stack
from worker import telemetry
from worker.client import JobClient
from worker.config import Settings
from worker.metrics import MetricName
from worker.telemetry import Attr, SpanName

pytestmark = pytest.mark.integration

PLACEHOLDER = re.compile(r"utterance \d+ \(")


class _Switch(SpanProcessor):
    """Forwards to the test's processor only while this module runs (the provider outlives it)."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner, self.on = inner, True

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            self.inner.on_end(span)


class Traced:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.switch = _Switch(SimpleSpanProcessor(self.spans))

    def trace_of(self, trace_id: int) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.context and s.context.trace_id == trace_id]

    def metric_points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:  # nothing recorded yet
            return []
        return [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


_INSTALLED: list[Traced] = []


@pytest.fixture(scope="module")
def traced() -> Iterator[Traced]:
    """The process-wide providers (set once per process: research/platform.md §2.2), in-memory."""
    from azure.core.settings import settings as azure_settings

    if not _INSTALLED:
        t = Traced()
        telemetry.setup(Settings(), environ={}, span_processors=[t.switch], metric_readers=[t.reader])
        _INSTALLED.append(t)
    t = _INSTALLED[0]
    t.switch.on = True
    telemetry.enable_azure_sdk_tracing()
    yield t
    t.switch.on = False  # later modules must not fill memory with spans
    t.spans.clear()
    azure_settings.tracing_implementation.unset_value()


@pytest_asyncio.fixture()
async def devstack(azurite: Azurite, voicelive: VoiceLiveSimulator) -> AsyncIterator[Stack]:
    async with stack(azurite, voicelive) as s:
        yield s


def _parent(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> ReadableSpan | None:
    return by_id.get(span.parent.span_id) if span.parent else None


def _texts(transcript: dict[str, Any]) -> list[str]:
    texts = [t.get("transcript") or "" for t in transcript.get("user_turns", [])]
    texts += [r.get("transcript") or r.get("text") or "" for r in transcript.get("responses", [])]
    texts += [c.get("arguments") or "" for c in transcript.get("tool_calls", [])]
    return [t for t in texts if len(t) >= 8]


def _span_strings(spans: Sequence[ReadableSpan]) -> list[str]:
    out: list[str] = []
    for span in spans:
        out += [span.name, *(str(v) for v in (span.attributes or {}).values())]
        for event in span.events:
            out += [event.name, *(str(v) for v in (event.attributes or {}).values())]
    return out


async def test_one_trace_from_enqueue_to_settle(
    traced: Traced, devstack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    traced.spans.clear()
    body = await devstack.job("caller_3turns_16k.wav", tools=["get_weather"])
    job_id = body["job_id"]
    async with devstack.bus() as client, JobClient(client, queue=QUEUE) as jobs:
        with trace.get_tracer("test").start_as_current_span("caller") as caller:
            await jobs.enqueue(body)
    trace_id = caller.get_span_context().trace_id
    await devstack.run_until_settled()

    spans = traced.trace_of(trace_id)
    by_id = {s.context.span_id: s for s in spans if s.context}
    names = [s.name for s in spans]
    (process,) = [s for s in spans if s.name == SpanName.PROCESS_JOB]
    assert process.kind == SpanKind.CONSUMER
    assert (process.attributes or {})[Attr.JOB_ID] == job_id
    assert (process.attributes or {})[Attr.JOB_STATUS] == "succeeded"
    assert (process.attributes or {})[Attr.JOB_ACTION] == "complete"
    # Parented to the enqueuer's context and linked to it.
    assert process.parent is not None and process.parent.trace_id == trace_id
    assert [link.context.span_id for link in process.links] == [process.parent.span_id]
    (enqueue,) = [s for s in spans if s.name == SpanName.ENQUEUE_JOB]
    assert enqueue.kind == SpanKind.PRODUCER
    chain, cursor = [], _parent(process, by_id)
    while cursor is not None:
        chain.append(cursor.name)
        cursor = _parent(cursor, by_id)
    assert SpanName.ENQUEUE_JOB in chain and chain[-1] == "caller", chain

    def children(parent: ReadableSpan) -> list[str]:
        assert parent.context is not None
        return [s.name for s in spans if s.parent and s.parent.span_id == parent.context.span_id]

    under_process = children(process)
    for name in (SpanName.BLOB_READ, SpanName.VOICELIVE_SESSION, SpanName.ARTIFACTS_WRITE, SpanName.SETTLE):
        assert under_process.count(name) == 1, (name, under_process)
    (session,) = [s for s in spans if s.name == SpanName.VOICELIVE_SESSION]
    under_session = children(session)
    assert under_session.count(SpanName.VOICELIVE_CONNECT) == 1
    responses = [s for s in spans if s.name == SpanName.VOICELIVE_RESPONSE]
    assert len(responses) >= 3 and all(_parent(r, by_id) is session for r in responses)
    for r in responses:
        attrs = r.attributes or {}
        assert str(attrs[Attr.RESPONSE_ID]).startswith("resp")
        assert attrs[Attr.RESPONSE_STATUS] == "completed"
    latencies = [(r.attributes or {}).get(Attr.RESPONSE_LATENCY_MS) for r in responses]
    assert any(isinstance(v, float) and 0 < v < 30_000 for v in latencies), latencies
    assert any(Attr.TOKENS_PREFIX + "output_tokens" in (r.attributes or {}) for r in responses)
    tools = [s for s in spans if s.name == SpanName.TOOL_PREFIX + "get_weather"]
    assert len(tools) >= 1 and all(Attr.TOOL_ARGUMENTS not in (t.attributes or {}) for t in tools)
    (settle,) = [s for s in spans if s.name == SpanName.SETTLE]
    # Azure SDK spans join the same trace: blob (read and write) and Service Bus (send and complete).
    assert any(s.name.startswith("BlobClient.") for s in spans if _under(s, by_id, SpanName.BLOB_READ))
    assert any(s.name.startswith("BlobClient.") for s in spans if _under(s, by_id, SpanName.ARTIFACTS_WRITE))
    assert any(s.name.startswith("ServiceBus.") for s in spans if _under(s, by_id, SpanName.ENQUEUE_JOB)
               or _under(s, by_id, "caller"))  # fmt: skip
    assert any(s.name.startswith("ServiceBus.") for s in spans if _under(s, by_id, SpanName.SETTLE)), [
        n for n in names if n.startswith("ServiceBus")
    ]
    assert settle.end_time and process.end_time and settle.end_time <= process.end_time
    # Bounded: no span per frame, delta or blob range.
    assert len(spans) < 50, sorted(names)

    # The manifest records the trace id.
    manifest = await devstack.manifest(job_id)
    assert manifest is not None and manifest.trace_id == f"{trace_id:032x}"

    # No transcript or tool-argument text anywhere by default (spans of every trace, and log records).
    artifacts = await devstack.artifacts(job_id)
    texts = _texts(json.loads(artifacts["transcript.json"]))
    assert texts, "the simulator's placeholder transcripts should be present in the artifact"
    strings = _span_strings(traced.spans.get_finished_spans())
    logs = [r.getMessage() for r in caplog.records]
    for haystack in (strings, logs):
        assert not [s for s in haystack if PLACEHOLDER.search(s) or any(t in s for t in texts)]

    # Metrics, with sensible values.
    settled = [p for p in traced.metric_points(MetricName.JOBS) if p.attributes.get("status") == "succeeded"]
    assert sum(p.value for p in settled) >= 1
    (duration,) = [p for p in traced.metric_points(MetricName.JOB_DURATION)
                   if p.attributes.get("status") == "succeeded"]  # fmt: skip
    assert duration.count >= 1 and 0 < duration.min < 120
    assert sum(p.value for p in traced.metric_points(MetricName.SESSIONS_ACTIVE)) == 0
    assert sum(p.value for p in traced.metric_points(MetricName.AUDIO_STREAMED)) >= 16.0
    (lag,) = traced.metric_points(MetricName.PACING_LAG)
    assert lag.count >= 800 and lag.min >= 0  # 16.5 s in 20 ms frames
    (latency,) = traced.metric_points(MetricName.RESPONSE_LATENCY)
    assert latency.count >= 3 and latency.min > 0 and latency.max < 30_000
    (tool,) = traced.metric_points(MetricName.TOOL_DURATION)
    assert tool.count >= 1 and tool.attributes == {"tool": "get_weather", "outcome": "ok"}
    tokens = {p.attributes["type"]: p.value for p in traced.metric_points(MetricName.TOKENS)}
    assert tokens.get("output", 0) > 0 and tokens.get("input", 0) > 0


def _under(span: ReadableSpan, by_id: dict[int, ReadableSpan], name: str) -> bool:
    cursor = _parent(span, by_id)
    while cursor is not None:
        if cursor.name == name:
            return True
        cursor = _parent(cursor, by_id)
    return False


async def test_connect_refusal_is_counted_and_the_reason_is_on_the_span(
    traced: Traced, devstack: Stack
) -> None:
    from devstack.voicelive.faults import Refuse

    devstack.sim.faults.next(Refuse(status=500))
    traced.spans.clear()
    before = sum(p.value for p in traced.metric_points(MetricName.CONNECT_ERRORS))
    body = await devstack.job("hello_24k_mono.wav")
    await devstack.enqueue([body])
    await devstack.run_until_settled()
    after = sum(p.value for p in traced.metric_points(MetricName.CONNECT_ERRORS))
    assert after == before + 1
    attempts = [s for s in traced.spans.get_finished_spans() if s.name == SpanName.PROCESS_JOB
                and (s.attributes or {}).get(Attr.JOB_ID) == body["job_id"]]  # fmt: skip
    by_action = {(s.attributes or {})[Attr.JOB_ACTION]: s for s in attempts}
    assert set(by_action) == {"retry", "complete"}
    retried = by_action["retry"]
    assert (retried.attributes or {})[Attr.JOB_REASON] == "Transient"
    assert (retried.attributes or {})[Attr.JOB_STATUS] == "retrying"
    assert not retried.status.is_ok
    assert any(e.name == "exception" for e in retried.events)
    # The retry copy carries the same traceparent: both attempts are one trace.
    assert len({s.context.trace_id for s in attempts if s.context}) == 1


# --- `voicelive-worker run` as a subprocess: OTLP/HTTP export, and a collector that hangs ------------


@contextlib.asynccontextmanager
async def otlp_receiver() -> AsyncIterator[tuple[str, list[ExportTraceServiceRequest]]]:
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def other(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    app.router.add_post("/v1/metrics", other)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def hanging_server() -> AsyncIterator[str]:
    """Accepts connections and never answers (research/platform.md §2.5's worst case)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()


@contextlib.asynccontextmanager
async def worker_process(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m worker run`, yielded once it logs "worker up"; killed if still running at the end."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_"))}
    full |= {"LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", **env}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "run", env=full,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []

    async def until_up() -> None:
        assert proc.stderr is not None
        while line := (await proc.stderr.readline()).decode():
            lines.append(line)
            if "worker up" in line:
                return
        raise AssertionError("worker exited before it was up:\n" + "".join(lines))

    drain: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(until_up(), 60)

        async def keep_draining() -> None:
            assert proc.stderr is not None
            while line := (await proc.stderr.readline()).decode():
                lines.append(line)

        drain = asyncio.create_task(keep_draining())
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if drain is not None:
            await asyncio.wait_for(drain, 10)
        if os.environ.get("VLW_DEBUG_LOGS"):
            print("".join(line for line in lines if "azure.servicebus" not in line))


async def _terminate(proc: asyncio.subprocess.Process) -> tuple[int, float]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(proc.wait(), 120)
    return code, time.monotonic() - started


async def test_worker_process_exports_the_job_trace_over_otlp_http(traced: Traced, devstack: Stack) -> None:
    traced.spans.clear()
    body = await devstack.job("hello_24k_mono.wav")
    async with otlp_receiver() as (endpoint, received):
        env = devstack.env(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_SERVICE_NAME="vlw-test",
                           SHUTDOWN_GRACE_S="5", MAX_CONCURRENT_JOBS="2")  # fmt: skip
        async with worker_process(env) as proc:
            async with devstack.bus() as client, JobClient(client, queue=QUEUE) as jobs:
                with trace.get_tracer("test").start_as_current_span("caller") as caller:
                    await jobs.enqueue(body)
            await devstack.broker.wait_for(lambda s: s.queue(QUEUE).total == 0, timeout=60)
            code, _ = await _terminate(proc)
        assert code == 0
    trace_hex = f"{caller.get_span_context().trace_id:032x}"
    spans = [
        (span, rs.resource)
        for request in received
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    in_trace = [s for s, _ in spans if s.trace_id.hex() == trace_hex]
    names = {s.name for s in in_trace}
    expected = {SpanName.PROCESS_JOB, SpanName.BLOB_READ, SpanName.VOICELIVE_SESSION,
                SpanName.VOICELIVE_CONNECT, SpanName.VOICELIVE_RESPONSE, SpanName.ARTIFACTS_WRITE,
                SpanName.SETTLE}  # fmt: skip
    assert expected <= names, names
    assert any(n.startswith("BlobClient.") for n in names) and any(n.startswith("ServiceBus.") for n in names)
    services = {a.value.string_value for _, r in spans for a in r.attributes if a.key == "service.name"}
    assert services == {"vlw-test"}


async def test_worker_exits_on_time_when_the_collector_hangs(devstack: Stack) -> None:
    grace_s = 5.0
    async with hanging_server() as endpoint:
        env = devstack.env(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, SHUTDOWN_GRACE_S=str(grace_s))
        async with worker_process(env) as proc:
            # A job's worth of spans and metrics is waiting to be exported when SIGTERM arrives.
            await devstack.enqueue([await devstack.job("hello_24k_mono.wav")])
            await devstack.broker.wait_for(lambda s: s.queue(QUEUE).total == 0, timeout=60)
            code, took_s = await _terminate(proc)
    assert code == 0
    # A hang check, not a performance check: the bound (grace + 5 s) plus slack for a loaded
    # machine. Measured ~8 s: ~5 s for the worker's in-flight receive poll, then telemetry's 3 s cap.
    print(f"exit after SIGTERM with a hanging collector: {took_s:.1f} s")
    assert took_s < grace_s + 5 + 5, took_s
