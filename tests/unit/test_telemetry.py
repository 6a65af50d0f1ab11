"""telemetry: exporter choice from settings, resource, W3C consumer spans, bounded shutdown, the quiet
Azure Monitor setup (in a subprocess: it sets process-wide providers), and the AAD auth string."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from worker import telemetry
from worker.config import Settings
from worker.telemetry import SpanName


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A loopback TCP server that accepts and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_no_exporter_configured_means_off() -> None:
    built = telemetry.build(Settings(), environ={})
    assert built.mode == "off" and not built.enabled
    assert built.shutdown(0.1)


def test_otlp_endpoint_selects_otlp_http_with_service_name() -> None:
    settings = Settings(otel_exporter_otlp_endpoint="http://127.0.0.1:9/", otel_service_name="svc-x")
    built = telemetry.build(settings, environ={"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"})
    try:
        assert built.mode == "otlp"
        assert built.tracer_provider is not None
        attrs = built.tracer_provider.resource.attributes
        assert attrs["service.name"] == "svc-x"
        assert "service.version" in attrs
    finally:
        built.shutdown(0.5)


def test_traces_specific_endpoint_alone_selects_otlp() -> None:
    built = telemetry.build(
        Settings(), environ={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"}
    )
    try:
        assert built.mode == "otlp"
    finally:
        built.shutdown(0.5)


def test_extra_processors_alone_are_custom_mode() -> None:
    exporter = InMemorySpanExporter()
    built = telemetry.build(Settings(), environ={}, span_processors=[SimpleSpanProcessor(exporter)])
    assert built.mode == "custom"
    assert built.tracer_provider is not None
    built.tracer_provider.get_tracer("t").start_span("x").end()
    assert [s.name for s in exporter.get_finished_spans()] == ["x"]
    assert built.shutdown(2.0)


def test_shutdown_is_bounded_when_the_collector_hangs(hanging_port: int) -> None:
    settings = Settings(otel_exporter_otlp_endpoint=f"http://127.0.0.1:{hanging_port}")
    built = telemetry.build(settings, environ={})
    assert built.tracer_provider is not None and built.meter_provider is not None
    for i in range(5):
        built.tracer_provider.get_tracer("t").start_span(f"s{i}").end()
    built.meter_provider.get_meter("m").create_counter("c").add(1)
    started = time.monotonic()
    finished = built.shutdown(timeout_s=0.5)
    took = time.monotonic() - started
    assert not finished
    assert took < 5.0  # generous: a hang would be tens of seconds
    assert built.shutdown(0.1)  # second call is a no-op


def test_consumer_span_is_parented_to_and_linked_with_the_message_context() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("producer") as producer:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    # Keys as they come off the wire may differ in case; values are decoded strings (worker.queue).
    properties = {"Traceparent": carrier["traceparent"], "attempt": "1"}
    from unittest import mock

    with mock.patch.object(telemetry, "tracer", return_value=tracer):
        with telemetry.consumer_span(SpanName.PROCESS_JOB, properties, attributes={"job.id": "j1"}):
            pass
        with telemetry.consumer_span(SpanName.PROCESS_JOB, {}):
            pass
    with_ctx, without = [s for s in exporter.get_finished_spans() if s.name == SpanName.PROCESS_JOB]
    pctx = producer.get_span_context()
    assert with_ctx.kind == SpanKind.CONSUMER
    assert with_ctx.parent is not None and with_ctx.parent.span_id == pctx.span_id
    assert with_ctx.context is not None and with_ctx.context.trace_id == pctx.trace_id
    assert [link.context.span_id for link in with_ctx.links] == [pctx.span_id]
    assert without.parent is None and not without.links


def test_aad_auth_string() -> None:
    from azure.identity import ManagedIdentityCredential

    assert telemetry.aad_credential(None) is None
    assert telemetry.aad_credential("Authorization=Key") is None
    assert isinstance(telemetry.aad_credential("Authorization=AAD"), ManagedIdentityCredential)
    cred = telemetry.aad_credential("Authorization=AAD;ClientId=00000000-0000-0000-0000-000000000001")
    assert isinstance(cred, ManagedIdentityCredential)


def test_content_flag_follows_trace_content(monkeypatch: pytest.MonkeyPatch) -> None:
    # setup() installs globals; only exercise the flag with the "off" path's install being harmless.
    monkeypatch.setattr(telemetry, "install", lambda _t: None)
    telemetry.setup(Settings(trace_content=True), environ={})
    assert telemetry.content_enabled()
    telemetry.setup(Settings(), environ={})
    assert not telemetry.content_enabled()


@pytest.mark.slow
def test_azure_monitor_quiet_setup_exits_promptly_with_a_hanging_ingestion(
    hanging_port: int, tmp_path: os.PathLike[str]
) -> None:
    """The distro against an endpoint that accepts and never answers: with the quiet options and our
    bounded shutdown the process ends in seconds (the defaults hang > 300 s: research/platform.md §2.5),
    and no offline-storage files are left."""
    endpoint = f"http://127.0.0.1:{hanging_port}/"
    key = "00000000-0000-0000-0000-000000000000"
    cs = f"InstrumentationKey={key};IngestionEndpoint={endpoint};LiveEndpoint={endpoint}"
    script = textwrap.dedent(
        """
        import logging, sys
        from opentelemetry import trace
        from worker import telemetry
        from worker.config import Settings
        from worker.metrics import instruments
        t = telemetry.setup(Settings())
        assert t.mode == "azure_monitor", t.mode
        from azure.core.settings import settings
        assert settings.tracing_implementation() is not None
        with telemetry.tracer().start_as_current_span("job"):
            logging.getLogger("worker").warning("hello")
        instruments().jobs.add(1, {"status": "succeeded"})
        print("finished" if t.shutdown(2.0) else "gave-up")
        """
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_", "AZURE_"))
    }
    env |= {"APPLICATIONINSIGHTS_CONNECTION_STRING": cs, "TMPDIR": str(tmp_path), "PYTHONPATH": os.getcwd()}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() in {"finished", "gave-up"}
    assert took < 30, took  # a hang check: the distro's defaults take > 300 s here
    assert not any("AzureMonitor" in p.name for p in Path(tmp_path).rglob("*"))


async def test_results_message_carries_the_jobs_traceparent() -> None:
    from unittest import mock

    from worker.settle import ResultsPublisher

    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    sent: list[object] = []

    class Sender:
        async def send_messages(self, message: object) -> None:
            sent.append(message)

    with mock.patch("worker.settle.tracer", return_value=tracer), tracer.start_as_current_span("job") as job:
        await ResultsPublisher(Sender()).publish(  # type: ignore[arg-type]
            job_id="j1", status="succeeded", reason=None, manifest_url=None
        )
    (message,) = sent
    props = message.application_properties  # type: ignore[attr-defined]
    assert f"{job.get_span_context().trace_id:032x}" in str(props["traceparent"])


def test_workbook_and_operations_doc_query_the_names_we_emit() -> None:
    import json

    from worker.metrics import MetricName

    root = Path(__file__).resolve().parents[2]
    workbook = json.loads((root / "infra" / "workbook.json").read_text())
    queries = "\n".join(i["content"]["query"] for i in workbook["items"] if i.get("type") == 3)
    doc = (root / "docs" / "operations.md").read_text()
    for text in (queries, doc):
        for name in (SpanName.PROCESS_JOB, SpanName.VOICELIVE_RESPONSE, SpanName.VOICELIVE_SESSION):
            assert f'"{name}"' in text
        for attr in (telemetry.Attr.JOB_STATUS, telemetry.Attr.JOB_REASON, telemetry.Attr.JOB_ID,
                     telemetry.Attr.RESPONSE_LATENCY_MS, telemetry.Attr.PACING_LAG_P99_MS):  # fmt: skip
            assert f'customDimensions["{attr}"]' in text, attr
        assert MetricName.PACING_LAG in text and MetricName.CONNECT_ERRORS in text
