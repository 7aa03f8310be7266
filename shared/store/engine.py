"""Engine construction and error translation for the two supported databases.

SQLite specifics: pysqlite's own implicit BEGIN is switched off (isolation_level=None) and BEGIN
is emitted explicitly, so that a write transaction can start with BEGIN IMMEDIATE (takes the
write lock up front; a deferred BEGIN that later upgrades can fail with "database is locked"
without waiting for busy_timeout). Connections marked NO_BEGIN_OPTION get no BEGIN from
SQLAlchemy: single-statement reads, and the store's transactions, which begin on the driver.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.errors import Conflict, DependencyUnavailable
from shared.store.driver import INTEGRITY_ERRORS, is_transient

#: Execution option: SQLAlchemy transactions on this connection write (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "carebridge_write"
#: Execution option: SQLAlchemy emits no BEGIN on SQLite, because the connection runs single
#: statements (reads) or the store controls the transaction on the driver (driver.py).
NO_BEGIN_OPTION = "carebridge_no_begin"

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
        # No pool_pre_ping: it costs about 0.4 ms per checkout here, as much as a whole write.
        # Stale connections after a restart are handled where it is safe to retry (the start of
        # a store transaction, reads, ping) and SQLAlchemy drops its whole pool on the first
        # disconnect it sees.
        return create_async_engine(url, echo=echo)
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
    if options.get(NO_BEGIN_OPTION):
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")


@contextlib.contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Database failures as CareBridge errors, from SQLAlchemy or straight from the driver:
    unreachable or busy -> DependencyUnavailable (retriable), a violated constraint -> Conflict.
    Anything else (a bug) passes through."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(f"{what}: {_first_line(exc.orig)}") from exc
    except DBAPIError as exc:
        if _transient_dbapi_error(exc):
            raise DependencyUnavailable(f"{what}: database unavailable ({_first_line(exc.orig)})") from exc
        raise
    except INTEGRITY_ERRORS as exc:
        raise Conflict(f"{what}: {_first_line(exc)}") from exc
    except Exception as exc:
        if is_transient(exc):
            raise DependencyUnavailable(f"{what}: database unavailable ({_first_line(exc)})") from exc
        raise


def _transient_dbapi_error(exc: DBAPIError) -> bool:
    # SQLAlchemy's InterfaceError is a connection-level failure on both adapters.
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return True
    state = getattr(exc.orig, "sqlstate", None) or ""
    # 08 connection exception, 53 insufficient resources, 57 operator intervention.
    if state in _RETRIABLE_SQLSTATES or state[:2] in ("08", "53", "57"):
        return True
    # The asyncpg adapter chains the driver's own exception; aiosqlite's is `orig` itself.
    orig = exc.orig
    if orig is None:
        return False
    return is_transient(orig) or (orig.__cause__ is not None and is_transient(orig.__cause__))


def _first_line(error: BaseException | None) -> str:
    return str(error).split("\n", 1)[0] if error is not None else "unknown error"
