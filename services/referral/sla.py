"""The acceptance SLA: a referral sent (Task requested, or received) and not accepted within
`acceptance_sla_hours` raises one REFERRAL_ACCEPTANCE_OVERDUE_EVENT.

DOMAIN.md §2.4 asks to track time-to-accept; the issue sets the default at 72 hours. The scan
reads the Task index (referrals.referral_tasks: status and when it was requested), re-reads each
candidate Task under its row lock, and claims it in `referral_sla` in the same transaction as the
event's outbox row, so the event is published once per Task whatever the number of replicas or
scans (the claim is an INSERT that does nothing when the row is there).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from services.referral.domain import workflow
from services.referral.referrals import referral_tasks
from shared.errors import Gone, NotFound
from shared.events import topics
from shared.fhir.events import enqueue_domain_event
from shared.fhir.rest import FhirRest
from shared.service import ServiceRuntime
from shared.store import Migration, Transaction, UtcDateTime, create_tables

log = logging.getLogger(__name__)

metadata = sa.MetaData()
referral_sla = sa.Table(
    "referral_sla",
    metadata,
    sa.Column("task_id", sa.String(64), primary_key=True),
    #: When the overdue acceptance was escalated (or found no longer pending).
    sa.Column("escalated_at", UtcDateTime(), nullable=False),
)
MIGRATIONS = (Migration("referral.sla", 1, create_tables(referral_sla), "acceptance SLA escalations"),)


async def escalate_unaccepted(rest: FhirRest, now: datetime, sla: timedelta, *, limit: int = 500) -> int:
    """Publish one REFERRAL_ACCEPTANCE_OVERDUE_EVENT per Task still awaiting acceptance `sla`
    after it was requested and not escalated before; returns how many."""
    t, s = referral_tasks, referral_sla
    sent = 0
    async with rest.store.transaction() as tx:
        connection = await tx.sql_connection()
        candidates = (
            await connection.execute(
                sa.select(t)
                .select_from(t.outerjoin(s, s.c.task_id == t.c.task_id))
                .where(
                    t.c.status.in_(sorted(workflow.AWAITING_ACCEPTANCE)),
                    t.c.requested_at < now - sla,
                    s.c.task_id.is_(None),
                )
                .order_by(t.c.requested_at)
                .limit(limit)
            )
        ).all()
        for row in candidates:
            task = await _pending_task(tx, row.task_id)
            if not await _claim(tx, row.task_id, now) or task is None:
                continue
            await _publish(rest, tx, row, task, sla)
            sent += 1
    if sent:
        log.info("referral: %d referrals not accepted within %s escalated", sent, sla)
    return sent


async def _pending_task(tx: Transaction, task_id: str) -> dict[str, Any] | None:
    """The Task, read under its lock, if it still awaits acceptance (a deleted one does not)."""
    try:
        task: dict[str, Any] = orjson.loads((await tx.read("Task", task_id)).content)
    except (NotFound, Gone):
        return None
    return task if task.get("status") in workflow.AWAITING_ACCEPTANCE else None


async def _claim(tx: Transaction, task_id: str, now: datetime) -> bool:
    """True when this transaction is the first to claim the Task's escalation."""
    dialect_insert = postgresql.insert if tx.dialect == "postgresql" else sqlite.insert
    statement = (
        dialect_insert(referral_sla)
        .values(task_id=task_id, escalated_at=now)
        .on_conflict_do_nothing(index_elements=[referral_sla.c.task_id])
    )
    result = await (await tx.sql_connection()).execute(statement)
    return bool(result.rowcount == 1)


async def _publish(rest: FhirRest, tx: Transaction, row: Any, task: dict[str, Any], sla: timedelta) -> None:
    parameters: dict[str, Any] = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "task", "valueReference": {"reference": f"Task/{row.task_id}"}},
            {
                "name": "serviceRequest",
                "valueReference": {"reference": f"ServiceRequest/{row.service_request_id}"},
            },
            *(
                [{"name": "patient", "valueReference": {"reference": f"Patient/{row.patient_id}"}}]
                if row.patient_id
                else []
            ),
            {"name": "owner", "valueReference": task.get("owner") or {"reference": row.owner}},
            {"name": "requester", "valueReference": task.get("requester") or {"reference": row.requester}},
            {"name": "requested", "valueDateTime": row.requested_at.isoformat(timespec="seconds")},
            {"name": "status", "valueCode": task["status"]},
            {"name": "slaHours", "valueDecimal": round(sla.total_seconds() / 3600, 3)},
            *([{"name": "category", "valueCoding": _coding(row)}] if row.category_code else []),
        ],
    }
    await enqueue_domain_event(
        tx,
        rest.settings,
        topic=topics.REFERRAL,
        event_type=topics.REFERRAL_ACCEPTANCE_OVERDUE_EVENT,
        subject=f"Task/{row.task_id}",
        key=row.patient_id,
        data=parameters,
    )


def _coding(row: Any) -> dict[str, str]:
    coding = {"code": row.category_code}
    if row.category_system:
        coding["system"] = row.category_system
    if row.category_display:
        coding["display"] = row.category_display
    return coding


def acceptance_sla_scheduler(
    rest: FhirRest, sla_hours: float, interval_s: float
) -> Callable[[ServiceRuntime], Coroutine[Any, Any, None]]:
    """A loop that escalates unaccepted referrals every `interval_s` seconds."""
    sla = timedelta(hours=sla_hours)

    async def acceptance_sla_scheduler(_runtime: ServiceRuntime) -> None:
        while True:
            try:
                await escalate_unaccepted(rest, datetime.now(UTC), sla)
            except Exception:  # a bad round must not stop the scheduler; the next one retries
                log.exception("referral: acceptance SLA scan failed")
            await asyncio.sleep(interval_s)

    return acceptance_sla_scheduler
