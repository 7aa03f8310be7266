"""The gateway app: the one public door (FHIR REST facade, HL7 v2 over MLLP and HTTP)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.gateway import archive
from services.gateway.api import GatewayState, build_router
from services.gateway.mllp_server import MLLPServer
from services.gateway.proxy import ServiceClients
from services.gateway.settings import Settings
from shared.auth import TokenVerifier
from shared.events import topics
from shared.http import install_error_handlers, json_response
from shared.service import ServiceRuntime
from shared.telemetry import NO_FRAMEWORK_TELEMETRY, TracingMiddleware


def create_app(settings: Settings) -> FastAPI:
    settings.check_safe_to_serve()
    runtime = ServiceRuntime(settings, produces=(topics.AUDIT,), extra_migrations=archive.MIGRATIONS)
    state = GatewayState()
    state.runtime = runtime

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        state.clients = ServiceClients(settings.service_urls())
        state.verifier = TokenVerifier(
            hs256_secret=settings.jwt_hs256_secret,
            jwks_url=settings.jwt_jwks_url,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer or None,
        )
        state.archive = archive.MessageArchive(runtime.store, runtime.redis, settings)
        mllp = MLLPServer(state.archive, settings.mllp_host, settings.mllp_port, settings.max_hl7_bytes)
        await mllp.start()
        app.state.mllp = mllp
        try:
            yield
        finally:
            await mllp.stop()
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
    install_error_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> object:
        return json_response({"status": "alive", "service": "gateway"})

    app.include_router(build_router(state, settings))
    app.add_middleware(TracingMiddleware, service_name=settings.service_name)
    return app
