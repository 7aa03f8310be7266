"""What careplan keeps of intake's Encounters and Conditions, and of its own Appointments, for
post-discharge follow-up (followup.py) and the quality measures (quality.py).

- `care_encounters`: each Encounter (class, status, period, principal diagnosis) and each
  Appointment (as a visit), with any diagnosis codes it carries itself;
- `care_diagnoses` and `care_conditions`: Encounter.diagnosis links and the Conditions' ICD-10
  codes, because an Encounter and its Conditions come on different topics, in either order.

An older version of a resource (a replayed event) changes nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from services.careplan.domain import followup as rules
from services.careplan.domain.valuesets import icd10_codes
from shared.store import Transaction, UtcDateTime

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


async def record_appointment(tx: Transaction, appointment: dict[str, Any]) -> str | None:
    """Keep an Appointment as a visit (R4 appointment-status `fulfilled`: the patient came);
    returns its ref, or None when it names no Patient."""
    patient = next(
        (
            str(p["actor"]["reference"]).removeprefix("Patient/")
            for p in appointment.get("participant") or []
            if str(((p or {}).get("actor") or {}).get("reference") or "").startswith("Patient/")
        ),
        None,
    )
    if patient is None:
        return None
    ref = f"Appointment/{appointment['id']}"
    connection = await tx.sql_connection()
    await connection.execute(sa.delete(care_encounters).where(care_encounters.c.ref == ref))
    telehealth = any(
        c.get("code") in ("VR",) for t in appointment.get("serviceType") or [] for c in t.get("coding") or []
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
    return ref


async def facts_of(
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


def is_visit(facts: rules.EncounterFacts, codes: dict[str, list[str]], own_codes: str) -> bool:
    own = [c for c in own_codes.split(",") if c]
    if own:
        codes = {**codes, "_own": own}
        facts = rules.EncounterFacts(
            facts.id, facts.patient_id, facts.class_code, facts.status, facts.start, facts.end,
            (*facts.diagnoses, ("_own", None)),
        )  # fmt: skip
    return rules.is_follow_up_visit(facts, codes)
