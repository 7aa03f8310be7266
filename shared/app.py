"""Builds a service's FastAPI app the same way for all four services."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI

from shared.fhir.rest import Dispatcher, FhirRest
from shared.fhir.router import build_router
from shared.http import install_error_handlers
from shared.service import ServiceRuntime, add_health_routes, runtime_lifespan
from shared.telemetry import NO_FRAMEWORK_TELEMETRY, TracingMiddleware


def create_service_app(runtime: ServiceRuntime, rest: FhirRest, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """A service app: health routes, the FHIR routes of `rest` (the types the service owns, with
    its hooks and operations), the service's own `routers`, errors as OperationOutcome."""
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
    for router in routers:
        app.include_router(router)
    app.include_router(build_router(Dispatcher(rest), settings.max_body_bytes))
    app.add_middleware(TracingMiddleware, service_name=settings.service_name)
    return app
