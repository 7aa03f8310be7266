"""Post-discharge follow-up tracking, fed by intake's Encounter and Condition events and by
careplan's own Appointments.

careplan keeps what it needs to decide in its own tables (intake's store is intake's): the
encounters, diagnoses and conditions in encounters.py, and here `care_discharges`, the
psychiatric discharges being followed up and their state.

After every change to an encounter or one of its conditions, `reconsider` asks the pure rules in
`domain/followup.py`: a new psychiatric discharge adds its activities to the patient's plan (and
moves an earlier discharge's follow-up to it, on a readmission within 30 days); a discharge taken
back (A13) cancels them; a qualifying visit completes what it meets. Each step is idempotent, so
the same event twice, or the Encounter after its Conditions, ends in the same plan.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from services.careplan import activities
from services.careplan.domain import followup as rules
from services.careplan.encounters import (
    care_conditions,
    care_diagnoses,
    care_encounters,
    facts_of,
    is_visit,
    record_appointment,
)
from shared.fhir.rest import AfterWrite, FhirRest
from shared.store import Migration, Transaction, UtcDateTime, create_tables

log = logging.getLogger(__name__)

TRACKING, SUPERSEDED, RETRACTED = "tracking", "superseded", "retracted"
#: FUH: a readmission within the 30-day follow-up period moves it to the later discharge.
READMISSION_WINDOW = timedelta(days=30)

metadata = sa.MetaData()  # care_discharges; the encounter tables are encounters.metadata's
care_discharges = sa.Table(
    "care_discharges",
    metadata,
    sa.Column("encounter_id", sa.String(64), primary_key=True),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("careplan_id", sa.String(64), nullable=False),
    sa.Column("admitted_at", UtcDateTime()),
    sa.Column("discharged_at", UtcDateTime(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("changed_at", UtcDateTime(), nullable=False),
    sa.Index("ix_care_discharges_patient", "patient_id", "discharged_at"),
)
MIGRATIONS = (
    Migration(
        "careplan.followup",
        1,
        create_tables(care_encounters, care_diagnoses, care_conditions, care_discharges),
        "encounters, conditions and discharges followed up",
    ),
)

#: Assigns a case manager to a patient who has none (services/careplan/caseload.py).
AssignCaseManager = Callable[[FhirRest, Transaction, str, datetime], Awaitable[Any]]


@dataclass(slots=True)
class FollowUp:
    """One reconsideration's plan edits, written once at the end."""

    rest: FhirRest
    tx: Transaction
    patient_id: str
    now: datetime
    plan: dict[str, Any] | None = None
    changed: bool = False

    async def load_plan(self) -> dict[str, Any]:
        if self.plan is None:
            existing = await activities.active_plan(self.rest, self.tx, self.patient_id)
            self.plan = activities.plan_for(self.patient_id, existing, self.now.date().isoformat())
        return self.plan

    async def save(self) -> dict[str, Any] | None:
        if self.plan is None or not self.changed:
            return self.plan
        self.plan = await activities.save_plan(self.rest, self.tx, self.plan)
        self.changed = False
        return self.plan


# --- deciding ----------------------------------------------------------------------------------


async def reconsider(
    rest: FhirRest, tx: Transaction, ref: str, now: datetime, assign: AssignCaseManager | None = None
) -> None:
    """Bring the patient's plan in line with what is now known about encounter `ref`."""
    found = await facts_of(tx, ref)
    connection = await tx.sql_connection()
    encounter_id = ref.partition("/")[2]
    discharge = None
    if ref.startswith("Encounter/"):
        discharge = (
            await connection.execute(
                sa.select(care_discharges).where(care_discharges.c.encounter_id == encounter_id)
            )
        ).first()
    if found is None:
        if discharge is not None and discharge.state != RETRACTED:
            work = FollowUp(rest, tx, discharge.patient_id, now)
            await _retract(work, discharge, "The stay was deleted")
            await work.save()
        return
    facts, codes, own_codes = found
    work = FollowUp(rest, tx, facts.patient_id, now)
    psychiatric = ref.startswith("Encounter/") and rules.is_psychiatric_discharge(facts, codes)
    if psychiatric and (discharge is None or discharge.state == RETRACTED):
        await _start_tracking(work, facts)
        plan = await work.save()
        if assign is not None and plan is not None:
            await assign(rest, tx, facts.patient_id, now)
        return
    if not psychiatric and discharge is not None and discharge.state != RETRACTED:
        reason = (
            "Discharge cancelled (ADT A13)"
            if facts.status != "finished" or facts.end is None
            else "The stay's principal diagnosis is no longer a mental-health diagnosis"
        )
        await _retract(work, discharge, reason)
    if facts.start is not None and is_visit(facts, codes, own_codes):
        await _complete_with_visit(work, ref, facts.start)
    await work.save()


async def _start_tracking(work: FollowUp, facts: rules.EncounterFacts) -> None:
    assert facts.end is not None
    connection = await work.tx.sql_connection()
    plan = await work.load_plan()
    admitted = facts.start or facts.end
    earlier = (
        await connection.execute(
            sa.select(care_discharges).where(
                care_discharges.c.patient_id == facts.patient_id,
                care_discharges.c.state == TRACKING,
                care_discharges.c.encounter_id != facts.id,
                care_discharges.c.discharged_at <= admitted + timedelta(days=1),
                care_discharges.c.discharged_at >= admitted - READMISSION_WINDOW,
            )
        )
    ).all()
    for row in earlier:  # FUH: only the last discharge of a readmission chain is followed up
        reason = f"Readmitted {admitted.date().isoformat()}; follow-up moved to the later discharge"
        _cancel_open(plan, f"Encounter/{row.encounter_id}", reason)
        await _set_state(work, row.encounter_id, SUPERSEDED)
    trigger = f"Encounter/{facts.id}"
    kept = [a for a in plan.get("activity") or [] if (rules.activity_key(a) or ("",))[0] != trigger]
    plan["activity"] = [*kept, *rules.discharge_activities(facts.id, facts.end)]
    work.changed = True
    saved = await work.save()
    assert saved is not None
    values = {
        "patient_id": facts.patient_id,
        "careplan_id": saved["id"],
        "admitted_at": facts.start,
        "discharged_at": facts.end,
        "state": TRACKING,
        "changed_at": work.now,
    }
    await connection.execute(sa.delete(care_discharges).where(care_discharges.c.encounter_id == facts.id))
    await connection.execute(sa.insert(care_discharges).values(encounter_id=facts.id, **values))
    # A visit that was recorded before the discharge was known still counts.
    for visit_ref, start in await _visits_after(work, facts.patient_id, facts.end):
        await _complete_with_visit(work, visit_ref, start)
    log.info("careplan: discharge follow-up started for CarePlan/%s", saved["id"])


async def _visits_after(work: FollowUp, patient_id: str, discharged: datetime) -> list[tuple[str, datetime]]:
    connection = await work.tx.sql_connection()
    rows = (
        await connection.execute(
            sa.select(care_encounters.c.ref, care_encounters.c.start_at).where(
                care_encounters.c.patient_id == patient_id,
                care_encounters.c.start_at >= discharged,
                care_encounters.c.start_at <= discharged + timedelta(days=31),
            )
        )
    ).all()
    out = []
    for row in rows:
        found = await facts_of(work.tx, row.ref)
        if found is not None and is_visit(*found):
            out.append((row.ref, row.start_at))
    return out


async def _retract(work: FollowUp, discharge: Any, reason: str) -> None:
    plan = await work.load_plan()
    _cancel_open(plan, f"Encounter/{discharge.encounter_id}", reason)
    work.changed = True
    await _set_state(work, discharge.encounter_id, RETRACTED)


def _cancel_open(plan: dict[str, Any], trigger: str, reason: str) -> None:
    out = []
    for activity in plan.get("activity") or []:
        key = rules.activity_key(activity)
        if key is not None and key[0] == trigger and rules.activity_status(activity) in rules.OPEN_STATUSES:
            activity = rules.cancelled(activity, reason)
        out.append(activity)
    plan["activity"] = out


async def _set_state(work: FollowUp, encounter_id: str, state: str) -> None:
    connection = await work.tx.sql_connection()
    await connection.execute(
        sa.update(care_discharges)
        .where(care_discharges.c.encounter_id == encounter_id)
        .values(state=state, changed_at=work.now)
    )


async def _complete_with_visit(work: FollowUp, visit_ref: str, visit_at: datetime) -> None:
    """Complete the open obligations of the patient's followed-up discharges that this visit meets."""
    connection = await work.tx.sql_connection()
    tracked = {
        row.encounter_id: row.discharged_at
        for row in (
            await connection.execute(
                sa.select(care_discharges.c.encounter_id, care_discharges.c.discharged_at).where(
                    care_discharges.c.patient_id == work.patient_id, care_discharges.c.state == TRACKING
                )
            )
        ).all()
    }
    if not tracked:
        return
    plan = await work.load_plan()
    out = []
    for activity in plan.get("activity") or []:
        key = rules.activity_key(activity)
        discharged = tracked.get(key[0].removeprefix("Encounter/")) if key else None
        if (
            key is not None
            and discharged is not None
            and rules.activity_status(activity) in rules.OPEN_STATUSES
            and rules.visit_completes(key[1], discharged, visit_at)
        ):
            activity = rules.completed(activity, visit_ref)
            work.changed = True
        out.append(activity)
    plan["activity"] = out


# --- Appointments ------------------------------------------------------------------------------


class AppointmentVisits(AfterWrite):
    """A fulfilled Appointment is a visit: written, it is recorded and reconsidered in the same
    transaction (R4 appointment-status `fulfilled`: the patient came)."""

    def __init__(self, assign: AssignCaseManager | None = None) -> None:
        self.assign = assign

    async def written(self, rest: FhirRest, tx: Transaction, stored: dict[str, Any]) -> None:
        await self._record(rest, tx, stored)

    async def _record(self, rest: FhirRest, tx: Transaction, appointment: dict[str, Any]) -> None:
        ref = await record_appointment(tx, appointment)
        if ref is not None:
            await reconsider(rest, tx, ref, datetime.now(UTC), self.assign)
