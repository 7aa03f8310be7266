"""Builds a service's FastAPI app the same way for all four services."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI

from shared.fhir.rest import Dispatcher, FhirRest
from shared.fhir.router import build_router
from shared.http import install_error_handlers
from shared.service import ServiceRuntime, add_health_routes, runtime_lifespan
from shared.telemetry import NO_FRAMEWORK_TELEMETRY, TracingMiddleware


def create_service_app(runtime: ServiceRuntime, owned_types: Iterable[str]) -> FastAPI:
    """A service app: health routes, the FHIR routes for `owned_types`, errors as OperationOutcome."""
    settings = runtime.settings
    app = FastAPI(
        title=f"CareBridge {settings.service_name}",
        lifespan=lambda _app: runtime_lifespan(runtime),
        docs_url=None,
        redoc_url=None,
        telemetry=NO_FRAMEWORK_TELEMETRY,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    add_health_routes(app, runtime)
    rest = FhirRest(runtime, owned_types)
    app.include_router(build_router(Dispatcher(rest), settings.max_body_bytes))
    app.add_middleware(TracingMiddleware, service_name=settings.service_name)
    return app
