"""The gateway's FastAPI routes: `POST /hl7v2`, the HL7 v2 archive (`/hl7v2/messages`, with
`$reprocess`) and `/readyz` for the whole system. Thin: the work is in hl7/pipeline.py. The `/fhir`
door is served in front of these routes by the FHIR facade (fhir_facade.py), which the app wires
in as middleware."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.gateway import archive
from services.gateway.capability import CapabilityCache
from services.gateway.fhir_facade import FhirFacade
from services.gateway.hl7 import batch as hl7_batch
from services.gateway.hl7.pipeline import Hl7Pipeline
from services.gateway.proxy import ServiceClients
from shared.auth import TokenVerifier
from shared.errors import Forbidden, InvalidInput, NotFound, UnsupportedMediaType
from shared.http import json_response, read_body
from shared.service import ServiceRuntime
from shared.settings import GatewaySettings

#: HL7 v2 over HTTP media types (HL7 v2 ER7 as commonly registered; text/plain from older senders).
HL7_MEDIA_TYPE = "x-application/hl7-v2+er7"
HL7_MEDIA_TYPES = frozenset({HL7_MEDIA_TYPE, "application/hl7-v2", "text/plain"})
#: The SMART scope "type" of the HL7 v2 endpoints: `system/hl7v2.c` sends messages,
#: `system/hl7v2.rs` reads the archive, `system/hl7v2.u` re-processes (`system/*.cruds` does all).
HL7V2_SCOPE_TYPE = "hl7v2"


def _encode_cursor(at: datetime, message_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{message_id}".encode()).decode()


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        at, _, message_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), message_id
    except ValueError:
        raise InvalidInput("cursor is not one this server gave out") from None


class GatewayState:
    """What the routes and the FHIR facade need; filled in by the app's lifespan."""

    runtime: ServiceRuntime
    clients: ServiceClients
    pipeline: Hl7Pipeline
    verifier: TokenVerifier
    capability: CapabilityCache
    facade: FhirFacade


def build_router(state: GatewayState, settings: GatewaySettings) -> APIRouter:
    router = APIRouter()

    @router.post("/hl7v2")
    async def hl7v2(request: Request) -> Response:
        """One message, or a batch (FHS/BHS envelope, or messages back to back); the ACKs come
        back in the body, in order, in a BHS/BTS envelope when the request had one."""
        principal = await state.verifier.verify_async(request.headers.get("authorization"))
        principal.require(HL7V2_SCOPE_TYPE, "create")
        media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if media not in HL7_MEDIA_TYPES:
            raise UnsupportedMediaType(f"Send HL7 v2 as x-application/hl7-v2+er7, not {media or 'nothing'}")
        raw = await read_body(request, settings.max_hl7_bytes)
        batch = hl7_batch.read_batch(raw)
        acks: list[bytes] = []
        for message in batch.messages:
            acks.extend((await state.pipeline.receive(message, "http")).acks)
        return Response(hl7_batch.write_acks(batch, acks), 200, media_type=HL7_MEDIA_TYPE)

    @router.get("/hl7v2/messages")
    async def list_hl7_messages(
        request: Request, status: str | None = None, _count: int = 50, cursor: str | None = None
    ) -> Response:
        """The archive, newest first: `?status=error` lists what awaits re-processing."""
        principal = await state.verifier.verify_async(request.headers.get("authorization"))
        principal.require(HL7V2_SCOPE_TYPE, "search")
        if status is not None and status not in archive.STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(archive.STATUSES)}, not {status!r}")
        limit = max(1, min(_count, 500))
        found = await archive.list_messages(
            state.runtime.store, status=status, limit=limit + 1, before=_decode_cursor(cursor)
        )
        body: dict[str, Any] = {"messages": [m.as_json() for m in found[:limit]]}
        if len(found) > limit:
            last = found[limit - 1]
            body["next"] = str(
                request.url.include_query_params(cursor=_encode_cursor(last.received_at, last.id))
            )
        return json_response(body)

    @router.get("/hl7v2/messages/{message_id}")
    async def read_hl7_message(request: Request, message_id: str) -> Response:
        """One message's metadata, outcome, conversion report and ACKs (not its body, which is
        PHI: `?_include=raw` adds it for a caller with hl7v2 read rights)."""
        principal = await state.verifier.verify_async(request.headers.get("authorization"))
        principal.require(HL7V2_SCOPE_TYPE, "read")
        found = await archive.get_message(state.runtime.store, message_id)
        if found is None:
            raise NotFound(f"No HL7 v2 message {message_id}")
        summary, raw, acks = found
        body = summary.as_json()
        body["acks"] = [a.decode("utf-8", "replace") for a in acks]
        if request.query_params.get("_include") == "raw":
            body["raw"] = raw.decode("utf-8", "replace")
        return json_response(body)

    @router.post("/hl7v2/messages/{message_id}/$reprocess")
    async def reprocess_hl7_message(request: Request, message_id: str) -> Response:
        principal = await state.verifier.verify_async(request.headers.get("authorization"))
        principal.require(HL7V2_SCOPE_TYPE, "update")
        received = await state.pipeline.reprocess(message_id)
        return json_response(
            {
                "id": message_id,
                "status": received.status,
                "acks": [a.decode("utf-8", "replace") for a in received.acks],
            }
        )

    @router.get("/worklist")
    async def worklist(request: Request) -> Response:
        """A case manager's worklist, served by careplan: `?practitioner=<id>`. It spans many
        patients, so a patient- or clinic-restricted token cannot have it."""
        principal = await state.verifier.verify_async(request.headers.get("authorization"))
        principal.require("CarePlan", "search")
        if (
            principal.patient
            or principal.organization
            or any(s.context == "patient" for s in principal.scopes)
        ):
            raise Forbidden("The worklist is only available to user/ and system/ scopes")
        target = "/worklist" + (f"?{request.url.query}" if request.url.query else "")
        answer = await state.clients.get_json("careplan", target, state.facade.public_base_url or "")
        return json_response(answer.body, answer.status)

    @router.get("/referral-metrics")
    async def referral_metrics(request: Request) -> Response:
        """The closed-loop referral funnel, served by referral. A clinic's token sees its own
        organization's referrals only; a patient-restricted token cannot have it."""
        principal = await state.verifier.verify_async(request.headers.get("authorization"))
        principal.require("Task", "search")
        if principal.patient or any(s.context == "patient" for s in principal.scopes):
            raise Forbidden("Referral metrics are not available to patient/ scopes")
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "organization"]
        organization = principal.organization or request.query_params.get("organization")
        if organization:
            params.append(("organization", organization))
        target = "/referral-metrics" + (f"?{urlencode(params)}" if params else "")
        answer = await state.clients.get_json("referral", target, state.facade.public_base_url or "")
        return json_response(answer.body, answer.status)

    @router.get("/readyz", include_in_schema=False)
    async def readyz() -> Any:
        own = await state.runtime.readiness()
        services = await state.clients.readiness()
        ready = all(v == "ok" for v in own.values()) and all(s["ready"] for s in services.values())
        body = {"service": "gateway", "ready": ready, "checks": own, "services": services}
        return json_response(body, 200 if ready else 503)

    return router
