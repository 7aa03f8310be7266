"""Event consumers of the careplan service: decode, call the domain, record the effect.

Each handler runs inside the consumer's transaction, together with the inbox row that makes
it idempotent (see shared.events.consumer).
"""

from __future__ import annotations

from services.careplan.domain import caseload_patient
from shared.events import CloudEvent
from shared.fhir.projections import apply_to_projection
from shared.store import Transaction

#: The projection name under which careplan keeps the patients on its caseloads.
PATIENTS = "patients"


async def on_patient_event(event: CloudEvent, tx: Transaction) -> None:
    await apply_to_projection(event, tx, projection=PATIENTS, resource_type="Patient", keep=caseload_patient)
