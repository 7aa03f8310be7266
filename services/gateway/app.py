"""The gateway app: the one public door (FHIR REST facade, HL7 v2 over MLLP and HTTP)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.gateway import archive, handlers
from services.gateway.api import GatewayState, build_router
from services.gateway.capability import CapabilityCache
from services.gateway.fhir_facade import FhirFacade, FhirRoutes
from services.gateway.hl7.pipeline import Hl7Pipeline
from services.gateway.mllp_server import MLLPServer
from services.gateway.openapi import add_fhir_routes
from services.gateway.proxy import ServiceClients
from services.gateway.settings import Settings
from shared.auth import TokenVerifier
from shared.events import topics
from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest import Dispatcher, FhirRest, capability_statement
from shared.fhir.router import build_router as build_fhir_router
from shared.http import install_error_handlers, json_response
from shared.service import ConsumerSpec, ServiceRuntime
from shared.telemetry import NO_FRAMEWORK_TELEMETRY, TracingMiddleware


def create_app(settings: Settings) -> FastAPI:
    settings.check_safe_to_serve()
    runtime = ServiceRuntime(
        settings, produces=(topics.AUDIT, topics.HL7_TRANSLATED), extra_migrations=archive.MIGRATIONS
    )
    state = GatewayState()
    state.runtime = runtime
    own_rest = FhirRest(runtime, OWNED_TYPES["gateway"])
    runtime.consumers = (ConsumerSpec("audit", (topics.AUDIT,), handlers.on_audit_event(own_rest)),)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        _open_fhir_door(state, settings)
        state.pipeline = Hl7Pipeline(runtime.store, runtime.redis, settings)
        mllp = MLLPServer(state.pipeline, settings)
        await mllp.start()
        app.state.mllp = mllp
        # The runtime froze start-up objects already; freeze the gateway's own (clients, door).
        gc.freeze()
        try:
            yield
        finally:
            await mllp.stop()
            await state.pipeline.close()
            await state.clients.aclose()
            await runtime.stop()

    app = FastAPI(
        title="CareBridge gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry=NO_FRAMEWORK_TELEMETRY,
    )
    app.state.runtime = runtime
    app.state.gateway = state
    install_error_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> object:
        return json_response({"status": "alive", "service": "gateway"})

    app.include_router(build_router(state, settings))
    # The types the gateway owns itself (AuditEvent), reached through the facade after auth.
    app.include_router(
        build_fhir_router(Dispatcher(own_rest), settings.max_body_bytes), include_in_schema=False
    )
    _describe_fhir_routes(app)
    # The middleware added last is the outermost: the trace span covers the FHIR door too.
    app.add_middleware(FhirRoutes, holder=state)
    app.add_middleware(TracingMiddleware, service_name=settings.service_name)
    return app


def _open_fhir_door(state: GatewayState, settings: Settings) -> None:
    """The connection pools, token verifier, CapabilityStatement cache and the facade using them."""
    state.clients = ServiceClients(settings.service_urls())
    state.verifier = TokenVerifier(
        hs256_secret=settings.jwt_hs256_secret,
        jwks_url=settings.jwt_jwks_url,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer or None,
    )
    state.capability = CapabilityCache(state.clients, local=_own_capability)
    state.facade = FhirFacade(
        clients=state.clients,
        verifier=state.verifier,
        capability=state.capability,
        max_body_bytes=settings.max_body_bytes,
        public_base_url=settings.public_base_url,
    )


def _own_capability(base: str) -> list[dict[str, Any]]:
    """The CapabilityStatement entries of the types the gateway serves itself."""
    statement = capability_statement("gateway", OWNED_TYPES["gateway"], base_url=base)
    return list(statement["rest"][0]["resource"])


def _describe_fhir_routes(app: FastAPI) -> None:
    """/openapi.json lists the `/fhir` routes, which FastAPI does not see (openapi.py)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            app.openapi_schema = add_fhir_routes(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
