"""`GET /referral-metrics`: the closed-loop funnel over referral's Task index (referrals.py keeps
each Task's status timeline). The gateway forwards it; a clinic's token only sees its own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response

from services.referral.domain.metrics import Timeline, referral_metrics
from services.referral.referrals import referral_tasks
from shared.errors import InvalidInput
from shared.fhir.rest import FhirRest
from shared.http import json_response


async def load_timelines(
    rest: FhirRest, *, since: datetime | None, until: datetime | None, organization: str | None
) -> list[Timeline]:
    t = referral_tasks
    query = sa.select(t).where(t.c.requested_at.is_not(None))
    if since is not None:
        query = query.where(t.c.requested_at >= since)
    if until is not None:
        query = query.where(t.c.requested_at < until)
    if organization is not None:
        query = query.where(t.c.owner_org == organization)
    async with rest.store.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [
        Timeline(
            status=r.status,
            owner_org=r.owner_org,
            category=(r.category_system, r.category_code, r.category_display),
            requested_at=r.requested_at,
            received_at=r.received_at,
            accepted_at=r.accepted_at,
            in_progress_at=r.in_progress_at,
            completed_at=r.completed_at,
        )
        for r in rows
    ]


def _instant(name: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name} must be a date or dateTime, not {value!r}", expression=[name]) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def build_router(rest: FhirRest) -> APIRouter:
    router = APIRouter()

    @router.get("/referral-metrics")
    async def metrics(
        request: Request, since: str | None = None, until: str | None = None, organization: str | None = None
    ) -> Response:
        """The funnel of the referrals sent in [since, until), optionally for one receiving
        Organization (`organization=<id>`)."""
        org = organization.removeprefix("Organization/") if organization else None
        body: dict[str, Any] = {
            "generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "since": since,
            "until": until,
            "organization": f"Organization/{org}" if org else None,
        }
        timelines = await load_timelines(
            rest, since=_instant("since", since), until=_instant("until", until), organization=org
        )
        return json_response({**body, **referral_metrics(timelines)})

    return router
