"""Matching needs to directory services: `HealthcareService/$match` (shared/fhir/operations.py)
and the needs referral keeps from intake's SDOH screening events. Thin: the parameters, the
ranking and the answer are domain/match_parameters.py and domain/matching.py.

`$match` with only a `patient` ranks for that patient's latest screened needs: the SDOH needs
event of their most recent screening with a positive SDOH answer replaces the previous one (the
`sdoh-needs` projection, keyed by Patient id, versioned by the event's time). A negative
screening publishes no event, so a need stays until a later positive screening replaces it;
a case manager can always name the needs in the request instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import orjson

from services.referral.directory import DirectoryCache, raw_fetch
from services.referral.domain.match_parameters import (
    MatchQuery,
    match_bundle,
    needs_from_record,
    needs_record,
    parse_match_parameters,
)
from services.referral.domain.matching import MatchOptions, Need, rank
from services.referral.domain.seeker import seeker_from_patient
from services.referral.handlers import PATIENTS
from shared.errors import BusinessRuleViolation, NotFound, PoisonMessage
from shared.events import CloudEvent, Handler, topics
from shared.fhir.rest import Operation, OperationCall, RestResponse
from shared.fhir.rest.messages import json_object
from shared.store import Store, Transaction

#: The projection of each Patient's latest screened SDOH needs (domain/match_parameters.needs_record).
NEEDS: Final = "sdoh-needs"


def operations(cache: DirectoryCache) -> dict[tuple[str, str], Operation]:
    async def match(call: OperationCall) -> RestResponse:
        body = call.request.resource if call.request.resource is not None else json_object(call.request.body)
        query = parse_match_parameters(body)
        loaded = await cache.current(call.rest.store)
        patient, needs = await _patient_and_needs(call.rest.store, query)
        seeker = seeker_from_patient(
            patient, languages=query.languages, position=query.position, qualifications=query.qualifications
        )
        options = MatchOptions(
            now=query.now or datetime.now(UTC),
            within_days=query.within_days,
            include_unavailable=query.include_unavailable,
            limit=query.count,
            default_zone=loaded.index.zone or "UTC",
        )
        matches = rank(loaded.index, needs, seeker, options)
        body_bytes = match_bundle(
            matches, base=call.request.base, services=loaded.services, locations=loaded.locations
        )
        return RestResponse(200, body_bytes)

    return {("HealthcareService", "match"): match}


_PROJECTION_SQL: Final = 'SELECT data FROM projections WHERE name = ? AND "key" = ?'


async def _projection(store: Store, name: str, key: str) -> bytes | None:
    """A projection row's data (b"" for a deleted resource), on the raw read path."""
    rows = await raw_fetch(store, _PROJECTION_SQL, (name, key))
    return bytes(rows[0][0]) if rows else None


async def _patient_and_needs(store: Store, query: MatchQuery) -> tuple[dict[str, object] | None, list[Need]]:
    patient = None
    needs = list(query.needs)
    if query.patient is not None:
        kept = await _projection(store, PATIENTS, query.patient)
        if not kept:
            raise NotFound(
                f"Patient/{query.patient} is not known to the referral service (it learns of Patients "
                "from intake's events, so a Patient registered a moment ago may not be here yet)"
            )
        patient = orjson.loads(kept)
        if not needs:
            screened = await _projection(store, NEEDS, query.patient)
            needs = needs_from_record(orjson.loads(screened)) if screened else []
    if not needs:
        whose = f"Patient/{query.patient} has no screened SDOH needs" if query.patient else "no patient given"
        raise BusinessRuleViolation(
            f"$match needs at least one need: give need parameters ({whose})",
            expression=["Parameters.parameter('need')"],
        )
    return patient, needs


def on_triage_event() -> Handler:
    """Keeps each Patient's latest SDOH needs from intake's TRIAGE topic (other events there,
    such as risk flags, are not referral's business)."""

    async def handle(event: CloudEvent, tx: Transaction) -> None:
        if event.type != topics.SDOH_NEEDS_EVENT:
            return
        patient, record = needs_record(event.data)
        record["screenedAt"] = event.time
        # A redelivered or older event never replaces a newer screening's needs.
        await tx.put_projection(NEEDS, patient, _event_version(event), orjson.dumps(record))

    return handle


def _event_version(event: CloudEvent) -> int:
    try:
        moment = datetime.fromisoformat(event.time.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise PoisonMessage(f"SDOH needs event {event.id} has no valid time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
