"""A case manager's worklist and the follow-up scheduler.

The worklist answers "what do I do today?": the open obligations of the clients on a case
manager's caseload, split into due today, overdue and high risk (an urgent, as-soon-as-possible
or immediate activity, such as the same-day safety assessment a PHQ-9 item 9 answer asks for,
or the 7-day follow-up after a psychiatric discharge). The scheduler escalates what is overdue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson

from services.careplan import activities
from services.careplan.handlers import PATIENTS
from shared.fhir.rest import FhirRest
from shared.service import ServiceRuntime

log = logging.getLogger(__name__)

#: Patient ids on a practitioner's caseload (services/careplan/caseload.caseload_of).
CaseloadOf = Callable[[Any, str], Awaitable[Sequence[str]]]


def follow_up_scheduler(
    rest: FhirRest, interval_s: float
) -> Callable[[ServiceRuntime], Coroutine[Any, Any, None]]:
    """A loop that escalates overdue activities every `interval_s` seconds."""

    async def follow_up_scheduler(_runtime: ServiceRuntime) -> None:
        while True:
            try:
                await activities.escalate_overdue(rest, datetime.now(UTC))
            except Exception:  # a bad round must not stop the scheduler; the next one retries
                log.exception("careplan: overdue scan failed")
            await asyncio.sleep(interval_s)

    return follow_up_scheduler


def classify(row: Any, now: datetime, today: date) -> list[str]:
    """Which worklist sections an open activity belongs to."""
    sections = []
    if row.due_at < now:
        sections.append("overdue")
    elif row.due_at.date() == today:
        sections.append("dueToday")
    if row.priority in activities.HIGH_PRIORITY:
        sections.append("highRisk")
    return sections


async def worklist(
    rest: FhirRest, caseload_of: CaseloadOf, practitioner_id: str, now: datetime
) -> dict[str, Any]:
    today = now.date()
    async with rest.store.connect() as connection:
        patients = list(await caseload_of(connection, practitioner_id))
        rows = await activities.open_activities(connection, patients)
    names = {pid: await _name_of(rest, pid) for pid in {row.patient_id for row in rows}}
    body: dict[str, Any] = {
        "practitioner": f"Practitioner/{practitioner_id}",
        "date": today.isoformat(),
        "caseload": len(patients),
        "dueToday": [],
        "overdue": [],
        "highRisk": [],
    }
    for row in rows:
        trigger, _, kind = row.activity_key.partition("|")
        item = {
            "patient": {"reference": f"Patient/{row.patient_id}", "display": names.get(row.patient_id)},
            "carePlan": {"reference": f"CarePlan/{row.careplan_id}"},
            "activity": row.title,
            "kind": kind or None,
            "trigger": {"reference": trigger},
            "due": row.due_at.isoformat(timespec="seconds"),
            "priority": row.priority,
            "status": row.status,
        }
        for section in classify(row, now, today):
            body[section].append(item)
    return body


async def _name_of(rest: FhirRest, patient_id: str) -> str | None:
    kept = await rest.store.get_projection(PATIENTS, patient_id)
    if kept is None:
        return None
    names = orjson.loads(kept.data).get("name") or []
    if not names:
        return None
    name = names[0]
    return " ".join([*(name.get("given") or []), name.get("family") or ""]).strip() or None
