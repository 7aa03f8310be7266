"""Tracing helpers: context through Kafka and HTTP headers, the ASGI middleware, setup."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from shared.settings import ServiceSettings
from shared.telemetry import (
    SERVICE_ATTRIBUTE,
    TracingMiddleware,
    _span_exporter,
    context_from_http_headers,
    context_from_kafka_headers,
    http_headers_from_context,
    kafka_headers_from_context,
    replace_trace_headers,
    setup_telemetry,
    tracer,
)
from tests.conftest import attach_memory_exporter

INCOMING_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_TRACEPARENT = f"00-{INCOMING_TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def module_spans() -> InMemorySpanExporter:
    exporter: InMemorySpanExporter = attach_memory_exporter()
    return exporter


@pytest.fixture
def spans(module_spans: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    module_spans.clear()
    yield module_spans


def _trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def test_kafka_headers_carry_the_current_span_as_w3c_traceparent(spans: InMemorySpanExporter) -> None:
    with tracer().start_as_current_span("outer") as span:
        headers = kafka_headers_from_context()
    names = dict(headers)
    assert names["traceparent"].decode().split("-")[1] == format(span.get_span_context().trace_id, "032x")
    restored = trace.get_current_span(context_from_kafka_headers(headers)).get_span_context()
    assert restored.trace_id == span.get_span_context().trace_id
    assert restored.span_id == span.get_span_context().span_id
    assert restored.is_remote


def test_context_from_kafka_headers_ignores_other_headers_and_tolerates_none() -> None:
    ctx = context_from_kafka_headers([("x-other", b"1"), ("traceparent", INCOMING_TRACEPARENT.encode())])
    assert format(trace.get_current_span(ctx).get_span_context().trace_id, "032x") == INCOMING_TRACE_ID
    assert not trace.get_current_span(context_from_kafka_headers(None)).get_span_context().is_valid


def test_replacing_trace_headers_keeps_other_headers_and_swaps_the_traceparent(
    spans: InMemorySpanExporter,
) -> None:
    original = [("traceparent", INCOMING_TRACEPARENT.encode()), ("x-source", b"intake")]
    with tracer().start_as_current_span("publish") as span:
        replaced = replace_trace_headers(original)
    assert ("x-source", b"intake") in replaced
    parents = [value.decode() for key, value in replaced if key == "traceparent"]
    assert len(parents) == 1
    assert parents[0].split("-")[2] == format(span.get_span_context().span_id, "016x")


def test_http_headers_round_trip_the_trace_context(spans: InMemorySpanExporter) -> None:
    with tracer().start_as_current_span("call") as span:
        headers = http_headers_from_context()
    ctx = context_from_http_headers({"TraceParent": headers["traceparent"], "Accept": "x"})
    assert trace.get_current_span(ctx).get_span_context().trace_id == span.get_span_context().trace_id


def test_setup_telemetry_leaves_an_installed_sdk_provider_alone(module_spans: InMemorySpanExporter) -> None:
    installed = trace.get_tracer_provider()
    telemetry = setup_telemetry(
        ServiceSettings(service_name="intake", otel_exporter_otlp_endpoint="http://x:4318")
    )
    assert trace.get_tracer_provider() is installed
    assert telemetry.installed is False
    telemetry.shutdown()  # not ours: a no-op
    with tracer().start_as_current_span("still recording") as span:
        assert span.is_recording()


async def _patient(request: Request) -> PlainTextResponse:
    assert trace.get_current_span().is_recording()
    return PlainTextResponse("ok", status_code=201 if request.method == "POST" else 200)


def _traced_app() -> TracingMiddleware:
    app = Starlette(routes=[Route("/fhir/Patient/{id}", _patient, methods=["GET", "POST"])])
    return TracingMiddleware(app, service_name="intake")


async def test_middleware_continues_the_callers_trace_in_a_server_span_named_by_route(
    spans: InMemorySpanExporter,
) -> None:
    transport = httpx.ASGITransport(app=_traced_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/fhir/Patient/p1", headers={"traceparent": INCOMING_TRACEPARENT})
    assert response.status_code == 201
    [span] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert span.name == "POST /fhir/Patient/{id}"
    assert _trace_id(span) == INCOMING_TRACE_ID
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "POST"
    assert attributes["url.path"] == "/fhir/Patient/p1"
    assert attributes["http.response.status_code"] == 201
    assert attributes[SERVICE_ATTRIBUTE] == "intake"


async def test_middleware_names_an_unrouted_request_by_its_path(spans: InMemorySpanExporter) -> None:
    transport = httpx.ASGITransport(app=_traced_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/nowhere")
    assert response.status_code == 404
    [span] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert span.name == "GET /nowhere"
    assert dict(span.attributes or {})["http.response.status_code"] == 404


def test_an_otlp_endpoint_without_the_exporter_package_warns_and_exports_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("opentelemetry-exporter-otlp is installed")
    settings = ServiceSettings(otel_exporter_otlp_endpoint="http://collector:4318")
    assert _span_exporter(settings) is None
    assert "opentelemetry-exporter-otlp is not installed" in caplog.text


def test_console_export_is_chosen_when_asked_for_and_nothing_otherwise() -> None:
    assert isinstance(_span_exporter(ServiceSettings(otel_console=True)), ConsoleSpanExporter)
    assert _span_exporter(ServiceSettings()) is None
