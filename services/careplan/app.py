"""The careplan service app: wires the store, the bus, the consumers, the hooks and the routes.

- Intake's Encounters and Conditions drive post-discharge follow-up (followup.py); Appointments
  written here count as visits; every CarePlan write re-indexes its obligations (activities.py),
  which the scheduler escalates and the worklist lists (worklist.py).
- Referral's directory events keep the programs and case managers (caseload.py); its referrals
  and their Tasks show on the plan (domain/referral_activity.py).
- Intake's triage adds same-day safety activities (handlers.py).
- `Measure/fuh|fum/$evaluate-measure` computes HEDIS FUH and FUM (quality.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import FastAPI

from services.careplan import activities, api, caseload, followup, handlers, outcomes, quality, worklist
from services.careplan.settings import Settings
from shared.app import create_service_app
from shared.events import topics
from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest import FhirRest
from shared.service import ConsumerSpec, ServiceRuntime
from shared.store import Transaction


def create_app(settings: Settings) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        produces=(topics.CAREPLAN,),
        extra_migrations=(
            *activities.MIGRATIONS,
            *followup.MIGRATIONS,
            *caseload.MIGRATIONS,
            *outcomes.MIGRATIONS,
        ),
    )

    async def assign(rest: FhirRest, tx: Transaction, patient_id: str, now: datetime) -> Any:
        return await caseload.assign_case_manager(rest, tx, patient_id, now=now)

    # The routes and the handlers write through the same FHIR interactions (with the same
    # hooks); the runtime hands them its store once the lifespan has opened it.
    rest = FhirRest(
        runtime,
        OWNED_TYPES["careplan"],
        hooks={"CarePlan": activities.PlanIndexHooks(), "Appointment": followup.AppointmentVisits(assign)},
        operations=quality.operations(),
    )
    runtime.on_start = (lambda _runtime: quality.load_measures(rest),)
    runtime.consumers = (
        ConsumerSpec("patients", (topics.PATIENT,), handlers.on_patient_event(rest)),
        ConsumerSpec("triage", (topics.TRIAGE,), handlers.on_triage_event(rest)),
        ConsumerSpec(
            "clinical", (topics.ENCOUNTER, topics.CLINICAL), handlers.on_clinical_event(rest, assign)
        ),
        ConsumerSpec("referral", (topics.REFERRAL,), handlers.on_referral_event(rest)),
        ConsumerSpec(
            "hl7",
            (topics.HL7_TRANSLATED,),
            handlers.on_hl7_message(rest),
            accepts=topics.concerns("careplan"),
        ),
    )
    runtime.background = (worklist.follow_up_scheduler(rest, settings.follow_up_scan_seconds),)
    return create_service_app(runtime, rest, routers=(api.build_router(rest, caseload.caseload_of),))
