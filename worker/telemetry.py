"""OpenTelemetry for the worker: exporters chosen from settings, span names and attributes, W3C context
from job messages, and a `shutdown(timeout_s)` that never blocks longer than asked (DESIGN.md §10).

    telemetry = setup(settings)          # after configure_logging(); once per process
    ...
    telemetry.shutdown(timeout_s=3.0)    # flushes what it can, then returns regardless

Exporters: Azure Monitor (the distro, with the quiet options of research/platform.md §2.5) when
`APPLICATIONINSIGHTS_CONNECTION_STRING` is set; OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; otherwise off. Azure SDK spans (Blob, Service Bus) come from
azure-core's OpenTelemetry plugin. The Voice Live SDK's own per-event instrumentor stays off: it would
emit a span per audio frame. Transcripts and tool arguments go on spans only with `TRACE_CONTENT=true`.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from worker.config import Settings

__all__ = [
    "TRACER_NAME",
    "Attr",
    "Mode",
    "SpanName",
    "Telemetry",
    "build",
    "consumer_span",
    "content_enabled",
    "install",
    "record_error",
    "setup",
    "tracer",
]

log = logging.getLogger(__name__)

TRACER_NAME = "voicelive_worker"
#: Export timeout per request: a collector that accepts and never answers costs this, not minutes.
EXPORT_TIMEOUT_S = 5.0
#: What `voicelive-worker run|process|enqueue` allow telemetry at exit (on top of SHUTDOWN_GRACE_S).
SHUTDOWN_TIMEOUT_S = 3.0

Mode = Literal["azure_monitor", "otlp", "off", "custom"]


class SpanName:
    """Span names (DESIGN.md §10); KQL in docs/operations.md and the workbook query these."""

    ENQUEUE_JOB = "enqueue job"
    PROCESS_JOB = "process job"
    BLOB_READ = "blob read"
    VOICELIVE_CONNECT = "voicelive connect"
    VOICELIVE_SESSION = "voicelive session"
    VOICELIVE_RESPONSE = "voicelive response"
    TOOL_PREFIX = "tool "  # + the tool's name
    ARTIFACTS_WRITE = "artifacts write"
    SETTLE = "settle"
    PUBLISH_RESULT = "publish result"


class Attr:
    """Span attribute keys of our own (messaging.* follow the OpenTelemetry conventions)."""

    JOB_ID = "job.id"
    JOB_ATTEMPT = "job.attempt"
    JOB_STATUS = "job.status"
    JOB_REASON = "job.reason"
    JOB_ACTION = "job.action"
    JOB_DUPLICATE = "job.duplicate"
    JOB_DURATION_S = "job.duration_s"
    MESSAGING_SYSTEM = "messaging.system"
    MESSAGING_OPERATION = "messaging.operation.type"
    MESSAGE_ID = "messaging.message.id"
    DELIVERY_COUNT = "messaging.servicebus.message.delivery_count"
    BLOB_SIZE = "blob.size"
    BLOB_CONTAINER = "blob.container"
    ARTIFACT_COUNT = "artifacts.count"
    ARTIFACT_BYTES = "artifacts.bytes"
    MODEL = "voicelive.model"
    SESSION_ID = "voicelive.session.id"
    CONNECT_MS = "voicelive.connect_ms"
    USER_TURNS = "voicelive.user_turns"
    RESPONSES = "voicelive.responses"
    AUDIO_S = "voicelive.audio_streamed_s"
    PACING_LAG_P50_MS = "voicelive.pacing.lag_p50_ms"
    PACING_LAG_P99_MS = "voicelive.pacing.lag_p99_ms"
    PACING_LAG_MAX_MS = "voicelive.pacing.lag_max_ms"
    DRAINED = "voicelive.drained"
    RESPONSE_ID = "voicelive.response.id"
    RESPONSE_INDEX = "voicelive.response.index"
    RESPONSE_STATUS = "voicelive.response.status"
    RESPONSE_STATUS_REASON = "voicelive.response.status_reason"
    RESPONSE_TRIGGER = "voicelive.response.trigger"
    RESPONSE_LATENCY_MS = "voicelive.response.first_audio_latency_ms"
    RESPONSE_AUDIO_MS = "voicelive.response.audio_ms"
    RESPONSE_TRANSCRIPT = "voicelive.response.transcript"  # only with TRACE_CONTENT=true
    TOKENS_PREFIX = "voicelive.usage."  # + input_tokens, output_tokens, ...
    TOOL_NAME = "tool.name"
    TOOL_CALL_ID = "tool.call_id"
    TOOL_SOURCE = "tool.source"
    TOOL_ERROR = "tool.error"
    TOOL_DURATION_MS = "tool.duration_ms"
    TOOL_ARGUMENTS = "tool.arguments"  # only with TRACE_CONTENT=true
    ERROR_TYPE = "error.type"


_content = threading.Event()  # set: TRACE_CONTENT=true


def content_enabled() -> bool:
    """TRACE_CONTENT: may transcripts and tool arguments go on spans? (False unless `setup` said so.)"""
    return _content.is_set()


def tracer() -> trace.Tracer:
    """The worker's tracer (a proxy until a provider is installed, so modules may call it any time)."""
    return trace.get_tracer(TRACER_NAME)


@contextmanager
def consumer_span(
    name: str, properties: Mapping[str, str], *, attributes: Mapping[str, Any] | None = None
) -> Iterator[Span]:
    """A CONSUMER span parented to the W3C context in a message's application properties and linked to
    it (the link survives a backend that re-roots consumer traces). No context → a new trace."""
    carrier = {k.lower(): v for k, v in properties.items()}
    parent_ctx = propagate.extract(carrier)
    parent = trace.get_current_span(parent_ctx).get_span_context()
    links = [Link(parent)] if parent.is_valid else []
    with tracer().start_as_current_span(
        name, context=parent_ctx, kind=SpanKind.CONSUMER, links=links, attributes=attributes,
        record_exception=False, set_status_on_exception=False,
    ) as span:  # fmt: skip
        yield span


def record_error(span: Span, exc: BaseException, *, reason: str | None = None) -> None:
    """Mark `span` failed with the exception and our reason code (never the exception's free text when
    it could carry content: only the type and the reason go on attributes)."""
    span.set_status(Status(StatusCode.ERROR, reason or type(exc).__name__))
    span.set_attribute(Attr.ERROR_TYPE, type(exc).__qualname__)
    if reason:
        span.set_attribute(Attr.JOB_REASON, reason)
    span.record_exception(exc, attributes={"exception.escaped": True})


@dataclass(kw_only=True)
class Telemetry:
    """The providers `build` made. `shutdown` flushes and closes them within `timeout_s`, whatever the
    exporter endpoint does (a hanging collector leaves a daemon thread behind, never a hung exit)."""

    mode: Mode
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    extra_shutdown: list[Callable[[], object]] = field(default_factory=list)
    _closed: bool = False

    @property
    def enabled(self) -> bool:
        return self.tracer_provider is not None

    def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> bool:
        """Flush and close, giving up after `timeout_s`. True if everything closed in time."""
        if self._closed:
            return True
        self._closed = True
        steps: list[Callable[[], object]] = []
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                atexit.unregister(provider.shutdown)  # we close it here; exit must not wait on it again
                steps.append(provider.shutdown)
        steps += self.extra_shutdown
        if not steps:
            return True
        done = threading.Event()

        def close_all() -> None:
            for step in steps:
                try:
                    step()
                except Exception:
                    log.warning("telemetry shutdown step failed", exc_info=True)
            done.set()

        threading.Thread(target=close_all, name="telemetry-shutdown", daemon=True).start()
        finished = done.wait(max(timeout_s, 0.0))
        if not finished:
            log.warning("telemetry shutdown gave up after %.1f s (exporter not answering)", timeout_s)
        return finished


def resource(settings: Settings) -> Resource:
    """service.name from OTEL_SERVICE_NAME (settings), plus OTEL_RESOURCE_ATTRIBUTES and version/instance."""
    from worker.pipeline import worker_version

    return Resource.create(
        {
            "service.name": settings.otel_service_name,
            "service.version": worker_version(),
            "service.instance.id": os.environ.get("CONTAINER_APP_REPLICA_NAME") or socket.gethostname(),
        }
    )


def build(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    span_processors: Sequence[SpanProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
) -> Telemetry:
    """Providers for the configured exporter, not yet installed globally (see `install`).

    Azure Monitor mode cannot be built apart from installing (the distro sets the globals itself), so it
    is handled by `setup`. `span_processors`/`metric_readers` are extra (tests, local debugging); with
    them and no exporter configured the mode is "custom".
    """
    env = os.environ if environ is None else environ
    traces_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _signal_url(
        settings.otel_exporter_otlp_endpoint, "traces"
    )
    metrics_endpoint = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or _signal_url(
        settings.otel_exporter_otlp_endpoint, "metrics"
    )
    processors = list(span_processors)
    readers = list(metric_readers)
    mode: Mode = "custom" if processors or readers else "off"
    if traces_endpoint or metrics_endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        mode = "otlp"
        if traces_endpoint:
            processors.append(
                BatchSpanProcessor(
                    OTLPSpanExporter(endpoint=traces_endpoint, timeout=EXPORT_TIMEOUT_S),
                    export_timeout_millis=EXPORT_TIMEOUT_S * 1000,
                )
            )
        if metrics_endpoint:
            readers.append(
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(endpoint=metrics_endpoint, timeout=EXPORT_TIMEOUT_S),
                    export_timeout_millis=EXPORT_TIMEOUT_S * 1000,
                )
            )
    if mode == "off":
        return Telemetry(mode="off")
    res = resource(settings)
    tracer_provider = TracerProvider(resource=res, shutdown_on_exit=False)
    for processor in processors:
        tracer_provider.add_span_processor(processor)
    meter_provider = MeterProvider(metric_readers=readers, resource=res, shutdown_on_exit=False)
    return Telemetry(mode=mode, tracer_provider=tracer_provider, meter_provider=meter_provider)


def _signal_url(base: str | None, signal: str) -> str | None:
    """OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: the HTTP exporter posts to `<base>/v1/<signal>`."""
    return f"{base.rstrip('/')}/v1/{signal}" if base else None


def install(telemetry: Telemetry) -> None:
    """Make `telemetry`'s providers global and route Azure SDK spans through them. Once per process."""
    if telemetry.tracer_provider is not None:
        trace.set_tracer_provider(telemetry.tracer_provider)
    if telemetry.meter_provider is not None:
        metrics.set_meter_provider(telemetry.meter_provider)
    if telemetry.enabled:
        enable_azure_sdk_tracing()
    keep_voicelive_instrumentor_off()


def enable_azure_sdk_tracing() -> None:
    """Blob and Service Bus spans through azure-core-tracing-opentelemetry (plugin mode: Service Bus
    only consults `tracing_implementation`, research/platform.md §2.3)."""
    from azure.core.settings import settings as azure_settings

    azure_settings.tracing_implementation = "opentelemetry"


def keep_voicelive_instrumentor_off() -> None:
    """The Voice Live SDK's instrumentor spans every send/receive (each audio frame): make sure it is off."""
    try:
        from azure.ai.voicelive.telemetry import VoiceLiveInstrumentor
    except ImportError:  # pragma: no cover - older SDKs have no instrumentor
        return
    instrumentor = VoiceLiveInstrumentor()
    if instrumentor.is_instrumented():
        instrumentor.uninstrument()


def setup(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    span_processors: Sequence[SpanProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
) -> Telemetry:
    """Configure telemetry from settings and install it globally. Call after `configure_logging`."""
    if settings.trace_content:
        _content.set()
    else:
        _content.clear()
    cs = settings.applicationinsights_connection_string
    if cs is not None and cs.get_secret_value():
        telemetry = _azure_monitor(
            settings, cs.get_secret_value(), environ=os.environ if environ is None else environ,
            span_processors=span_processors, metric_readers=metric_readers,
        )  # fmt: skip
    else:
        telemetry = build(
            settings, environ=environ, span_processors=span_processors, metric_readers=metric_readers
        )
        install(telemetry)
    log.info("telemetry: %s (service %s)", telemetry.mode, settings.otel_service_name)
    return telemetry


#: Distro instrumentations we do not use (the worker has no web framework or `requests` calls); only
#: azure_sdk (Blob, Service Bus spans) stays on.
_UNUSED_INSTRUMENTATIONS = (
    "django", "fastapi", "flask", "psycopg2", "requests", "urllib", "urllib3", "httpx",
)  # fmt: skip


def aad_credential(auth_string: str | None) -> Any:
    """APPLICATIONINSIGHTS_AUTHENTICATION_STRING (`Authorization=AAD[;ClientId=<id>]`, set by infra/)
    → a ManagedIdentityCredential for the exporter, or None (instrumentation-key ingestion)."""
    if not auth_string:
        return None
    parts = dict(p.split("=", 1) for p in auth_string.split(";") if "=" in p)
    parts = {k.strip().lower(): v.strip() for k, v in parts.items()}
    if parts.get("authorization", "").upper() != "AAD":
        return None
    from azure.identity import ManagedIdentityCredential

    client_id = parts.get("clientid")
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


def _azure_monitor(
    settings: Settings,
    connection_string: str,
    *,
    environ: Mapping[str, str],
    span_processors: Sequence[SpanProcessor],
    metric_readers: Sequence[MetricReader],
) -> Telemetry:
    """The distro with the quiet options: no live metrics (its TLS thread can hang exit for minutes),
    no statsbeat/control-plane phone-home, no offline storage files, no performance counters, no VM
    metadata probe, a short export timeout. The providers are closed by `Telemetry.shutdown`."""
    from azure.monitor.opentelemetry import configure_azure_monitor

    for key, value in (
        ("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true"),
        ("APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED", "true"),
        ("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "otel"),
    ):
        os.environ.setdefault(key, value)
    options: dict[str, Any] = {
        "connection_string": connection_string,
        "enable_live_metrics": False,
        "enable_performance_counters": False,
        "disable_offline_storage": True,
        "timeout": EXPORT_TIMEOUT_S,
        "resource": resource(settings),
        "span_processors": list(span_processors),
        "metric_readers": list(metric_readers),
        "instrumentation_options": {name: {"enabled": False} for name in _UNUSED_INSTRUMENTATIONS},
    }
    credential = aad_credential(environ.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING"))
    if credential is not None:
        options["credential"] = credential
    configure_azure_monitor(**options)
    enable_azure_sdk_tracing()  # the distro does this too; be explicit
    keep_voicelive_instrumentor_off()
    tracer_provider = trace.get_tracer_provider()
    meter_provider = metrics.get_meter_provider()
    telemetry = Telemetry(
        mode="azure_monitor",
        tracer_provider=tracer_provider if isinstance(tracer_provider, TracerProvider) else None,
        meter_provider=meter_provider if isinstance(meter_provider, MeterProvider) else None,
    )
    from opentelemetry._logs import get_logger_provider

    logger_provider = get_logger_provider()
    if hasattr(logger_provider, "shutdown"):
        atexit.unregister(logger_provider.shutdown)
        telemetry.extra_shutdown.append(logger_provider.shutdown)
    return telemetry


@contextmanager
def running(settings: Settings) -> Iterator[Telemetry]:
    """`setup` on entry, `shutdown(SHUTDOWN_TIMEOUT_S)` on exit: what the CLI commands wrap their work in."""
    telemetry = setup(settings)
    try:
        yield telemetry
    finally:
        telemetry.shutdown(SHUTDOWN_TIMEOUT_S)
