"""`Store`: one service's database of FHIR resources, events and projections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import orjson
from sqlalchemy import MetaData, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.errors import DependencyUnavailable, Gone, NotFound
from shared.fhir.search_params import SEARCH_PARAMETERS, SearchParam
from shared.store.content import next_timestamp
from shared.store.engine import READ_OPTION, WRITE_OPTION, build_engine, translated_errors
from shared.store.migrations import Migration, apply_pending, core_migrations, ordered
from shared.store.readers import ReadPool
from shared.store.records import OutboxRecord, Projection, StoredResource
from shared.store.schema import CoreTables, sqlite_text_to_utc
from shared.store.search import search_query
from shared.store.statements import WriteStatements
from shared.store.transaction import Transaction

log = logging.getLogger(__name__)

_COLUMNS = "version_id, last_updated, deleted, content"
_READ_SQL = f"SELECT {_COLUMNS} FROM resources WHERE resource_type = ? AND id = ?"
_VREAD_SQL = f"SELECT {_COLUMNS} FROM resource_history WHERE resource_type = ? AND id = ? AND version_id = ?"
_HISTORY_SQL = (
    f"SELECT {_COLUMNS} FROM resource_history WHERE resource_type = ? AND id = ? ORDER BY version_id DESC"
)

#: Bound on the IN list of one UPDATE when marking outbox rows (SQLite caps bound parameters).
_MARK_CHUNK = 500


class Store:
    """Resources with full history and search indexes, a transactional outbox, an inbox for
    idempotent consumers and projections, on SQLite (aiosqlite) or PostgreSQL (asyncpg).

    Open with `await Store.open(url)`; write inside `async with store.transaction() as txn`.
    """

    def __init__(
        self, engine: AsyncEngine, search_params: Mapping[str, Sequence[SearchParam]], read_connections: int
    ) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        self.metadata = MetaData()
        self.tables = CoreTables(self.metadata)
        #: Called (synchronously) after a committed transaction added outbox rows.
        self.outbox_listener: Callable[[], None] | None = None
        #: (component, version) of the migrations this `open` applied.
        self.applied_migrations: list[tuple[str, int]] = []
        self._search_params = search_params
        self._statements = WriteStatements(self.tables, self.dialect)
        self._writes = engine.execution_options(**{WRITE_OPTION: True})
        # Single-statement queries: no BEGIN on SQLite, no transaction round trips on PostgreSQL.
        self._queries = (
            engine.execution_options(**{READ_OPTION: True})
            if self.dialect == "sqlite"
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._readers = ReadPool(engine, read_connections)
        # SQLite has one writer per database: queue this process's writers here rather than
        # have them poll busy_timeout; other processes still wait on busy_timeout.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None
        self._in_transaction: ContextVar[bool] = ContextVar(f"store_{id(self)}_in_transaction", default=False)
        placeholder = _sqlite_placeholders if self.dialect == "sqlite" else _postgres_placeholders
        self._read_sql, self._vread_sql, self._history_sql = map(
            placeholder, (_READ_SQL, _VREAD_SQL, _HISTORY_SQL)
        )

    @classmethod
    async def open(
        cls,
        database_url: str,
        *,
        extra_migrations: Sequence[Migration] = (),
        search_params: Mapping[str, Sequence[SearchParam]] = SEARCH_PARAMETERS,
        echo: bool = False,
        read_connections: int = 4,
    ) -> Store:
        """Connect and bring the schema up to date (core migrations, then `extra_migrations`)."""
        engine = build_engine(database_url, echo=echo)
        store = cls(engine, search_params, read_connections)
        try:
            migrations = ordered(core_migrations(store.tables), extra_migrations)
            async with store._writer_slot():
                with translated_errors("migrate"):
                    async with store._writes.begin() as connection:
                        store.applied_migrations = await apply_pending(connection, store.tables, migrations)
        except BaseException:
            await engine.dispose()
            raise
        if store.applied_migrations:
            log.info("store migrations applied: %s", store.applied_migrations)
        return store

    async def close(self) -> None:
        await self._readers.close()
        await self.engine.dispose()

    async def ping(self) -> None:
        """Raise DependencyUnavailable unless the database answers within 5 seconds."""
        try:
            async with asyncio.timeout(5), self._queries.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:
            raise DependencyUnavailable(f"database unavailable: {exc}") from exc

    # --- writes ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A write transaction: commits on normal exit, rolls back if the block raises.

        Not re-entrant: on SQLite a nested transaction would wait for itself.
        """
        if self._in_transaction.get():
            raise RuntimeError("store.transaction() is already active in this task")
        async with self._writer_slot():
            with translated_errors("begin transaction"):
                connection = await self._writes.connect()
            marker = self._in_transaction.set(True)
            try:
                with translated_errors("begin transaction"):
                    await connection.begin()
                txn = Transaction(connection, self._statements, self._params_for)
                yield txn
                with translated_errors("commit"):
                    await connection.commit()
            finally:
                self._in_transaction.reset(marker)
                # Closing rolls back whatever did not commit.
                await connection.close()
        if txn.outbox_added and self.outbox_listener is not None:
            try:
                self.outbox_listener()
            except Exception:  # the relay's wake-up must never fail a committed write
                log.exception("outbox listener failed")

    def _writer_slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._write_lock if self._write_lock is not None else contextlib.nullcontext()

    def _params_for(self, resource_type: str) -> Sequence[SearchParam]:
        return self._search_params.get(resource_type, ())

    # --- resource reads (raw driver: the hot path) ----------------------------------------------

    async def read(self, resource_type: str, id: str) -> StoredResource:
        """The current version. NotFound if it never existed, Gone if it is deleted."""
        rows = await self._readers.fetch(self._read_sql, (resource_type, id))
        if not rows:
            raise NotFound(f"{resource_type}/{id} not found")
        stored = _stored(resource_type, id, rows[0])
        if stored.deleted:
            raise Gone(f"{resource_type}/{id} was deleted (version {stored.version_id})")
        return stored

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource:
        """One version. NotFound if there is no such version, Gone if that version is a deletion."""
        rows = await self._readers.fetch(self._vread_sql, (resource_type, id, version_id))
        if not rows:
            raise NotFound(f"{resource_type}/{id} has no version {version_id}")
        stored = _stored(resource_type, id, rows[0])
        if stored.deleted:
            raise Gone(f"{resource_type}/{id} version {version_id} is a deletion")
        return stored

    async def history(self, resource_type: str, id: str) -> list[StoredResource]:
        """Every version, newest first, deletions included. NotFound if it never existed."""
        rows = await self._readers.fetch(self._history_sql, (resource_type, id))
        if not rows:
            raise NotFound(f"{resource_type}/{id} not found")
        return [_stored(resource_type, id, row) for row in rows]

    async def search(
        self,
        resource_type: str,
        *,
        token: dict[str, tuple[str | None, str]] | None = None,
        string: dict[str, str] | None = None,
        limit: int = 50,
    ) -> list[StoredResource]:
        """See `search.search_query` for the matching rules."""
        query = search_query(
            self.tables,
            self._params_for(resource_type),
            resource_type,
            token=token,
            string=string,
            limit=limit,
        )
        with translated_errors(f"search {resource_type}"):
            async with self._queries.connect() as connection:
                rows = (await connection.execute(query)).all()
        return [StoredResource(resource_type, row[0], row[1], row[2], False, row[4]) for row in rows]

    # --- outbox, inbox, projections --------------------------------------------------------------

    async def outbox_pending(self, limit: int) -> list[OutboxRecord]:
        """Unpublished events in ascending seq."""
        o = self.tables.outbox
        query = (
            select(o.c.seq, o.c.event_id, o.c.topic, o.c.key, o.c.value, o.c.headers, o.c.created_at)
            .where(o.c.published_at.is_(None))
            .order_by(o.c.seq)
            .limit(limit)
        )
        with translated_errors("outbox read"):
            async with self._queries.connect() as connection:
                rows = (await connection.execute(query)).all()
        return [
            OutboxRecord(
                seq=row.seq,
                event_id=row.event_id,
                topic=row.topic,
                key=row.key,
                value=row.value,
                headers=[(name, value.encode("latin-1")) for name, value in orjson.loads(row.headers)],
                created_at=row.created_at,
            )
            for row in rows
        ]

    async def outbox_mark_published(self, seqs: Sequence[int]) -> None:
        o = self.tables.outbox
        if not seqs:
            return
        now = next_timestamp(None)
        async with self._writer_slot():
            with translated_errors("outbox mark published"):
                async with self._writes.begin() as connection:
                    for start in range(0, len(seqs), _MARK_CHUNK):
                        chunk = list(seqs[start : start + _MARK_CHUNK])
                        await connection.execute(
                            update(o)
                            .where(o.c.seq.in_(chunk), o.c.published_at.is_(None))
                            .values(published_at=now)
                        )

    async def outbox_pending_count(self) -> int:
        o = self.tables.outbox
        query = select(func.count()).select_from(o).where(o.c.published_at.is_(None))
        with translated_errors("outbox count"):
            async with self._queries.connect() as connection:
                return int((await connection.execute(query)).scalar_one())

    async def inbox_contains(self, consumer: str, event_id: str) -> bool:
        i = self.tables.inbox
        query = select(i.c.event_id).where(i.c.consumer == consumer, i.c.event_id == event_id)
        with translated_errors("inbox read"):
            async with self._queries.connect() as connection:
                return (await connection.execute(query)).first() is not None

    async def get_projection(self, name: str, key: str) -> Projection | None:
        p = self.tables.projections
        query = select(p.c.version, p.c.data, p.c.change_count, p.c.updated_at).where(
            p.c.name == name, p.c.key == key
        )
        with translated_errors("projection read"):
            async with self._queries.connect() as connection:
                row = (await connection.execute(query)).first()
        if row is None:
            return None
        return Projection(name, key, row.version, row.data, row.change_count, row.updated_at)


def _stored(resource_type: str, id: str, row: Sequence[Any]) -> StoredResource:
    version_id, last_updated, deleted, content = row
    return StoredResource(
        resource_type, id, version_id, sqlite_text_to_utc(last_updated), bool(deleted), bytes(content)
    )


def _sqlite_placeholders(sql: str) -> str:
    return sql


def _postgres_placeholders(sql: str) -> str:
    parts = sql.split("?")
    return "".join(part + (f"${n}" if n < len(parts) else "") for n, part in enumerate(parts, start=1))
