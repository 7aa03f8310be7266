"""Closed-loop referrals: every ServiceRequest and Task write, from FHIR clients (through the
gateway) and from HL7 REF messages alike, passes through these hooks, in the write's transaction.

- A referral ServiceRequest (active, intent order, a performer that resolves to an Organization:
  itself, a HealthcareService's providedBy or a PractitionerRole's organization) gets its Task
  (domain/workflow.new_referral_task: requested, owned by that Organization, requested by the
  SR's requester) when it is created, or when an update makes it a referral, unless a Task for it
  already exists. A revoked or entered-in-error ServiceRequest cancels its open Task.
- One Task per referral: creating a Task whose focus already has one (not entered-in-error) is
  422. A client may still POST its own Task with the ServiceRequest in one transaction Bundle:
  if the Task entry runs first, the ServiceRequest finds it and makes none; if the ServiceRequest
  runs first, the Task it made in this same transaction is withdrawn (deleted, in the transaction)
  in favour of the client's. Task creations for one ServiceRequest are serialised by a key lock.
- Every Task create and update is checked against the state machine with the caller's role
  (domain/workflow.role_of: a clinic's token whose organization owns the Task is the owner;
  no organization is the requester), and client updates need If-Match (428 without; the
  Dispatcher enforces `requires_if_match`). Writes the service makes itself (the Task of a new
  referral, a cancellation) are made on the requester's behalf.
- `referral_tasks` indexes each Task: its status, owner, requester, patient, the SR's category,
  and the first time it reached each status (the SLA scan in sla.py and the referral metrics read
  it). A Task deleted through DELETE keeps its last row until the next write about its
  ServiceRequest (delete has no hook); readers that must not count it re-read the Task.
"""

from __future__ import annotations

import logging
import weakref
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import sqlalchemy as sa

from services.referral.domain import workflow
from shared.errors import BusinessRuleViolation, Gone, NotFound
from shared.fhir.rest import AfterWrite, FhirRest, Proceed, WriteHooks, Written
from shared.fhir.rest.caller import Caller, calling_as, current_caller
from shared.fhir.rest.conditional import parse_criteria
from shared.store import Migration, StoredResource, Transaction, UtcDateTime, create_tables

log = logging.getLogger(__name__)

metadata = sa.MetaData()
referral_tasks = sa.Table(
    "referral_tasks",
    metadata,
    sa.Column("task_id", sa.String(64), primary_key=True),
    sa.Column("service_request_id", sa.String(64), nullable=False),
    sa.Column("patient_id", sa.String(64)),
    sa.Column("status", sa.String(32), nullable=False),
    #: The Task version this row reflects.
    sa.Column("version", sa.Integer, nullable=False),
    #: Task.owner's Organization id (None when the owner is not an Organization), and the reference.
    sa.Column("owner_org", sa.String(64)),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("requester", sa.String(200), nullable=False),
    #: The ServiceRequest's first category coding (the kind of service referred to).
    sa.Column("category_system", sa.String(200)),
    sa.Column("category_code", sa.String(64)),
    sa.Column("category_display", sa.String(200)),
    #: statusReason.text of the current status (why rejected, cancelled, on hold, failed).
    sa.Column("status_reason", sa.String(500)),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # The first time the Task had each status (a stage it skipped stays NULL); requested_at is
    # when the referral was sent.
    sa.Column("requested_at", UtcDateTime()),
    sa.Column("received_at", UtcDateTime()),
    sa.Column("accepted_at", UtcDateTime()),
    sa.Column("in_progress_at", UtcDateTime()),
    sa.Column("on_hold_at", UtcDateTime()),
    sa.Column("completed_at", UtcDateTime()),
    sa.Column("failed_at", UtcDateTime()),
    sa.Column("rejected_at", UtcDateTime()),
    sa.Column("cancelled_at", UtcDateTime()),
    sa.Column("entered_in_error_at", UtcDateTime()),
    sa.Index("ix_referral_tasks_request", "service_request_id"),
    sa.Index("ix_referral_tasks_status_requested", "status", "requested_at"),
    sa.Index("ix_referral_tasks_owner", "owner_org"),
)
MIGRATIONS = (
    Migration("referral.tasks", 1, create_tables(referral_tasks), "referral Task index and status timeline"),
)

#: The column holding the first time a Task had each status.
TIMELINE: Final = {
    status: status.replace("-", "_") + "_at" for status in workflow.STATUSES if status != "draft"
}
#: A ServiceRequest in these statuses takes its open Task with it.
_WITHDRAWN: Final = frozenset({"revoked", "entered-in-error"})


# --- the index -------------------------------------------------------------------------------------


def _category(request: dict[str, Any] | None) -> dict[str, Any]:
    for concept in (request or {}).get("category") or []:
        for coding in (concept or {}).get("coding") or []:
            if isinstance(coding, dict) and coding.get("code"):
                return {
                    "category_system": str(coding.get("system") or "")[:200] or None,
                    "category_code": str(coding["code"])[:64],
                    "category_display": str(coding.get("display") or concept.get("text") or "")[:200] or None,
                }
    return {"category_system": None, "category_code": None, "category_display": None}


async def index_task(tx: Transaction, stored: StoredResource, request: dict[str, Any] | None) -> None:
    """Bring the Task's row in line with the version just written; `request` (its
    ServiceRequest, when at hand) refreshes the category."""
    task = orjson.loads(stored.content)
    connection = await tx.sql_connection()
    t = referral_tasks
    row = (await connection.execute(sa.select(t).where(t.c.task_id == stored.id))).first()
    status = str(task["status"])
    reason = (task.get("statusReason") or {}).get("text") if status in workflow.NEEDS_REASON else None
    values: dict[str, Any] = {
        "service_request_id": workflow.reference_id(task.get("focus"), "ServiceRequest") or "",
        "patient_id": workflow.reference_id(task.get("for"), "Patient"),
        "status": status,
        "version": stored.version_id,
        "owner_org": workflow.owner_organization(task),
        "owner": str((task.get("owner") or {}).get("reference") or "")[:200],
        "requester": str((task.get("requester") or {}).get("reference") or "")[:200],
        "status_reason": str(reason)[:500] if reason else None,
        "updated_at": stored.last_updated,
    }
    column = TIMELINE.get(status)
    if row is None:
        values.update(_category(request))
        if column is not None:
            values[column] = stored.last_updated
        await connection.execute(sa.insert(t).values(task_id=stored.id, **values))
        return
    if request is not None:
        values.update(_category(request))
    if column is not None and getattr(row, column) is None:
        values[column] = stored.last_updated
    await connection.execute(sa.update(t).where(t.c.task_id == stored.id).values(**values))


async def tasks_of(tx: Transaction, request_id: str) -> list[Any]:
    """The index rows of a ServiceRequest's Tasks, entered-in-error ones aside. A row whose Task
    was since deleted (DELETE has no hook) is dropped here."""
    t = referral_tasks
    connection = await tx.sql_connection()
    rows = (
        await connection.execute(
            sa.select(t.c.task_id, t.c.status).where(
                t.c.service_request_id == request_id, t.c.status != "entered-in-error"
            )
        )
    ).all()
    live = []
    for row in rows:
        if await _read(tx, "Task", row.task_id) is None:
            await connection.execute(sa.delete(t).where(t.c.task_id == row.task_id))
        else:
            live.append(row)
    return live


async def _lock_referral(tx: Transaction, request_id: str) -> None:
    """Serialise Task creations for one ServiceRequest (the store's conditional-create key lock)."""
    criteria = parse_criteria("Task", [("focus", f"ServiceRequest/{request_id}")])
    await tx.lock_conditional_key("Task", criteria.key, criteria.canonical)


async def _read(tx: Transaction, resource_type: str, id_: str | None) -> dict[str, Any] | None:
    if id_ is None:
        return None
    try:
        loaded: dict[str, Any] = orjson.loads((await tx.read(resource_type, id_)).content)
    except (NotFound, Gone):
        return None
    return loaded


# --- Task ------------------------------------------------------------------------------------------


class ReferralTaskHooks(WriteHooks):
    """The state machine on every Task write, one Task per referral, and the index."""

    requires_if_match = True

    def __init__(self) -> None:
        #: ServiceRequest id -> id of the Task this service made for it, per open transaction.
        self._made: weakref.WeakKeyDictionary[Transaction, dict[str, str]] = weakref.WeakKeyDictionary()

    def made_in(self, tx: Transaction) -> dict[str, str]:
        return self._made.setdefault(tx, {})

    async def create(
        self,
        rest: FhirRest,
        tx: Transaction,
        resource: dict[str, Any],
        proceed: Proceed,
        *,
        id_promised: bool,
    ) -> Written:
        role = workflow.role_of(resource, current_caller().organization)
        workflow.check_task_write(None, resource, role)
        request_id = workflow.reference_id(resource.get("focus"), "ServiceRequest")
        assert request_id is not None  # checked by the profile
        await _lock_referral(tx, request_id)
        await self._one_per_referral(rest, tx, request_id)
        written = await proceed(resource)
        await index_task(tx, written.stored, await _read(tx, "ServiceRequest", request_id))
        return written

    async def update(
        self, rest: FhirRest, tx: Transaction, resource: dict[str, Any], proceed: Proceed
    ) -> Written:
        before = await _read(tx, "Task", str(resource["id"]))  # locks the Task until commit
        if before is None:  # update-as-create, or re-creating a deleted Task: a creation
            return await self.create(rest, tx, resource, proceed, id_promised=True)
        role = workflow.role_of(before, current_caller().organization)
        workflow.check_task_write(before, resource, role)
        written = await proceed(resource)
        await index_task(tx, written.stored, None)
        return written

    async def _one_per_referral(self, rest: FhirRest, tx: Transaction, request_id: str) -> None:
        existing = await tasks_of(tx, request_id)
        if not existing:
            return
        made = self.made_in(tx).pop(request_id, None)
        if made is not None and [row.task_id for row in existing] == [made]:
            # The client sends its own Task with the ServiceRequest in one transaction: it wins.
            await rest.delete(tx, "Task", made)
            connection = await tx.sql_connection()
            await connection.execute(sa.delete(referral_tasks).where(referral_tasks.c.task_id == made))
            return
        raise BusinessRuleViolation(
            f"ServiceRequest/{request_id} already has its referral Task (Task/{existing[0].task_id}); "
            "update that one",
            expression=["Task.focus"],
        )


# --- ServiceRequest --------------------------------------------------------------------------------


class ReferralRequestHooks(AfterWrite):
    """A referral ServiceRequest gets its Task; a withdrawn one cancels it."""

    def __init__(self, tasks: ReferralTaskHooks) -> None:
        self.tasks = tasks

    async def written(self, rest: FhirRest, tx: Transaction, request: dict[str, Any]) -> None:
        if (request.get("meta") or {}).get("versionId") != "1":
            await _refresh_category(tx, request)
        # What the service writes now, it writes for the requester (whoever wrote the request).
        with calling_as(Caller(current_caller().actor)):
            if request.get("status") in _WITHDRAWN:
                await _cancel_open_tasks(rest, tx, request)
            elif workflow.is_referral(request):
                await self._make_task(rest, tx, request)

    async def _make_task(self, rest: FhirRest, tx: Transaction, request: dict[str, Any]) -> None:
        await _lock_referral(tx, request["id"])
        if await tasks_of(tx, request["id"]):
            return
        owner = await receiving_organization(tx, request)
        if owner is None:
            log.info("referral: ServiceRequest/%s names no receiving Organization; no Task", request["id"])
            return
        task = workflow.new_referral_task(request, datetime.now(UTC), owner)
        written = await rest.create(tx, "Task", task)
        self.tasks.made_in(tx)[request["id"]] = written.stored.id


async def receiving_organization(tx: Transaction, request: dict[str, Any]) -> dict[str, Any] | None:
    """The Organization that receives a referral: the first Organization performer, else the
    Organization behind a HealthcareService (providedBy) or PractitionerRole (organization)."""
    direct = workflow.referral_owner(request)
    if direct is not None:
        return direct
    for performer in request.get("performer") or []:
        for rtype, element in (("HealthcareService", "providedBy"), ("PractitionerRole", "organization")):
            found = await _read(tx, rtype, workflow.reference_id(performer, rtype))
            if found is not None and workflow.reference_id(found.get(element), "Organization"):
                org = found[element]
                return {k: org[k] for k in ("reference", "display") if k in org}
    return None


async def _refresh_category(tx: Transaction, request: dict[str, Any]) -> None:
    connection = await tx.sql_connection()
    await connection.execute(
        sa.update(referral_tasks)
        .where(referral_tasks.c.service_request_id == request["id"])
        .values(**_category(request))
    )


async def _cancel_open_tasks(rest: FhirRest, tx: Transaction, request: dict[str, Any]) -> None:
    reason = f"The referral (ServiceRequest/{request['id']}) was {request.get('status')} by the requester"
    for row in await tasks_of(tx, request["id"]):
        if row.status not in workflow.OPEN:
            continue
        task = await _read(tx, "Task", row.task_id)
        if task is not None:
            await rest.update(tx, "Task", row.task_id, workflow.cancelled(task, reason))


def hooks() -> dict[str, WriteHooks]:
    """The write hooks of referral's FHIR interactions (services/referral/app.py)."""
    tasks = ReferralTaskHooks()
    return {"Task": tasks, "ServiceRequest": ReferralRequestHooks(tasks)}
