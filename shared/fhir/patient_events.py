"""What careplan and referral do with intake's Patient topic: keep their minimum-necessary copy
of each Patient, the identifier index HL7 references resolve through, and follow merges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.events import CloudEvent, Handler, topics
from shared.fhir.inbound import index_patient_event
from shared.fhir.patient_merge import apply_merge_event
from shared.fhir.projections import apply_to_projection
from shared.fhir.rest import FhirRest
from shared.store import Transaction


def patient_event_handler(
    rest: FhirRest, *, projection: str, keep: Callable[[dict[str, Any]], dict[str, Any]]
) -> Handler:
    """Keeps `projection` (what `keep` takes of each Patient) and the identifier index from
    intake's Patient events, and re-points this service's own resources when intake merges
    (or unmerges) two Patients."""

    async def handle(event: CloudEvent, tx: Transaction) -> None:
        if event.type in (topics.PATIENT_MERGED_EVENT, topics.PATIENT_UNMERGED_EVENT):
            await apply_merge_event(rest, tx, event)
            return
        await apply_to_projection(event, tx, projection=projection, resource_type="Patient", keep=keep)
        # The identifier index resolves the `Patient?identifier=...` references of HL7 messages.
        await index_patient_event(event, tx)

    return handle
