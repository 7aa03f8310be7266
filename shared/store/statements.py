"""The SQL the store runs on the driver (see driver.py for why), portable between the two.

Written with "?" placeholders and converted once per store. Table and column names are those of
schema.py; "key" and "value" are quoted because they are keywords in SQL.
"""

from __future__ import annotations

from shared.store.driver import portable_sql

#: Search-parameter types with an index table, in CoreTables.index_tables order.
INDEX_KINDS = ("token", "string", "date", "reference")

_VERSION_COLUMNS = "resource_type, id, version_id, last_updated, deleted, content"
_INDEX_COLUMNS = {
    "token": ("idx_token", ("system", "code")),
    "string": ("idx_string", ('"value"',)),
    "date": ("idx_date", ("low", "high")),
    "reference": ("idx_reference", ("target_type", "target_id")),
}


class Statements:
    def __init__(self, dialect: str) -> None:
        def sql(text: str) -> str:
            return portable_sql(dialect, text)

        # PostgreSQL locks the row for read-modify-write; SQLite's writer already holds the
        # whole database (BEGIN IMMEDIATE) and has no FOR UPDATE.
        lock = " FOR UPDATE" if dialect == "postgresql" else ""
        where_resource = "WHERE resource_type = ? AND id = ?"

        self.read = sql(f"SELECT version_id, last_updated, deleted, content FROM resources {where_resource}")
        self.read_for_update = self.read + lock
        self.current_version = sql(
            f"SELECT version_id, last_updated, deleted FROM resources {where_resource}{lock}"
        )
        self.vread = sql(
            "SELECT version_id, last_updated, deleted, content FROM resource_history "
            f"{where_resource} AND version_id = ?"
        )
        self.history = sql(
            "SELECT version_id, last_updated, deleted, content FROM resource_history "
            f"{where_resource} ORDER BY version_id DESC"
        )
        # DO NOTHING rather than catching the violation: the primary key still decides,
        # atomically, and a PostgreSQL transaction stays usable afterwards.
        self.insert_resource = sql(
            f"INSERT INTO resources ({_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
        )
        self.insert_history = sql(
            f"INSERT INTO resource_history ({_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
        )
        self.update_resource = sql(
            "UPDATE resources SET version_id = ?, last_updated = ?, deleted = ?, content = ? "
            f"{where_resource}"
        )
        self.insert_index = {
            kind: sql(
                f"INSERT INTO {table} (resource_type, resource_id, param, {', '.join(columns)}) "
                f"VALUES (?, ?, ?, {', '.join(['?'] * len(columns))})"
            )
            for kind, (table, columns) in _INDEX_COLUMNS.items()
        }
        self.delete_index = {
            kind: sql(f"DELETE FROM {table} WHERE resource_type = ? AND resource_id = ?")
            for kind, (table, _columns) in _INDEX_COLUMNS.items()
        }
        self.insert_outbox = sql(
            'INSERT INTO outbox (event_id, topic, "key", "value", headers, created_at) '
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        # PostgreSQL only (SQLite has one writer, so its commit order is seq order): see
        # Transaction.add_outbox.
        self.lock_outbox_key = sql("SELECT pg_advisory_xact_lock(?)") if dialect == "postgresql" else None
        self.insert_inbox = sql(
            "INSERT INTO inbox (consumer, event_id, processed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
        )
        # Newer versions win whatever order events arrive in; each applied put counts.
        self.upsert_projection = sql(
            'INSERT INTO projections (name, "key", version, data, change_count, updated_at) '
            "VALUES (?, ?, ?, ?, 1, ?) "
            'ON CONFLICT (name, "key") DO UPDATE SET version = excluded.version, data = excluded.data, '
            "updated_at = excluded.updated_at, change_count = projections.change_count + 1 "
            "WHERE projections.version < excluded.version"
        )
