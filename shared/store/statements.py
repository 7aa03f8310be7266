"""The statements every write runs, built once per store.

Building a SQLAlchemy statement and computing its cache key costs more CPU than executing it on
a warm connection, so writes reuse these with bound parameters instead of building their own.
"""

from __future__ import annotations

from sqlalchemy import Delete, Insert, Select, Table, Update, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.store.schema import CoreTables

#: Index table per search-parameter type, in CoreTables.index_tables order.
INDEX_KINDS = ("token", "string", "date", "reference")


class WriteStatements:
    def __init__(self, tables: CoreTables, dialect: str) -> None:
        self.tables = tables
        self.dialect = dialect
        r = tables.resources
        # Bind names differ from column names: in an UPDATE, a column's own name is its new value.
        self.insert_resource = self.insert_ignore(r)
        self.insert_history = tables.resource_history.insert()
        self.update_resource: Update = update(r).where(
            r.c.resource_type == bindparam("key_type"), r.c.id == bindparam("key_id")
        )
        self.current: Select[tuple[int, object, bool]] = (
            select(r.c.version_id, r.c.last_updated, r.c.deleted)
            .where(r.c.resource_type == bindparam("key_type"), r.c.id == bindparam("key_id"))
            .with_for_update()
        )
        self.current_with_content: Select[tuple[int, object, bool, bytes]] = self.current.add_columns(
            r.c.content
        )
        self.insert_index: dict[str, Insert] = {
            kind: table.insert() for kind, table in zip(INDEX_KINDS, tables.index_tables, strict=True)
        }
        self.delete_index: dict[str, Delete] = {
            kind: delete(table).where(
                table.c.resource_type == bindparam("key_type"), table.c.resource_id == bindparam("key_id")
            )
            for kind, table in zip(INDEX_KINDS, tables.index_tables, strict=True)
        }
        self.insert_outbox = tables.outbox.insert()
        self.insert_inbox = self.insert_ignore(tables.inbox)
        p = tables.projections
        projection = self.dialect_insert(p)
        # Newer versions win, whatever order events arrive in; each applied put counts.
        self.upsert_projection = projection.on_conflict_do_update(
            index_elements=[p.c.name, p.c.key],
            set_={
                "version": projection.excluded.version,
                "data": projection.excluded.data,
                "updated_at": projection.excluded.updated_at,
                "change_count": p.c.change_count + 1,
            },
            where=p.c.version < projection.excluded.version,
        )

    def dialect_insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    def insert_ignore(self, table: Table) -> Insert:
        """INSERT ... ON CONFLICT DO NOTHING: the key decides atomically, and a PostgreSQL
        transaction stays usable (a caught unique violation would abort it)."""
        return self.dialect_insert(table).on_conflict_do_nothing()
