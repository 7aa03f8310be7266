"""Event consumers of the referral service: decode, call the domain, record the effect.

Each handler runs inside the consumer's transaction, together with the inbox row that makes
it idempotent (see shared.events.consumer).
"""

from __future__ import annotations

from services.referral.domain import referral_patient
from shared.events import CloudEvent, Handler
from shared.fhir.inbound import apply_translated_event
from shared.fhir.patient_events import patient_event_handler
from shared.fhir.rest import FhirRest
from shared.store import Transaction

#: The projection name under which referral keeps the patients its referrals are about.
PATIENTS = "patients"


def on_patient_event(rest: FhirRest) -> Handler:
    return patient_event_handler(rest, projection=PATIENTS, keep=referral_patient)


def on_hl7_message(rest: FhirRest) -> Handler:
    """Applies referral's entries of each translated HL7 v2 message through `rest`; it waits
    (retries) while the message's Patient has not reached the identifier index yet."""

    async def handle(event: CloudEvent, tx: Transaction) -> None:
        await apply_translated_event(rest, event, tx)

    return handle
