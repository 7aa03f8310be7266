"""The patient's case-management CarePlan and an index of its open obligations.

Every CarePlan write (from FHIR clients and from careplan's own handlers) passes through
`PlanIndexHooks`, which keeps `plan_activities` in step: one row per activity careplan added
(keyed by its trigger and kind), with its due time, priority and status. The follow-up scheduler
and the worklist read that table instead of every plan's JSON; the scheduler re-reads the plan
before it escalates, so a stale row never raises a false alarm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from services.careplan.domain.followup import (
    OPEN_STATUSES,
    activity_key,
    activity_status,
    activity_window,
    extension_value,
)
from services.careplan.domain.plans import (
    ACTIVITY_PRIORITY,
    CASE_MANAGEMENT_CATEGORY,
    new_case_management_plan,
)
from shared.events import topics
from shared.fhir.events import enqueue_domain_event
from shared.fhir.rest import AfterWrite, FhirRest
from shared.store import Migration, Transaction, UtcDateTime, create_tables

log = logging.getLogger(__name__)

metadata = sa.MetaData()
plan_activities = sa.Table(
    "plan_activities",
    metadata,
    sa.Column("careplan_id", sa.String(64), primary_key=True),
    #: "<trigger reference>|<kind>", e.g. "Encounter/abc|follow-up-7" or "Flag/x|".
    sa.Column("activity_key", sa.String(200), primary_key=True),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("due_at", UtcDateTime(), nullable=False),
    sa.Column("escalated_at", UtcDateTime()),
    sa.Index("ix_plan_activities_open_due", "status", "due_at"),
    sa.Index("ix_plan_activities_patient", "patient_id"),
)
MIGRATIONS = (Migration("careplan.activities", 1, create_tables(plan_activities), "plan activity index"),)

CATEGORY_TOKEN = f"{CASE_MANAGEMENT_CATEGORY['system']}|{CASE_MANAGEMENT_CATEGORY['code']}"
HIGH_PRIORITY = frozenset({"urgent", "asap", "stat"})


# --- the plan ------------------------------------------------------------------------------------


async def active_plan(rest: FhirRest, tx: Transaction, patient_id: str) -> dict[str, Any] | None:
    """The patient's active case-management CarePlan, if there is one."""
    plans = await rest.searcher.matches(
        rest.store,
        "CarePlan",
        [("subject", f"Patient/{patient_id}"), ("status", "active"), ("category", CATEGORY_TOKEN)],
        connection=await tx.sql_connection(),
        limit=1,
    )
    return orjson.loads(plans[0].content) if plans else None


async def save_plan(rest: FhirRest, tx: Transaction, plan: dict[str, Any]) -> dict[str, Any]:
    """Create the plan (no id yet) or write its next version; returns what was stored."""
    if plan.get("id"):
        written = await rest.update(tx, "CarePlan", plan["id"], plan)
    else:
        written = await rest.create(tx, "CarePlan", plan)
    return orjson.loads(written.stored.content)


def plan_for(patient_id: str, existing: dict[str, Any] | None, today: str) -> dict[str, Any]:
    return existing if existing is not None else new_case_management_plan(f"Patient/{patient_id}", today)


# --- the index -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexedActivity:
    key: str
    title: str
    priority: str
    status: str
    due_at: datetime


def indexed_activities(plan: dict[str, Any]) -> list[IndexedActivity]:
    """The activities careplan tracks in a plan (those with a trigger and a due time)."""
    out = []
    for activity in plan.get("activity") or []:
        key, window = activity_key(activity), activity_window(activity)
        if key is None or window is None:
            continue
        detail = activity.get("detail") or {}
        out.append(
            IndexedActivity(
                key=f"{key[0]}|{key[1]}"[:200],
                title=str(detail.get("description") or (detail.get("code") or {}).get("text") or "")[:300],
                priority=str(extension_value(activity, ACTIVITY_PRIORITY) or "routine"),
                status=activity_status(activity),
                due_at=window.end,
            )
        )
    return out


async def index_plan(tx: Transaction, plan: dict[str, Any]) -> None:
    """Replace the plan's rows, keeping when each was escalated."""
    plan_id = plan["id"]
    subject = str((plan.get("subject") or {}).get("reference") or "")
    connection = await tx.sql_connection()
    t = plan_activities
    escalated = dict(
        (
            await connection.execute(
                sa.select(t.c.activity_key, t.c.escalated_at).where(t.c.careplan_id == plan_id)
            )
        ).all()
    )
    await connection.execute(sa.delete(t).where(t.c.careplan_id == plan_id))
    active = plan.get("status") == "active"
    rows = [
        {
            "careplan_id": plan_id,
            "activity_key": a.key,
            "patient_id": subject.removeprefix("Patient/"),
            "title": a.title,
            "priority": a.priority,
            "status": a.status if active else "plan-" + str(plan.get("status")),
            "due_at": a.due_at,
            "escalated_at": escalated.get(a.key),
        }
        for a in indexed_activities(plan)
    ]
    if rows:
        await connection.execute(sa.insert(t), rows)


class PlanIndexHooks(AfterWrite):
    """Every CarePlan write re-indexes the plan's tracked activities in the same transaction."""

    async def written(self, rest: FhirRest, tx: Transaction, stored: dict[str, Any]) -> None:
        await index_plan(tx, stored)


# --- overdue activities --------------------------------------------------------------------------


async def escalate_overdue(rest: FhirRest, now: datetime, *, limit: int = 500) -> int:
    """Publish one FOLLOW_UP_OVERDUE_EVENT per open activity past its due time that has not been
    escalated yet; returns how many. Safe with several replicas: a row is claimed by a
    conditional update before its event is written, in the same transaction."""
    t = plan_activities
    open_statuses = sorted(OPEN_STATUSES)
    sent = 0
    async with rest.store.transaction() as tx:
        connection = await tx.sql_connection()
        due = (
            await connection.execute(
                sa.select(t)
                .where(t.c.status.in_(open_statuses), t.c.due_at < now, t.c.escalated_at.is_(None))
                .order_by(t.c.due_at)
                .limit(limit)
            )
        ).all()
        for row in due:
            claimed = await connection.execute(
                sa.update(t)
                .where(
                    t.c.careplan_id == row.careplan_id,
                    t.c.activity_key == row.activity_key,
                    t.c.escalated_at.is_(None),
                )
                .values(escalated_at=now)
            )
            if claimed.rowcount != 1 or not await _still_open(tx, row.careplan_id, row.activity_key):
                continue
            await _publish_overdue(tx, rest, row)
            sent += 1
    if sent:
        log.info("careplan: %d overdue activities escalated", sent)
    return sent


async def _still_open(tx: Transaction, careplan_id: str, key: str) -> bool:
    plan = orjson.loads((await tx.read("CarePlan", careplan_id)).content)
    if plan.get("status") != "active":
        return False
    return any(a.key == key and a.status in OPEN_STATUSES for a in indexed_activities(plan))


async def _publish_overdue(tx: Transaction, rest: FhirRest, row: Any) -> None:
    trigger, _, kind = row.activity_key.partition("|")
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{row.patient_id}"}},
            {"name": "careplan", "valueReference": {"reference": f"CarePlan/{row.careplan_id}"}},
            {"name": "trigger", "valueReference": {"reference": trigger}},
            {"name": "activity", "valueString": row.title},
            {"name": "due", "valueDateTime": row.due_at.isoformat(timespec="seconds")},
            {"name": "priority", "valueCode": row.priority},
            *([{"name": "kind", "valueCode": kind}] if kind else []),
        ],
    }
    await enqueue_domain_event(
        tx,
        rest.settings,
        topic=topics.CAREPLAN,
        event_type=topics.FOLLOW_UP_OVERDUE_EVENT,
        subject=f"CarePlan/{row.careplan_id}",
        key=row.patient_id,
        data=parameters,
    )


async def open_activities(connection: Any, patient_ids: list[str]) -> list[Any]:
    """Open tracked activities of these patients, soonest due first."""
    if not patient_ids:
        return []
    t = plan_activities
    return list(
        (
            await connection.execute(
                sa.select(t)
                .where(t.c.patient_id.in_(patient_ids), t.c.status.in_(sorted(OPEN_STATUSES)))
                .order_by(t.c.due_at)
            )
        ).all()
    )
