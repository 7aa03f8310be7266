"""The store's own SQL runs on the raw driver connection (aiosqlite or asyncpg).

Why not through SQLAlchemy: measured here, each statement executed through SQLAlchemy's asyncio
adapters costs 300-500 us of CPU (aiosqlite: three to four thread hops per statement), against
60-160 us on the driver; a create (five statements) went from about 3 ms of CPU to under 1 ms.
The connections still come from the SQLAlchemy engine (same pool, same SQLite PRAGMAs), and a
service's own tables are used through SQLAlchemy on the same connection, inside the same
transaction: the store begins and commits on the driver, and SQLAlchemy runs in pass-through
mode (no BEGIN of its own on SQLite, AUTOCOMMIT on PostgreSQL, so it never starts a second one).

The SQL the store writes is portable between the two (INSERT ... ON CONFLICT works on both);
only placeholders, timestamps and row counts differ, and they are handled here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg


class DriverConnection(Protocol):
    dialect: str

    async def begin(self) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...
    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run one statement; returns the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row. May be deferred like `defer`."""
        ...

    async def defer(self, sql: str, params: Sequence[Any]) -> None:
        """Run a statement whose result nobody needs, at the latest before the next statement
        with a result, or the commit. Errors surface there."""
        ...

    async def flush(self) -> None:
        """Run what was deferred now (before reading through another connection object)."""
        ...

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]: ...
    def time(self, moment: datetime) -> Any:
        """A timezone-aware datetime as this database stores it (see schema.UtcDateTime)."""
        ...


class SqliteConnection:
    """aiosqlite runs each call in its worker thread: a create was nine thread hops, each a
    queue put, a thread wake-up and a loop wake-up. Statements whose result is not needed are
    queued instead and run in the same hop as the next statement that has a result, or the
    COMMIT, so a create costs three hops (BEGIN, the resource insert, everything else + COMMIT).
    This uses aiosqlite's `_execute` (run a function in its thread), pinned by constraints.txt.
    """

    dialect = "sqlite"

    def __init__(self, raw: Any) -> None:
        self._raw = raw  # aiosqlite.Connection, isolation_level=None (see engine.py)
        self._pending: list[tuple[str, Sequence[Any], bool]] = []

    async def begin(self) -> None:
        # IMMEDIATE takes the write lock now (waiting up to busy_timeout for another process)
        # instead of failing later when a read lock cannot be upgraded.
        self._pending.clear()
        await self._raw.execute("BEGIN IMMEDIATE")

    async def commit(self) -> None:
        await self._in_thread("COMMIT", (), _COMMIT)

    async def rollback(self) -> None:
        self._pending.clear()
        await self._raw.rollback()  # a no-op when no transaction is open

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        return int(await self._in_thread(sql, params, _ROWCOUNT))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._pending.append((sql, rows, True))

    async def defer(self, sql: str, params: Sequence[Any]) -> None:
        self._pending.append((sql, params, False))

    async def flush(self) -> None:
        if self._pending:
            await self._in_thread("", (), _NOTHING)

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        rows: list[Sequence[Any]] = await self._in_thread(sql, params, _ROWS)
        return rows

    async def _in_thread(self, sql: str, params: Sequence[Any], want: int) -> Any:
        pending, self._pending = self._pending, []
        return await self._raw._execute(_run_batch, self._raw._conn, pending, sql, params, want)

    def time(self, moment: datetime) -> str:
        return sqlite_time(moment)


_NOTHING, _ROWCOUNT, _ROWS, _COMMIT = range(4)


def _run_batch(
    conn: sqlite3.Connection, pending: list[tuple[str, Sequence[Any], bool]], sql: str, params: Any, want: int
) -> Any:
    """In aiosqlite's thread: the queued statements, then the one whose result is wanted."""
    for queued_sql, queued_params, many in pending:
        if many:
            conn.executemany(queued_sql, queued_params)
        else:
            conn.execute(queued_sql, queued_params)
    if want == _NOTHING:
        return None
    if want == _COMMIT:
        conn.execute("COMMIT")
        return None
    cursor = conn.execute(sql, params)
    return cursor.rowcount if want == _ROWCOUNT else cursor.fetchall()


class PostgresConnection:
    dialect = "postgresql"

    def __init__(self, raw: asyncpg.Connection) -> None:
        self._raw = raw
        self._transaction: Any = None

    async def begin(self) -> None:
        self._transaction = self._raw.transaction()
        await self._transaction.start()

    async def commit(self) -> None:
        transaction, self._transaction = self._transaction, None
        await transaction.commit()

    async def rollback(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            await transaction.rollback()

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        status: str = await self._raw.execute(sql, *params)  # e.g. "INSERT 0 1", "UPDATE 3"
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._raw.executemany(sql, rows)

    async def defer(self, sql: str, params: Sequence[Any]) -> None:
        await self._raw.execute(sql, *params)  # asyncpg runs on the event loop: no hop to save

    async def flush(self) -> None:
        return None

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        return list(await self._raw.fetch(sql, *params))

    def time(self, moment: datetime) -> datetime:
        return moment


def driver_connection(dialect: str, raw: Any) -> DriverConnection:
    return SqliteConnection(raw) if dialect == "sqlite" else PostgresConnection(raw)


def portable_sql(dialect: str, sql: str) -> str:
    """SQL written with "?" placeholders, as the driver wants it (PostgreSQL: $1, $2, ...)."""
    if dialect == "sqlite":
        return sql
    parts = sql.split("?")
    return "".join(part + (f"${n}" if n < len(parts) else "") for n, part in enumerate(parts, start=1))


def sqlite_time(moment: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores (fixed width, so it sorts), in UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def utc_from_db(value: str | datetime) -> datetime:
    """A timestamp read on the driver: SQLite text or an asyncpg datetime, as aware UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


#: Driver errors that mean a row broke a constraint.
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.IntegrityError,
    asyncpg.IntegrityConstraintViolationError,
)

_TRANSIENT_ASYNCPG: tuple[type[Exception], ...] = (
    asyncpg.InterfaceError,  # includes a closed or broken connection
    asyncpg.InternalClientError,  # e.g. a protocol left mid-operation by a server-side disconnect
    asyncpg.PostgresConnectionError,
    asyncpg.TransactionRollbackError,  # deadlock, serialization failure
    asyncpg.exceptions.OperatorInterventionError,  # server shutting down, query cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
)
# sqlite3.OperationalError also covers SQL mistakes ("no such table"), which are bugs, not outages.
_TRANSIENT_SQLITE_MESSAGES = ("locked", "busy", "disk i/o", "unable to open")


def is_transient(exc: BaseException) -> bool:
    """True for driver errors after which trying again later may succeed."""
    if isinstance(exc, sqlite3.OperationalError):
        return any(text in str(exc).lower() for text in _TRANSIENT_SQLITE_MESSAGES)
    return isinstance(exc, (*_TRANSIENT_ASYNCPG, OSError, TimeoutError))
