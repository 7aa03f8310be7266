"""The gateway's FastAPI routes: `POST /hl7v2` and `/readyz` for the whole system. Thin: the work
is in archive. The `/fhir` door is served in front of these routes by the FHIR facade
(fhir_facade.py), which the app wires in as middleware."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.gateway.archive import MessageArchive
from services.gateway.capability import CapabilityCache
from services.gateway.fhir_facade import FhirFacade
from services.gateway.proxy import ServiceClients
from shared.auth import TokenVerifier
from shared.errors import UnsupportedMediaType
from shared.http import json_response, read_body
from shared.service import ServiceRuntime
from shared.settings import GatewaySettings

#: HL7 v2 over HTTP media types (HL7 v2 ER7 as commonly registered; text/plain from older senders).
HL7_MEDIA_TYPES = frozenset({"x-application/hl7-v2+er7", "application/hl7-v2", "text/plain"})


class GatewayState:
    """What the routes and the FHIR facade need; filled in by the app's lifespan."""

    runtime: ServiceRuntime
    clients: ServiceClients
    archive: MessageArchive
    verifier: TokenVerifier
    capability: CapabilityCache
    facade: FhirFacade


def build_router(state: GatewayState, settings: GatewaySettings) -> APIRouter:
    router = APIRouter()

    @router.post("/hl7v2")
    async def hl7v2(request: Request) -> Response:
        await state.verifier.verify_async(request.headers.get("authorization"))
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
