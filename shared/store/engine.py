"""Engine construction and error translation for the two supported databases.

SQLite specifics: pysqlite's own implicit BEGIN is switched off (isolation_level=None) and the
store emits BEGIN itself, so that a write transaction can start with BEGIN IMMEDIATE (takes the
write lock up front; a deferred BEGIN that later upgrades can fail with "database is locked"
without waiting for busy_timeout). Connections opened for the fast read path skip BEGIN: a single
SELECT is consistent on its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.errors import Conflict, DependencyUnavailable

#: Execution option marking a write transaction (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "carebridge_write"
#: Execution option marking a connection that only runs single SELECTs (SQLite: no BEGIN).
READ_OPTION = "carebridge_read"

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",  # readers never block the writer, nor the writer readers
    "PRAGMA synchronous=NORMAL",  # durable at checkpoints; WAL keeps the file consistent
    "PRAGMA busy_timeout=10000",  # other processes' writers: wait, don't fail
    "PRAGMA foreign_keys=ON",
)

# PostgreSQL SQLSTATEs for a transaction the server aborted and that may succeed if retried.
_RETRIABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected


def build_engine(database_url: str, *, echo: bool = False) -> AsyncEngine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or "mode=memory" in database:
            raise ValueError(
                "the store needs an SQLite file: an in-memory database is private to one connection"
            )
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo)
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        event.listen(engine.sync_engine, "begin", _begin_sqlite_transaction)
        return engine
    if url.get_backend_name() == "postgresql":
        # pre_ping costs one round trip per checkout; without it, every pooled connection
        # fails one transaction after a database restart or failover.
        return create_async_engine(url, echo=echo, pool_pre_ping=True)
    raise ValueError(
        f"unsupported database {url.get_backend_name()!r}: use sqlite+aiosqlite or postgresql+asyncpg"
    )


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    options = connection.get_execution_options()
    if options.get(READ_OPTION):
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")


@contextlib.contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Database failures as CareBridge errors: unreachable or busy -> DependencyUnavailable
    (retriable), a violated constraint -> Conflict. Anything else passes through."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(f"{what}: {_first_line(exc.orig)}") from exc
    except (OperationalError, InterfaceError) as exc:
        raise DependencyUnavailable(f"{what}: database unavailable ({_first_line(exc.orig)})") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated or _sqlstate(exc) in _RETRIABLE_SQLSTATES:
            raise DependencyUnavailable(f"{what}: {_first_line(exc.orig)}; retry") from exc
        raise
    except (OSError, TimeoutError) as exc:  # connection refused, DNS, network timeouts
        raise DependencyUnavailable(f"{what}: database unreachable ({exc})") from exc


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def _first_line(error: BaseException | None) -> str:
    return str(error).split("\n", 1)[0] if error is not None else "unknown error"
