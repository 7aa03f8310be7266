"""The write side of the search index: one resource version's rows in every index table.

`Transaction` calls `index_writer(dialect).insert(...)` after writing a version and `.clear(...)`
before re-indexing or on delete, on its driver connection (see driver.py for why the store's own
writes bypass SQLAlchemy). Which tables a parameter type fills is decided here only, so adding
an index table touches this module, schema.py and a migration, nothing else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from shared.fhir.search_params import ParamType, SearchParam
from shared.store.driver import DriverConnection, portable_sql
from shared.store.indexing import IndexRows, extract_index_rows
from shared.store.schema import EXACT_SUFFIX, TEXT_SUFFIX

#: Value columns of each index table ("value" is quoted: a keyword in SQL).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "idx_token": ("system", "code"),
    "idx_string": ('"value"',),
    "idx_date": ("low", "high"),
    "idx_reference": ("target_type", "target_id"),
    "idx_number": ('"value"',),
    "idx_quantity": ('"value"', "system", "code", "unit"),
}

#: The tables a parameter of each type writes to. A token parameter's display texts (:text)
#: live in idx_string; a uri is matched like a code, in idx_token.
TABLES_OF_TYPE: dict[ParamType, tuple[str, ...]] = {
    "token": ("idx_token", "idx_string"),
    "uri": ("idx_token",),
    "string": ("idx_string",),
    "date": ("idx_date",),
    "reference": ("idx_reference",),
    "number": ("idx_number",),
    "quantity": ("idx_quantity",),
}


def table_rows(rows: IndexRows, time: Callable[[datetime], Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Rows per table, without (resource_type, resource_id); `time` converts datetimes for the
    database (DriverConnection.time)."""
    return {
        "idx_token": list(rows.token),
        "idx_string": [
            *rows.string,
            *((param + TEXT_SUFFIX, text) for param, text in rows.text),
            *((param + EXACT_SUFFIX, text) for param, text in rows.exact),
        ],
        "idx_date": [(param, time(low), time(high)) for param, low, high in rows.date],
        "idx_reference": list(rows.reference),
        "idx_number": list(rows.number),
        "idx_quantity": list(rows.quantity),
    }


def tables_for(params: Sequence[SearchParam]) -> list[str]:
    """The index tables a resource type with these parameters writes to, in a fixed order."""
    used = {table for param in params for table in TABLES_OF_TYPE[param.type]}
    return [table for table in TABLE_COLUMNS if table in used]


class IndexWriter:
    """Index SQL for one dialect, run on the caller's driver connection (in its transaction)."""

    def __init__(self, dialect: str) -> None:
        self._insert = {
            table: portable_sql(
                dialect,
                f"INSERT INTO {table} (resource_type, resource_id, param, {', '.join(columns)}) "
                f"VALUES (?, ?, ?, {', '.join('?' * len(columns))})",
            )
            for table, columns in TABLE_COLUMNS.items()
        }
        self._delete = {
            table: portable_sql(dialect, f"DELETE FROM {table} WHERE resource_type = ? AND resource_id = ?")
            for table in TABLE_COLUMNS
        }

    async def insert(
        self,
        db: DriverConnection,
        resource_type: str,
        resource_id: str,
        doc: dict[str, Any],
        params: Sequence[SearchParam],
    ) -> None:
        """Index one version's document (one executemany per table that gets rows)."""
        if not params:
            return
        rows = table_rows(extract_index_rows(doc, params), db.time)
        for table, values in rows.items():
            if values:
                key = (resource_type, resource_id)
                await db.executemany(self._insert[table], [(*key, *row) for row in values])

    async def clear(
        self, db: DriverConnection, resource_type: str, resource_id: str, params: Sequence[SearchParam]
    ) -> None:
        """Remove a resource's rows from every table its type writes to (deferred: nothing
        waits on the result, and the inserts that follow are queued behind it)."""
        for table in tables_for(params):
            await db.defer(self._delete[table], (resource_type, resource_id))


@functools.cache
def index_writer(dialect: str) -> IndexWriter:
    return IndexWriter(dialect)
