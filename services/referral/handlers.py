"""Event consumers of the referral service: decode, call the domain, record the effect.

Each handler runs inside the consumer's transaction, together with the inbox row that makes
it idempotent (see shared.events.consumer).
"""

from __future__ import annotations

from services.referral.domain import referral_patient
from shared.events import CloudEvent, Handler
from shared.fhir.inbound import apply_translated_event, index_patient_event
from shared.fhir.projections import apply_to_projection
from shared.fhir.rest import FhirRest
from shared.store import Transaction

#: The projection name under which referral keeps the patients its referrals are about.
PATIENTS = "patients"


async def on_patient_event(event: CloudEvent, tx: Transaction) -> None:
    await apply_to_projection(event, tx, projection=PATIENTS, resource_type="Patient", keep=referral_patient)
    # The identifier index resolves the `Patient?identifier=...` references of HL7 messages.
    await index_patient_event(event, tx)


def on_hl7_message(rest: FhirRest) -> Handler:
    """Applies referral's entries of each translated HL7 v2 message through `rest`; it waits
    (retries) while the message's Patient has not reached the identifier index yet."""

    async def handle(event: CloudEvent, tx: Transaction) -> None:
        await apply_translated_event(rest, event, tx)

    return handle
