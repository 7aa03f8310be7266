"""What the FHIR REST layer needs from the store beyond single resources: history across a type
or the whole system, and the keys that make conditional create safe against concurrent clients.

History (http://hl7.org/fhir/R4/http.html#history) is read newest first, keyset-paged on
(last_updated, resource_type, id, version_id), so a page never skips or repeats a version when
new ones arrive. Conditional create keys: see `Transaction.lock_conditional_key`.

These tables and indexes are a migration component of their own ("store.rest"), applied after
the store's core schema, so they evolve without touching it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, Text, text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.store.driver import portable_sql
from shared.store.migrations import Migration, create_tables
from shared.store.schema import ID_LENGTH, UtcDateTime

REST_COMPONENT = "store.rest"

#: Largest history page; the REST layer clamps _count to it.
MAX_HISTORY_PAGE = 1000


@dataclass(frozen=True, slots=True)
class HistoryCursor:
    """Where the previous page stopped: the last (oldest) version it returned."""

    last_updated: datetime
    resource_type: str
    id: str
    version_id: int


def conditional_keys_table(metadata: MetaData) -> Table:
    return Table(
        "conditional_keys", metadata,
        Column("resource_type", String(ID_LENGTH), nullable=False),
        # sha256 of the canonical criteria (shared/fhir/rest/conditional.py)
        Column("criteria_hash", String(64), nullable=False),
        Column("criteria", Text, nullable=False),
        Column("resource_id", String(ID_LENGTH), nullable=True),
        Column("updated_at", UtcDateTime, nullable=False),
        PrimaryKeyConstraint("resource_type", "criteria_hash", name="pk_conditional_keys"),
    )  # fmt: skip


def rest_migrations() -> list[Migration]:
    create_keys = create_tables(conditional_keys_table(MetaData()))

    async def apply(connection: AsyncConnection) -> None:
        await create_keys(connection)
        # Type history (resource_type, newest first) and system history (newest first).
        await connection.execute(
            text(
                "CREATE INDEX IF NOT EXISTS ix_resource_history_type_updated "
                "ON resource_history (resource_type, last_updated)"
            )
        )
        await connection.execute(
            text("CREATE INDEX IF NOT EXISTS ix_resource_history_updated ON resource_history (last_updated)")
        )

    return [Migration(REST_COMPONENT, 1, apply, "conditional create keys; history by type and system")]


class VersionStatements:
    """Driver-level SQL for history pages and conditional keys ("?" placeholders converted)."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect
        # The upsert takes the key's row lock on PostgreSQL, waiting for a concurrent inserter
        # to commit or roll back; on SQLite the writer already holds the database.
        self.lock_conditional_key = portable_sql(
            dialect,
            "INSERT INTO conditional_keys (resource_type, criteria_hash, criteria, resource_id, updated_at) "
            "VALUES (?, ?, ?, NULL, ?) ON CONFLICT (resource_type, criteria_hash) "
            "DO UPDATE SET updated_at = excluded.updated_at",
        )
        self.set_conditional_key = portable_sql(
            dialect,
            "UPDATE conditional_keys SET resource_id = ? WHERE resource_type = ? AND criteria_hash = ?",
        )

    def history_page(self, resource_type: str | None, id: str | None, since: bool, cursor: bool) -> str:
        """SELECT of one history page; parameters in order: type, id, since, cursor (4), limit."""
        where: list[str] = []
        if resource_type is not None:
            where.append("resource_type = ?")
        if id is not None:
            where.append("id = ?")
        if since:
            where.append("last_updated >= ?")
        if cursor:
            where.append("(last_updated, resource_type, id, version_id) < (?, ?, ?, ?)")
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        return portable_sql(
            self._dialect,
            "SELECT resource_type, id, version_id, last_updated, deleted, content FROM resource_history "
            f"{clause}ORDER BY last_updated DESC, resource_type DESC, id DESC, version_id DESC LIMIT ?",
        )
