"""careplan's own HTTP routes (the gateway forwards them): the case manager's worklist."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from services.careplan import worklist as worklists
from shared.errors import InvalidInput
from shared.fhir.rest import FhirRest
from shared.http import json_response


def build_router(rest: FhirRest, caseload_of: worklists.CaseloadOf) -> APIRouter:
    router = APIRouter()

    @router.get("/worklist")
    async def worklist(request: Request, practitioner: str | None = None) -> Response:
        """`GET /worklist?practitioner=<id>`: due today, overdue and high-risk activities of the
        clients on that case manager's caseload."""
        if not practitioner:
            raise InvalidInput("worklist needs ?practitioner=<Practitioner id>")
        practitioner_id = practitioner.removeprefix("Practitioner/")
        if not practitioner_id or "/" in practitioner_id:
            raise InvalidInput(f"Not a Practitioner id: {practitioner!r}")
        body = await worklists.worklist(rest, caseload_of, practitioner_id, datetime.now(UTC))
        return json_response(body)

    return router
