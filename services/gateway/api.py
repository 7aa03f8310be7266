"""The gateway's public routes: `/fhir/*` (authenticated, routed to the owning service),
`POST /hl7v2`, and `/readyz` for the whole system. Thin: the work is in proxy and archive."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.gateway.archive import MessageArchive
from services.gateway.proxy import ServiceClients, route
from shared.auth import Principal, TokenVerifier
from shared.errors import Forbidden, UnsupportedMediaType
from shared.http import check_accept, json_response, read_body
from shared.service import ServiceRuntime
from shared.settings import GatewaySettings

#: HL7 v2 over HTTP media types (HL7 v2 ER7 as commonly registered; text/plain from older senders).
HL7_MEDIA_TYPES = frozenset({"x-application/hl7-v2+er7", "application/hl7-v2", "text/plain"})
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


class GatewayState:
    """What the routes need; filled in by the app's lifespan."""

    runtime: ServiceRuntime
    clients: ServiceClients
    archive: MessageArchive
    verifier: TokenVerifier


def public_base(request: Request, settings: GatewaySettings) -> str:
    return settings.public_base_url or str(request.base_url).rstrip("/") + "/fhir"


def authorize(principal: Principal, resource_type: str, interaction: str) -> None:
    principal.require(resource_type, interaction)
    # patient/ scopes need the patient compartment filter of the full FHIR REST layer; until
    # it exists, a token whose only grant is patient-scoped is refused rather than over-served.
    if not any(s.context != "patient" for s in principal.scopes if s.resource_type in ("*", resource_type)):
        raise Forbidden("patient/ scopes are not yet supported by this server; use user/ or system/ scopes")


def build_router(state: GatewayState, settings: GatewaySettings) -> APIRouter:
    router = APIRouter()

    @router.api_route("/fhir/{path:path}", methods=_METHODS)
    async def fhir(path: str, request: Request) -> Response:
        principal = state.verifier.verify(request.headers.get("authorization"))
        target = route(request.method, path)
        authorize(principal, target.resource_type, target.interaction)
        check_accept(request)
        body = await read_body(request, settings.max_body_bytes)
        return await state.clients.forward(
            target.service,
            request.method,
            path,
            request.url.query,
            request.headers,
            body,
            public_base(request, settings),
        )

    @router.post("/hl7v2")
    async def hl7v2(request: Request) -> Response:
        state.verifier.verify(request.headers.get("authorization"))
        media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if media not in HL7_MEDIA_TYPES:
            raise UnsupportedMediaType(f"Send HL7 v2 as x-application/hl7-v2+er7, not {media or 'nothing'}")
        raw = await read_body(request, settings.max_hl7_bytes)
        received = await state.archive.receive(raw, "http")
        return Response(received.ack, 200, media_type="x-application/hl7-v2+er7")

    @router.get("/readyz", include_in_schema=False)
    async def readyz() -> Any:
        own = await state.runtime.readiness()
        services = await state.clients.readiness()
        ready = all(v == "ok" for v in own.values()) and all(s["ready"] for s in services.values())
        body = {"service": "gateway", "ready": ready, "checks": own, "services": services}
        return json_response(body, 200 if ready else 503)

    return router
