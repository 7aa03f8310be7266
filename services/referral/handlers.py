"""Event consumers of the referral service: decode, call the domain, record the effect.

Each handler runs inside the consumer's transaction, together with the inbox row that makes
it idempotent (see shared.events.consumer).
"""

from __future__ import annotations

from services.referral.domain import referral_patient
from shared.events import CloudEvent
from shared.fhir.projections import apply_to_projection
from shared.store import Transaction

#: The projection name under which referral keeps the patients its referrals are about.
PATIENTS = "patients"


async def on_patient_event(event: CloudEvent, tx: Transaction) -> None:
    await apply_to_projection(event, tx, projection=PATIENTS, resource_type="Patient", keep=referral_patient)
