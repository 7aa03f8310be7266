"""OpenTelemetry in one place: tracing, context propagation over Kafka and HTTP, a few counters.

`setup_telemetry(settings)` installs the SDK once per process. Several services may share one
process (tests, `carebridge up`), so the first call wins and every span the project creates
carries `carebridge.service` to say which service made it. Exporters: OTLP when
`OTEL_EXPORTER_OTLP_ENDPOINT` is set (the exporter package is optional and imported lazily),
the console when `OTEL_CONSOLE` is set, otherwise none: spans are still recorded so trace ids
flow through headers and logs.

Trace context travels as W3C `traceparent`/`tracestate` (https://www.w3.org/TR/trace-context/)
through the global propagator: in Kafka record headers and in HTTP headers.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import Counter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

TRACER_NAME = "carebridge"
#: Span attribute naming the service that made a span (several may share one process).
SERVICE_ATTRIBUTE = "carebridge.service"

EVENTS_PUBLISHED = "carebridge.events.published"
EVENTS_CONSUMED = "carebridge.events.consumed"
EVENTS_DLQ = "carebridge.events.dlq"

#: FastAPI (0.165+) instruments itself once an SDK provider exists: a second SERVER span per
#: request plus endpoint and serialization spans on the hot path, and exception messages in
#: logs (which may carry PHI). `TracingMiddleware` is the one HTTP instrumentation we want.
NO_FRAMEWORK_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Telemetry:
    service_name: str
    #: True when this call installed the SDK providers (and so owns their shutdown).
    installed: bool

    def tracer(self) -> trace.Tracer:
        return tracer()

    def shutdown(self) -> None:
        """Flush and stop the providers this call installed; a no-op otherwise."""
        if not self.installed:
            return
        provider = trace.get_tracer_provider()
        if isinstance(provider, TracerProvider):
            provider.shutdown()
        meter_provider = metrics.get_meter_provider()
        shutdown = getattr(meter_provider, "shutdown", None)
        if callable(shutdown):
            shutdown()


def setup_telemetry(settings: ServiceSettings) -> Telemetry:
    """Install the tracing (and, with an exporter, metrics) SDK unless one is installed already."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return Telemetry(settings.service_name, installed=False)
    resource = Resource.create({"service.name": settings.service_name})
    provider = TracerProvider(resource=resource)
    exporter = _span_exporter(settings)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _setup_metrics(settings, resource)
    return Telemetry(settings.service_name, installed=True)


def _span_exporter(settings: ServiceSettings) -> SpanExporter | None:
    if settings.otel_exporter_otlp_endpoint:
        exporter = _otlp_exporter("traces", settings.otel_exporter_otlp_endpoint)
        if exporter is None:
            log.warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp is not "
                "installed; spans are not exported"
            )
        return exporter
    if settings.otel_console:
        return ConsoleSpanExporter()
    return None


def _setup_metrics(settings: ServiceSettings, resource: Resource) -> None:
    """Metrics only cost something when exported: without an exporter the API stays a no-op."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricExporter,
        PeriodicExportingMetricReader,
    )

    exporter: MetricExporter | None = None
    if settings.otel_exporter_otlp_endpoint:
        exporter = _otlp_exporter("metrics", settings.otel_exporter_otlp_endpoint)
    elif settings.otel_console:
        exporter = ConsoleMetricExporter()
    if exporter is None:
        return
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=30_000)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


_OTLP_CLASSES = {"traces": ("trace", "OTLPSpanExporter"), "metrics": ("metric", "OTLPMetricExporter")}


def _otlp_exporter(signal: str, endpoint: str) -> Any:
    """An OTLP exporter for "traces" or "metrics", or None when the package is not installed.

    The protocol follows the standard OTEL_EXPORTER_OTLP_PROTOCOL (grpc or http/protobuf, the
    default). The HTTP exporter wants the full /v1/<signal> URL under the base endpoint.
    """
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    transport = "grpc" if protocol == "grpc" else "http"
    kind, class_name = _OTLP_CLASSES[signal]
    try:
        module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{transport}.{kind}_exporter")
    except ImportError:
        return None
    if transport == "http":
        endpoint = f"{endpoint.rstrip('/')}/v1/{signal}"
    return getattr(module, class_name)(endpoint=endpoint)


@functools.cache
def tracer() -> trace.Tracer:
    """The CareBridge tracer. Cached (looking it up cost ~30 µs per request): before a provider
    is installed this is the API's proxy tracer, which follows the provider once it is set."""
    return trace.get_tracer(TRACER_NAME)


# --- metrics -----------------------------------------------------------------------------------


@functools.cache
def _counter(name: str) -> Counter:
    # The API meter is a proxy, so a counter made before the provider is installed still reports.
    return metrics.get_meter(TRACER_NAME).create_counter(name, unit="{event}")


def count_event(name: str, topic: str, service: str, amount: int = 1) -> None:
    """Add to one of the event counters (EVENTS_PUBLISHED, EVENTS_CONSUMED, EVENTS_DLQ)."""
    _counter(name).add(amount, {"topic": topic, SERVICE_ATTRIBUTE: service})


# --- propagation -------------------------------------------------------------------------------


@functools.cache
def _trace_fields() -> frozenset[str]:
    """The header names the propagator uses (W3C traceparent/tracestate); the propagator is set
    once per process, so this is computed once."""
    return frozenset(propagate.get_global_textmap().fields)


def kafka_headers_from_context(ctx: otel_context.Context | None = None) -> list[tuple[str, bytes]]:
    """Record headers carrying the current (or given) trace context."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return [(key, value.encode("latin-1")) for key, value in carrier.items()]


def context_from_kafka_headers(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context:
    fields = _trace_fields()
    carrier = {
        key.lower(): value.decode("latin-1")
        for key, value in headers or ()
        if key.lower() in fields and value is not None
    }
    return propagate.extract(carrier)


def replace_trace_headers(
    headers: Iterable[tuple[str, bytes]], ctx: otel_context.Context | None = None
) -> list[tuple[str, bytes]]:
    """`headers` with their trace-context headers replaced by those of `ctx` (or the current one)."""
    fields = _trace_fields()
    kept = [(key, value) for key, value in headers if key.lower() not in fields]
    return kept + kafka_headers_from_context(ctx)


def http_headers_from_context(ctx: otel_context.Context | None = None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return carrier


def context_from_http_headers(headers: Mapping[str, str]) -> otel_context.Context:
    fields = _trace_fields()
    carrier = {key.lower(): value for key, value in headers.items() if key.lower() in fields}
    return propagate.extract(carrier)


# --- HTTP --------------------------------------------------------------------------------------


class TracingMiddleware:
    """Pure ASGI middleware: one SERVER span per HTTP request, continuing the caller's trace.

    The span is named `"{METHOD} {route template}"` once the router has matched (Starlette
    leaves the matched route in `scope["route"]`), else `"{METHOD} {path}"`.
    """

    def __init__(self, app: ASGIApp, service_name: str) -> None:
        self.app = app
        self.service_name = service_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fields = _trace_fields()
        carrier = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope.get("headers") or ()
            if key.decode("latin-1") in fields
        }
        method = scope.get("method", "GET")
        path = scope.get("path", "")
        attributes = {"http.request.method": method, "url.path": path, SERVICE_ATTRIBUTE: self.service_name}
        with tracer().start_as_current_span(
            f"{method} {path}",
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=True,
            set_status_on_exception=True,
        ) as span:

            async def send_with_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, send_with_status)
            finally:
                template = getattr(scope.get("route"), "path", None)
                if template:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
