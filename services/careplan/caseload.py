"""Caseload assignment: careplan's copy of the program directory, and who manages whom.

- `on_directory_event()` keeps `caseload_programs`, `caseload_case_managers` and
  `caseload_role_services` in step with referral's HealthcareService and PractitionerRole
  events (services never read each other's databases, DESIGN.md). Every HealthcareService and
  PractitionerRole gets a row, program or not, so that a version that stops being a program
  (or a case manager) still overrides the older one; a row only moves forward in version, so a
  repeated or late event changes nothing.
- `assign_case_manager()` gives a patient a case manager: the one the patient has, or the best
  placed by domain/caseload.py's balancing rule, recorded in `caseload_assignments` and on the
  patient's case-management CareTeam (written through FhirRest: validated, versioned, evented).
  When no one has room it publishes PROGRAM_FULL_EVENT instead.
- `caseload_of()`, `caseload_counts()` for the caseload views; `release()` ends an assignment.

Assignments are serialised so that two at once cannot both take a case manager's last place:
on PostgreSQL by a transaction-scoped advisory lock, taken before the counts are read (READ
COMMITTED: each statement after it sees every assignment committed before the lock was
granted); on SQLite the store already runs one writer at a time (its in-process write lock and
BEGIN IMMEDIATE, shared/store/store.py).
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.careplan.domain.caseload import (
    ACT,
    BROKERAGE,
    CASE_MANAGEMENT_TEAM_CATEGORY,
    CLINICAL,
    ICM,
    Caseload,
    Program,
    case_management_team,
    case_manager_of,
    case_manager_references,
    choose_case_manager,
    current_case_manager,
    program_full_parameters,
    program_of,
    program_statuses,
    with_case_manager,
    without_case_manager,
)
from shared.errors import Gone, NotFound, PoisonMessage
from shared.events import CloudEvent, Handler, topics
from shared.fhir.events import enqueue_domain_event
from shared.fhir.projections import version_of
from shared.fhir.rest import FhirRest
from shared.settings import CareplanSettings, ServiceSettings
from shared.store import Migration, Transaction, UtcDateTime, create_tables

metadata = sa.MetaData()
programs = sa.Table(
    "caseload_programs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    # NULL: a HealthcareService that is not a program (kept for its version).
    sa.Column("model", sa.String(16)),
    sa.Column("name", sa.Text),
    sa.Column("own_limit", sa.Integer),
    sa.Column("organization", sa.String(128)),
    sa.Column("active", sa.Boolean, nullable=False),
)
case_managers = sa.Table(
    "caseload_case_managers",
    metadata,
    sa.Column("role_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("practitioner", sa.String(128)),
    # Takes new clients: an active, undeleted PractitionerRole that is a case manager.
    sa.Column("active", sa.Boolean, nullable=False),
)
role_services = sa.Table(
    "caseload_role_services",
    metadata,
    sa.Column("role_id", sa.String(64), primary_key=True),
    sa.Column("service_id", sa.String(64), primary_key=True),
    sa.Index("ix_caseload_role_services_service", "service_id"),
)
assignments = sa.Table(
    "caseload_assignments",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("role_id", sa.String(64), nullable=False),
    sa.Column("practitioner", sa.String(128)),
    sa.Column("program_id", sa.String(64), nullable=False),
    sa.Column("careteam_id", sa.String(64), nullable=False),
    sa.Column("assigned_at", UtcDateTime(), nullable=False),
    sa.Column("released_at", UtcDateTime()),
    # One current case manager per patient, whatever goes wrong above.
    sa.Index(
        "uq_caseload_assignments_current",
        "patient_id",
        unique=True,
        sqlite_where=sa.text("released_at IS NULL"),
        postgresql_where=sa.text("released_at IS NULL"),
    ),
    sa.Index("ix_caseload_assignments_role", "role_id", "released_at"),
)
MIGRATIONS = (
    Migration(
        "careplan.caseload",
        1,
        create_tables(programs, case_managers, role_services, assignments),
        "programs, case managers and caseload assignments",
    ),
)

#: PostgreSQL advisory lock held by the transaction that is assigning a case manager.
ASSIGNMENT_LOCK_KEY = zlib.crc32(b"carebridge.caseload.assign")


def caseload_limits(settings: ServiceSettings) -> dict[str, int]:
    """Clients per case manager by model, from careplan's settings."""
    if not isinstance(settings, CareplanSettings):
        raise TypeError("Caseload limits come from CareplanSettings")
    return {
        ACT: settings.caseload_limit_act,
        ICM: settings.caseload_limit_icm,
        CLINICAL: settings.caseload_limit_clinical,
        BROKERAGE: settings.caseload_limit_brokerage,
    }


# --- the directory, from referral's events --------------------------------------------------------


def on_directory_event() -> Handler:
    """Applies referral's HealthcareService and PractitionerRole lifecycle events; ignores the rest."""

    async def handle(event: CloudEvent, tx: Transaction) -> None:
        parsed = topics.parse_resource_event_type(event.type)
        if parsed is None or parsed[0] not in ("HealthcareService", "PractitionerRole"):
            return
        resource_type, action = parsed
        data = event.data
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise PoisonMessage(f"{event.type} event carries no {resource_type} with an id")
        deleted = action == "deleted"
        if resource_type == "HealthcareService":
            await _put_program(tx, data, version_of(data), deleted)
        else:
            await _put_case_manager(tx, data, version_of(data), deleted)

    return handle


async def _put_program(tx: Transaction, service: dict[str, Any], version: int, deleted: bool) -> None:
    program = None if deleted else program_of(service)
    values: dict[str, Any] = {"id": service["id"], "version": version, "active": False}
    if program is not None:
        values.update(
            model=program.model,
            name=program.name,
            own_limit=program.own_limit,
            organization=program.organization,
            active=program.active,
        )
    else:
        values.update(model=None, name=None, own_limit=None, organization=None)
    await _upsert_newer(tx, programs, programs.c.id, values)


async def _put_case_manager(tx: Transaction, role: dict[str, Any], version: int, deleted: bool) -> None:
    manager = case_manager_of(role)
    values = {
        "role_id": manager.role_id,
        "version": version,
        "practitioner": None if deleted else manager.practitioner,
        "active": manager.active and not deleted,
    }
    if not await _upsert_newer(tx, case_managers, case_managers.c.role_id, values):
        return
    connection = await tx.sql_connection()
    await connection.execute(sa.delete(role_services).where(role_services.c.role_id == manager.role_id))
    if manager.service_ids and not deleted:
        rows = [{"role_id": manager.role_id, "service_id": s} for s in manager.service_ids]
        await connection.execute(sa.insert(role_services), rows)


async def _upsert_newer(
    tx: Transaction, table: sa.Table, key: sa.Column[Any], values: dict[str, Any]
) -> bool:
    """Insert the row, or overwrite it if `values` has a newer version; True if written."""
    dialect_insert = postgresql.insert if tx.dialect == "postgresql" else sqlite.insert
    statement = dialect_insert(table).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[key],
        set_={name: statement.excluded[name] for name in values if name != key.name},
        where=table.c.version < statement.excluded.version,
    )
    result = await (await tx.sql_connection()).execute(statement)
    return bool(result.rowcount == 1)


# --- assignment -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assignment:
    patient_id: str
    #: "Practitioner/x" (None for a role without one).
    practitioner: str | None
    role_id: str | None
    program_id: str | None
    careteam_id: str
    #: None for a case manager found on the CareTeam but not assigned here.
    assigned_at: datetime | None
    #: Made by this call (False: the patient already had this case manager).
    new: bool = False


async def assign_case_manager(
    rest: FhirRest,
    tx: Transaction,
    patient_id: str,
    *,
    now: datetime,
    program_id: str | None = None,
    model: str | None = None,
) -> Assignment | None:
    """The patient's case manager: the current one if there is one (nothing written), else the
    best placed one with room (in `program_id` / `model` if given), recorded and put on the
    patient's case-management CareTeam. None, with PROGRAM_FULL_EVENT published, when no one has
    room. `now` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    await _lock_assignments(tx)
    connection = await tx.sql_connection()
    current = await _current_assignment(connection, patient_id)
    if current is not None:
        return current
    team = await _case_management_team(rest, tx, patient_id)
    participant = current_case_manager(team) if team is not None else None
    if team is not None and participant is not None:
        # Put on the team directly, not through here: reported, not counted in the caseloads.
        return Assignment(patient_id, *case_manager_references(participant), team["id"], None)

    limits = caseload_limits(rest.settings)
    known = await _programs(connection)
    caseloads = await _caseloads(connection, known, limits)
    chosen = choose_case_manager(caseloads, program_id=program_id, model=model)
    if chosen is None:
        statuses = program_statuses(known.values(), caseloads, limits, program_id=program_id, model=model)
        await _publish(rest, tx, patient_id, program_full_parameters(f"Patient/{patient_id}", statuses), now)
        return None

    start = now.isoformat(timespec="seconds")
    role_reference = f"PractitionerRole/{chosen.role_id}"
    if team is None:
        body = case_management_team(
            f"Patient/{patient_id}", chosen.practitioner, role_reference, chosen.program, start=start
        )
        careteam_id = (await rest.create(tx, "CareTeam", body)).stored.id
    else:
        body = with_case_manager(team, chosen.practitioner, role_reference, chosen.program, start=start)
        careteam_id = (await rest.update(tx, "CareTeam", team["id"], body)).stored.id
    await connection.execute(
        sa.insert(assignments).values(
            id=uuid.uuid4().hex,
            patient_id=patient_id,
            role_id=chosen.role_id,
            practitioner=chosen.practitioner,
            program_id=chosen.program.id,
            careteam_id=careteam_id,
            assigned_at=now,
        )
    )
    return Assignment(
        patient_id, chosen.practitioner, chosen.role_id, chosen.program.id, careteam_id, now, new=True
    )


async def _lock_assignments(tx: Transaction) -> None:
    if tx.dialect == "postgresql":
        connection = await tx.sql_connection()
        await connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ASSIGNMENT_LOCK_KEY})


async def _current_assignment(connection: AsyncConnection, patient_id: str) -> Assignment | None:
    query = sa.select(assignments).where(
        assignments.c.patient_id == patient_id, assignments.c.released_at.is_(None)
    )
    row = (await connection.execute(query)).first()
    if row is None:
        return None
    return Assignment(
        patient_id, row.practitioner, row.role_id, row.program_id, row.careteam_id, row.assigned_at
    )


async def _case_management_team(rest: FhirRest, tx: Transaction, patient_id: str) -> dict[str, Any] | None:
    category = f"{CASE_MANAGEMENT_TEAM_CATEGORY['system']}|{CASE_MANAGEMENT_TEAM_CATEGORY['code']}"
    teams = await rest.searcher.matches(
        rest.store,
        "CareTeam",
        [("subject", f"Patient/{patient_id}"), ("status", "active"), ("category", category)],
        connection=await tx.sql_connection(),
        limit=1,
    )
    return orjson.loads(teams[0].content) if teams else None


async def _programs(connection: AsyncConnection) -> dict[str, Program]:
    query = sa.select(programs).where(programs.c.model.is_not(None)).order_by(programs.c.id)
    return {
        row.id: Program(row.id, row.model, row.name, row.own_limit, row.organization, row.active)
        for row in (await connection.execute(query)).all()
    }


async def _caseloads(
    connection: AsyncConnection, known: Mapping[str, Program], limits: Mapping[str, int]
) -> list[Caseload]:
    """Every active case manager in each active program they serve, with their current load."""
    counting = (
        sa.select(assignments.c.role_id, sa.func.count())
        .where(assignments.c.released_at.is_(None))
        .group_by(assignments.c.role_id)
    )
    loads: dict[str, int] = {row[0]: int(row[1]) for row in (await connection.execute(counting)).all()}
    query = (
        sa.select(case_managers, role_services.c.service_id)
        .join(role_services, role_services.c.role_id == case_managers.c.role_id)
        .where(case_managers.c.active.is_(True))
        .order_by(case_managers.c.role_id, role_services.c.service_id)
    )
    return [
        Caseload(row.role_id, row.practitioner, program, program.limit(limits), loads.get(row.role_id, 0))
        for row in (await connection.execute(query)).all()
        if (program := known.get(row.service_id)) is not None and program.active
    ]


async def _publish(
    rest: FhirRest, tx: Transaction, patient_id: str, parameters: dict[str, Any], now: datetime
) -> None:
    await enqueue_domain_event(
        tx,
        rest.settings,
        topic=topics.CAREPLAN,
        event_type=topics.PROGRAM_FULL_EVENT,
        subject=f"Patient/{patient_id}",
        key=patient_id,
        data=parameters,
        time=now.isoformat(timespec="milliseconds"),
    )


async def release(rest: FhirRest, tx: Transaction, patient_id: str, *, now: datetime) -> Assignment | None:
    """End the patient's current assignment (its place goes back to the case manager) and the
    case manager's period on the CareTeam. None if the patient had none."""
    await _lock_assignments(tx)
    connection = await tx.sql_connection()
    current = await _current_assignment(connection, patient_id)
    if current is None:
        return None
    await connection.execute(
        sa.update(assignments)
        .where(assignments.c.patient_id == patient_id, assignments.c.released_at.is_(None))
        .values(released_at=now)
    )
    try:
        team = orjson.loads((await tx.read("CareTeam", current.careteam_id)).content)
    except (NotFound, Gone):  # the team itself was removed: nothing to end on it
        return current
    if current_case_manager(team) is not None:
        ended = without_case_manager(team, end=now.isoformat(timespec="seconds"))
        await rest.update(tx, "CareTeam", current.careteam_id, ended)
    return current


# --- caseload views ---------------------------------------------------------------------------


async def caseload_of(connection: AsyncConnection, practitioner_id: str) -> list[str]:
    """Patient ids of the practitioner's current clients, in the order they were assigned."""
    query = (
        sa.select(assignments.c.patient_id)
        .where(
            assignments.c.practitioner == f"Practitioner/{practitioner_id}",
            assignments.c.released_at.is_(None),
        )
        .order_by(assignments.c.assigned_at, assignments.c.patient_id)
    )
    return list((await connection.execute(query)).scalars().all())


async def caseload_counts(connection: AsyncConnection, settings: CareplanSettings) -> list[Caseload]:
    """Each active case manager in each active program they serve, with their client count."""
    return await _caseloads(connection, await _programs(connection), caseload_limits(settings))
