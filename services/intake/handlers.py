"""Event consumers of the intake service: decode, call the domain, record the effect.

Each handler runs inside the consumer's transaction, together with the inbox row that makes
it idempotent (see shared.events.consumer).
"""

from __future__ import annotations

from shared.events import CloudEvent, Handler
from shared.fhir.inbound import apply_translated_event
from shared.fhir.rest import FhirRest
from shared.store import Transaction


def on_hl7_message(rest: FhirRest) -> Handler:
    """Applies intake's entries of each translated HL7 v2 message (Patient and its clinical
    record, Patient merges) through `rest`, intake's FHIR interactions."""

    async def handle(event: CloudEvent, tx: Transaction) -> None:
        await apply_translated_event(rest, event, tx)

    return handle
