"""Measurement-based care, fed by intake's PHQ-9 total Observations and depression Conditions.

careplan keeps each patient's PHQ-9 totals (`phq9_scores`), and after each new one or each
depression diagnosis asks `domain/measurement_based_care.py` what follows:
- from an elevated baseline (>= 10) a response and a remission Goal (deterministic ids, so the
  same baseline makes them once), their achievementStatus re-evaluated with every score, and
  linked from the patient's case-management plan (`CarePlan.goal`);
- for a client with depression (F32, F33, F34.1), a PHQ-9 re-administration activity due four
  months after the last PHQ-9 (CMS160), moved on by every new score.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from services.careplan import activities
from services.careplan.domain import measurement_based_care as mbc
from services.careplan.domain.valuesets import icd10_codes, is_depression
from services.careplan.encounters import care_conditions
from shared.errors import Gone, NotFound
from shared.fhir.rest import FhirRest
from shared.store import Migration, Transaction, create_tables

metadata = sa.MetaData()
phq9_scores = sa.Table(
    "phq9_scores",
    metadata,
    sa.Column("observation_id", sa.String(64), primary_key=True),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("taken_on", sa.Date, nullable=False),
    sa.Column("value", sa.Integer, nullable=False),
    sa.Index("ix_phq9_scores_patient", "patient_id", "taken_on"),
)
MIGRATIONS = (Migration("careplan.outcomes", 1, create_tables(phq9_scores), "PHQ-9 totals per patient"),)


async def record_observation(
    rest: FhirRest, tx: Transaction, observation: dict[str, Any], *, deleted: bool
) -> None:
    """A PHQ-9 total (or its deletion / entering in error) re-evaluates the patient's goals."""
    subject = str((observation.get("subject") or {}).get("reference") or "")
    connection = await tx.sql_connection()
    observation_id = str(observation.get("id"))
    score = None if deleted else mbc.phq9_total(observation)
    held = (
        await connection.execute(
            sa.select(phq9_scores.c.patient_id).where(phq9_scores.c.observation_id == observation_id)
        )
    ).scalar()
    if score is None and held is None:
        return  # not a PHQ-9 total, and never was
    await connection.execute(sa.delete(phq9_scores).where(phq9_scores.c.observation_id == observation_id))
    patient_id = subject.removeprefix("Patient/") if subject.startswith("Patient/") else held
    if not patient_id:
        return
    if score is not None:
        await connection.execute(
            sa.insert(phq9_scores).values(
                observation_id=observation_id, patient_id=patient_id, taken_on=score.on, value=score.value
            )
        )
    await reconsider_outcomes(rest, tx, patient_id, taken=f"Observation/{observation_id}" if score else None)


async def reconsider_outcomes(
    rest: FhirRest, tx: Transaction, patient_id: str, *, taken: str | None = None
) -> None:
    connection = await tx.sql_connection()
    rows = (
        await connection.execute(
            sa.select(phq9_scores)
            .where(phq9_scores.c.patient_id == patient_id)
            .order_by(phq9_scores.c.taken_on, phq9_scores.c.observation_id)
        )
    ).all()
    scores = [mbc.Score(r.observation_id, r.taken_on, r.value) for r in rows]
    since = await _depression_since(connection, patient_id)
    existing = await activities.active_plan(rest, tx, patient_id)
    if existing is None and not scores and since is None:
        return
    today = datetime.now(UTC).date()
    plan = activities.plan_for(patient_id, existing, today.isoformat())
    changed = False
    goal_refs = []
    for kind in mbc.GOAL_KINDS:
        evaluation = mbc.evaluate_goal(kind, scores)
        if evaluation is None:
            continue
        goal_refs.append(await _write_goal(rest, tx, patient_id, plan, evaluation, kind))
    held = {g.get("reference") for g in plan.get("goal") or []}
    for ref in goal_refs:
        if ref not in held:
            plan["goal"] = [*(plan.get("goal") or []), {"reference": ref}]
            changed = True
    if since is not None:
        due = mbc.phq9_due(scores[-1].on if scores else None, since)
        refreshed = mbc.refresh_readministration(plan, due, today, taken=taken)
        if refreshed is not None:
            plan, changed = refreshed, True
    if changed:
        await activities.save_plan(rest, tx, plan)


async def _write_goal(
    rest: FhirRest,
    tx: Transaction,
    patient_id: str,
    plan: dict[str, Any],
    evaluation: Any,
    kind: mbc.GoalKind,
) -> str:
    goal_id = mbc.phq9_goal_id(kind, evaluation.baseline.observation_id)
    try:
        goal = orjson.loads((await tx.read("Goal", goal_id)).content)
    except (NotFound, Gone):
        plan_ref = f"CarePlan/{plan['id']}" if plan.get("id") else None
        goal = mbc.phq9_goal(
            kind, f"Patient/{patient_id}", plan_ref, evaluation.baseline, evaluation.baseline.on
        )
        goal = mbc.apply_evaluation(goal, evaluation) or goal
        await rest.update(tx, "Goal", goal_id, goal)
        return f"Goal/{goal_id}"
    updated = mbc.apply_evaluation(goal, evaluation)
    if updated is not None:
        await rest.update(tx, "Goal", goal_id, updated)
    return f"Goal/{goal_id}"


async def _depression_since(connection: Any, patient_id: str) -> date | None:
    """The earliest depression diagnosis careplan holds for the patient (its onset or recorded
    date, else the day careplan heard of it)."""
    rows = (
        await connection.execute(
            sa.select(care_conditions.c.codes, care_conditions.c.noted_on).where(
                care_conditions.c.patient_id == patient_id
            )
        )
    ).all()
    dates = [r.noted_on for r in rows if any(is_depression(c) for c in r.codes.split(",") if c)]
    return min(dates) if dates else None


def is_depression_condition(condition: dict[str, Any]) -> bool:
    return any(is_depression(code) for code in icd10_codes([condition.get("code")]))
