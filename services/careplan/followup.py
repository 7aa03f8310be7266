"""Post-discharge follow-up tracking, fed by intake's Encounter and Condition events and by
careplan's own Appointments.

careplan keeps what it needs to decide, in its own tables (intake's store is intake's):
- `care_encounters`: each Encounter (class, status, period, principal diagnosis) and each
  Appointment (as a visit), with any diagnosis codes it carries itself;
- `care_diagnoses` and `care_conditions`: Encounter.diagnosis links and the Conditions' ICD-10
  codes, because an Encounter and its Conditions come on different topics, in either order;
- `care_discharges`: the psychiatric discharges being followed up, and their state.

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
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from services.careplan import activities
from services.careplan.domain import followup as rules
from services.careplan.domain.valuesets import icd10_codes
from shared.fhir.rest import AfterWrite, FhirRest
from shared.store import Migration, Transaction, UtcDateTime, create_tables

log = logging.getLogger(__name__)

TRACKING, SUPERSEDED, RETRACTED = "tracking", "superseded", "retracted"
#: FUH: a readmission within the 30-day follow-up period moves it to the later discharge.
READMISSION_WINDOW = timedelta(days=30)

metadata = sa.MetaData()
care_encounters = sa.Table(
    "care_encounters",
    metadata,
    sa.Column("ref", sa.String(80), primary_key=True),  # Encounter/<id> or Appointment/<id>
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("class_code", sa.String(16)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("start_at", UtcDateTime()),
    sa.Column("end_at", UtcDateTime()),
    sa.Column("principal_condition", sa.String(64)),
    #: Diagnosis codes the resource carries itself (an Appointment's reasonCode), comma-separated.
    sa.Column("codes", sa.Text, nullable=False, default=""),
    sa.Index("ix_care_encounters_patient", "patient_id", "start_at"),
    sa.Index("ix_care_encounters_class_end", "class_code", "end_at"),
)
care_diagnoses = sa.Table(
    "care_diagnoses",
    metadata,
    sa.Column("encounter_ref", sa.String(80), primary_key=True),
    sa.Column("condition_id", sa.String(64), primary_key=True),
    sa.Column("rank", sa.Integer),
    sa.Index("ix_care_diagnoses_condition", "condition_id"),
)
care_conditions = sa.Table(
    "care_conditions",
    metadata,
    sa.Column("condition_id", sa.String(64), primary_key=True),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("encounter_ref", sa.String(80)),
    sa.Column("codes", sa.Text, nullable=False),
    #: Onset or recorded date, else the day careplan heard of it.
    sa.Column("noted_on", sa.Date, nullable=False),
)
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


# --- recording what intake publishes -------------------------------------------------------------


def _version(resource: dict[str, Any]) -> int:
    value = (resource.get("meta") or {}).get("versionId")
    return int(value) if isinstance(value, str) and value.isdigit() else 0


async def _newer(
    tx: Transaction, table: sa.Table, key_column: sa.Column[Any], key: str, version: int
) -> bool:
    """Whether `version` is newer than what is held (an old event replayed changes nothing)."""
    connection = await tx.sql_connection()
    held = (await connection.execute(sa.select(table.c.version).where(key_column == key))).scalar()
    return held is None or version > held


async def record_encounter(tx: Transaction, encounter: dict[str, Any], *, deleted: bool) -> list[str]:
    """Keep an Encounter's facts; returns the refs to reconsider."""
    ref = f"Encounter/{encounter.get('id')}"
    version = _version(encounter)
    if not await _newer(tx, care_encounters, care_encounters.c.ref, ref, version):
        return []
    connection = await tx.sql_connection()
    facts = None if deleted else rules.encounter_facts(encounter)
    await connection.execute(sa.delete(care_diagnoses).where(care_diagnoses.c.encounter_ref == ref))
    await connection.execute(sa.delete(care_encounters).where(care_encounters.c.ref == ref))
    if facts is None:
        # Deleted (or without a patient): tracking treats it as a stay that did not happen.
        if deleted:
            await connection.execute(
                sa.insert(care_encounters).values(
                    ref=ref, patient_id="", version=version, status="entered-in-error", codes=""
                )
            )
        return [ref]
    await connection.execute(
        sa.insert(care_encounters).values(
            ref=ref,
            patient_id=facts.patient_id,
            version=version,
            class_code=facts.class_code,
            status=facts.status,
            start_at=facts.start,
            end_at=facts.end,
            principal_condition=facts.principal_condition,
            codes="",
        )
    )
    if facts.diagnoses:
        await connection.execute(
            sa.insert(care_diagnoses),
            [
                {"encounter_ref": ref, "condition_id": cid, "rank": rank}
                for cid, rank in dict(facts.diagnoses).items()
            ],
        )
    return [ref]


async def record_condition(tx: Transaction, condition: dict[str, Any], *, deleted: bool) -> list[str]:
    """Keep a Condition's ICD-10 codes; returns the encounters that list it."""
    cid = str(condition.get("id"))
    version = _version(condition)
    if not await _newer(tx, care_conditions, care_conditions.c.condition_id, cid, version):
        return []
    connection = await tx.sql_connection()
    verification = [
        c.get("code")
        for c in (condition.get("verificationStatus") or {}).get("coding") or []
        if isinstance(c, dict)
    ]
    wrong = deleted or "entered-in-error" in verification or "refuted" in verification
    codes = [] if wrong else icd10_codes([condition.get("code")])
    encounter = ((condition.get("encounter") or {}).get("reference")) or None
    subject = str((condition.get("subject") or {}).get("reference") or "").removeprefix("Patient/")
    await connection.execute(sa.delete(care_conditions).where(care_conditions.c.condition_id == cid))
    await connection.execute(
        sa.insert(care_conditions).values(
            condition_id=cid,
            patient_id=subject,
            version=version,
            encounter_ref=encounter if isinstance(encounter, str) else None,
            codes=",".join(codes),
            noted_on=_noted_on(condition),
        )
    )
    listed = (
        await connection.execute(
            sa.select(care_diagnoses.c.encounter_ref).where(care_diagnoses.c.condition_id == cid)
        )
    ).scalars()
    return sorted(set(listed))


def _noted_on(condition: dict[str, Any]) -> date:
    for element in ("onsetDateTime", "recordedDate"):
        when = rules.parse_instant(condition.get(element))
        if when is not None:
            return when.date()
    return datetime.now(UTC).date()


# --- what the tables say -----------------------------------------------------------------------


async def _facts_of(
    tx: Transaction, ref: str
) -> tuple[rules.EncounterFacts, dict[str, list[str]], str] | None:
    """The stored facts of an encounter, its conditions' codes, and its own codes."""
    connection = await tx.sql_connection()
    row = (await connection.execute(sa.select(care_encounters).where(care_encounters.c.ref == ref))).first()
    if row is None or not row.patient_id:
        return None
    links = (
        await connection.execute(
            sa.select(care_diagnoses.c.condition_id, care_diagnoses.c.rank).where(
                care_diagnoses.c.encounter_ref == ref
            )
        )
    ).all()
    ids = [link.condition_id for link in links]
    codes: dict[str, list[str]] = {}
    if ids:
        for cid, text in (
            await connection.execute(
                sa.select(care_conditions.c.condition_id, care_conditions.c.codes).where(
                    care_conditions.c.condition_id.in_(ids)
                )
            )
        ).all():
            codes[cid] = [c for c in text.split(",") if c]
    facts = rules.EncounterFacts(
        id=ref.partition("/")[2],
        patient_id=row.patient_id,
        class_code=row.class_code,
        status=row.status,
        start=row.start_at,
        end=row.end_at,
        diagnoses=tuple((link.condition_id, link.rank) for link in links),
    )
    return facts, codes, row.codes


def _is_visit(facts: rules.EncounterFacts, codes: dict[str, list[str]], own_codes: str) -> bool:
    own = [c for c in own_codes.split(",") if c]
    if own:
        codes = {**codes, "_own": own}
        facts = rules.EncounterFacts(
            facts.id, facts.patient_id, facts.class_code, facts.status, facts.start, facts.end,
            (*facts.diagnoses, ("_own", None)),
        )  # fmt: skip
    return rules.is_follow_up_visit(facts, codes)


# --- deciding ----------------------------------------------------------------------------------


async def reconsider(
    rest: FhirRest, tx: Transaction, ref: str, now: datetime, assign: AssignCaseManager | None = None
) -> None:
    """Bring the patient's plan in line with what is now known about encounter `ref`."""
    found = await _facts_of(tx, ref)
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
        await _retract(work, discharge, "Discharge cancelled (ADT A13)")
    if facts.start is not None and _is_visit(facts, codes, own_codes):
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
        found = await _facts_of(work.tx, row.ref)
        if found is not None and _is_visit(*found):
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
        patient = next(
            (
                str(p["actor"]["reference"]).removeprefix("Patient/")
                for p in appointment.get("participant") or []
                if str(((p or {}).get("actor") or {}).get("reference") or "").startswith("Patient/")
            ),
            None,
        )
        if patient is None:
            return
        ref = f"Appointment/{appointment['id']}"
        connection = await tx.sql_connection()
        await connection.execute(sa.delete(care_encounters).where(care_encounters.c.ref == ref))
        telehealth = any(
            c.get("code") in ("VR",)
            for t in appointment.get("serviceType") or []
            for c in t.get("coding") or []
        )
        await connection.execute(
            sa.insert(care_encounters).values(
                ref=ref,
                patient_id=patient,
                version=_version(appointment),
                class_code="VR" if telehealth else "AMB",
                status="finished" if appointment.get("status") == "fulfilled" else "planned",
                start_at=rules.parse_instant(appointment.get("start")),
                end_at=rules.parse_instant(appointment.get("end")),
                codes=",".join(icd10_codes(appointment.get("reasonCode") or [])),
            )
        )
        await reconsider(rest, tx, ref, datetime.now(UTC), self.assign)
