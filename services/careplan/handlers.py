"""Event consumers of the careplan service: decode, call the domain, record the effect.

Each handler runs inside the consumer's transaction, together with the inbox row that makes
it idempotent (see shared.events.consumer).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from services.careplan import activities, caseload, encounters, followup, outcomes
from services.careplan.domain.plans import (
    CASE_MANAGEMENT_CATEGORY,
    caseload_patient,
    has_activity_for,
    new_case_management_plan,
    safety_activity,
)
from services.careplan.domain.referral_activity import follow_task, referral_activity
from shared.errors import PoisonMessage
from shared.events import CloudEvent, Handler, topics
from shared.fhir.inbound import apply_translated_event
from shared.fhir.patient_events import patient_event_handler
from shared.fhir.rest import FhirRest
from shared.store import Transaction

#: The projection name under which careplan keeps the patients on its caseloads.
PATIENTS = "patients"


def on_patient_event(rest: FhirRest) -> Handler:
    return patient_event_handler(rest, projection=PATIENTS, keep=caseload_patient)


def on_hl7_message(rest: FhirRest) -> Handler:
    """Applies careplan's entries of each translated HL7 v2 message through `rest`; it waits
    (retries) while the message's Patient has not reached the identifier index yet."""

    async def handle(event: CloudEvent, tx: Transaction) -> None:
        await apply_translated_event(rest, event, tx)

    return handle


def on_clinical_event(rest: FhirRest, assign: followup.AssignCaseManager | None = None) -> Handler:
    """intake's Encounters and Conditions drive post-discharge follow-up (followup.py); PHQ-9
    totals and depression diagnoses drive measurement-based care (outcomes.py)."""

    async def handle(event: CloudEvent, tx: Transaction) -> None:
        parsed = topics.parse_resource_event_type(event.type)
        if parsed is None or not isinstance(event.data, dict):
            return
        rtype, action = parsed
        resource, deleted = event.data, action == "deleted"
        if rtype == "Observation":
            await outcomes.record_observation(rest, tx, resource, deleted=deleted)
            return
        if rtype == "Encounter":
            refs = await encounters.record_encounter(tx, resource, deleted=deleted)
        elif rtype == "Condition":
            refs = await encounters.record_condition(tx, resource, deleted=deleted)
        else:
            return
        now = datetime.now(UTC)
        for ref in refs:
            await followup.reconsider(rest, tx, ref, now, assign)
        if rtype == "Condition" and outcomes.is_depression_condition(resource):
            patient = str((resource.get("subject") or {}).get("reference") or "").removeprefix("Patient/")
            if patient:
                await outcomes.reconsider_outcomes(rest, tx, patient)

    return handle


def on_referral_event(rest: FhirRest) -> Handler:
    """referral's events: the directory keeps careplan's programs and case managers
    (caseload.py); a referral ServiceRequest becomes a plan activity and its Task's status is
    mirrored on it (domain/referral_activity.py), so the case manager sees the loop close."""
    directory = caseload.on_directory_event()

    async def handle(event: CloudEvent, tx: Transaction) -> None:
        parsed = topics.parse_resource_event_type(event.type)
        if parsed is None or not isinstance(event.data, dict):
            return
        rtype, action = parsed
        if rtype in ("HealthcareService", "PractitionerRole"):
            await directory(event, tx)
        elif action != "deleted" and rtype in ("ServiceRequest", "Task"):
            await _mirror_referral(rest, tx, rtype, event.data)

    return handle


async def _mirror_referral(rest: FhirRest, tx: Transaction, rtype: str, resource: dict[str, Any]) -> None:
    element = "subject" if rtype == "ServiceRequest" else "for"
    subject = str((resource.get(element) or {}).get("reference") or "")
    if not subject.startswith("Patient/"):
        return
    patient_id = subject.removeprefix("Patient/")
    existing = await activities.active_plan(rest, tx, patient_id)
    if rtype == "ServiceRequest":
        activity = referral_activity(resource)
        # A referral is an order that was sent (R4 request-intent, request-status).
        if activity is None or resource.get("intent") not in ("order", "original-order"):
            return
        if resource.get("status") not in ("active", "on-hold", "completed"):
            return
        if existing is not None and has_activity_for(existing, f"ServiceRequest/{resource['id']}"):
            return
        plan = activities.plan_for(patient_id, existing, str(resource.get("authoredOn", ""))[:10])
        plan["activity"] = [*(plan.get("activity") or []), activity]
        await activities.save_plan(rest, tx, plan)
    elif existing is not None and (followed := follow_task(existing, resource)) is not None:
        await activities.save_plan(rest, tx, followed)


def on_triage_event(rest: FhirRest) -> Handler:
    """A safety Flag from intake's triage adds a same-day activity to the patient's active
    case-management CarePlan (created if there is none). The same Flag adds it once."""

    async def handle(event: CloudEvent, tx: Transaction) -> None:
        if event.type != topics.RISK_IDENTIFIED_EVENT:
            return
        flag = event.data
        subject = (flag.get("subject") or {}).get("reference") if isinstance(flag, dict) else None
        if not isinstance(subject, str) or not subject.startswith("Patient/") or not flag.get("id"):
            raise PoisonMessage("A risk event must carry a Flag with an id and a Patient subject")
        trigger = f"Flag/{flag['id']}"
        start = str((flag.get("period") or {}).get("start") or event.time)
        today = start[:10]
        activity = safety_activity(flag, trigger, today)
        category = f"{CASE_MANAGEMENT_CATEGORY['system']}|{CASE_MANAGEMENT_CATEGORY['code']}"
        plans = await rest.searcher.matches(
            rest.store,
            "CarePlan",
            [("subject", subject), ("status", "active"), ("category", category)],
            connection=await tx.sql_connection(),
            limit=1,
        )
        if not plans:
            plan = new_case_management_plan(subject, today)
            await rest.create(tx, "CarePlan", {**plan, "activity": [activity]})
            return
        plan = orjson.loads(plans[0].content)
        if has_activity_for(plan, trigger):
            return
        plan["activity"] = [*(plan.get("activity") or []), activity]
        await rest.update(tx, "CarePlan", plan["id"], plan)

    return handle
