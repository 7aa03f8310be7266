"""`Store`: one service's database of FHIR resources, events and projections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import MetaData, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.errors import DependencyUnavailable, Gone, NotFound
from shared.fhir.search_params import SEARCH_PARAMETERS, SearchParam
from shared.store.content import next_timestamp
from shared.store.driver import DriverConnection, driver_connection, sqlite_time, utc_from_db
from shared.store.engine import NO_BEGIN_OPTION, WRITE_OPTION, build_engine, translated_errors
from shared.store.migrations import Migration, apply_pending, core_migrations, ordered
from shared.store.readers import ReadPool
from shared.store.records import OutboxRecord, Projection, StoredResource
from shared.store.schema import CoreTables
from shared.store.search import search_query
from shared.store.statements import Statements
from shared.store.transaction import Transaction
from shared.store.versions import MAX_HISTORY_PAGE, HistoryCursor, VersionStatements, rest_migrations

log = logging.getLogger(__name__)

#: Bound on the IN list of one UPDATE when marking outbox rows (SQLite caps bound parameters).
_MARK_CHUNK = 500
#: PostgreSQL advisory lock held by the replica whose relay publishes the outbox.
OUTBOX_RELAY_LOCK_KEY = 0x43424F5554424F58  # "CBOUTBOX"


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
        self._sql = Statements(self.dialect)
        self._versions = VersionStatements(self.dialect)
        # SQLAlchemy transactions that write: migrations, marking the outbox.
        self._writes = engine.execution_options(**{WRITE_OPTION: True})
        # Connections on which SQLAlchemy starts no transaction: single-statement queries, and
        # the store's transactions, which begin and commit on the driver (see driver.py).
        self._direct = (
            engine.execution_options(**{NO_BEGIN_OPTION: True})
            if self.dialect == "sqlite"
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._readers = ReadPool(self._direct, read_connections)
        # SQLite has one writer per database: queue this process's writers here rather than
        # have them poll busy_timeout; other processes still wait on busy_timeout.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None
        self._in_transaction: ContextVar[bool] = ContextVar(f"store_{id(self)}_in_transaction", default=False)

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
            core = core_migrations(store.tables, search_params)
            migrations = ordered(core, [*rest_migrations(), *extra_migrations])
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
        """Raise DependencyUnavailable unless the database answers within 5 seconds.

        Tried twice: the first attempt may land on a pooled connection a restart killed.
        """
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(5), self._direct.connect() as connection:
                    await connection.execute(text("SELECT 1"))
                return
            except Exception as exc:
                if attempt == 2:
                    raise DependencyUnavailable(f"database unavailable: {exc}") from exc

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A read connection (SQLAlchemy Core, autocommit) for query builders outside the store,
        such as the FHIR search engine; errors come back as store errors."""
        with translated_errors("read"):
            async with self._direct.connect() as connection:
                yield connection

    def params_for(self, resource_type: str) -> Sequence[SearchParam]:
        """The search parameters this store indexes for a resource type."""
        return self._params_for(resource_type)

    # --- writes ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A write transaction: commits on normal exit, rolls back if the block raises.

        Not re-entrant: on SQLite a nested transaction would wait for itself.
        """
        if self._in_transaction.get():
            raise RuntimeError("store.transaction() is already active in this task")
        async with self._writer_slot():
            marker = self._in_transaction.set(True)
            try:
                connection, db = await self._begin()
                try:
                    txn = Transaction(connection, db, self._sql, self._params_for, self._versions)
                    yield txn
                    with translated_errors("commit"):
                        await db.commit()
                except BaseException:
                    await _roll_back(connection, db)
                    raise
                finally:
                    await connection.close()
            finally:
                self._in_transaction.reset(marker)
        if txn.outbox_added and self.outbox_listener is not None:
            try:
                self.outbox_listener()
            except Exception:  # the relay's wake-up must never fail a committed write
                log.exception("outbox listener failed")

    async def _begin(self) -> tuple[AsyncConnection, DriverConnection]:
        """A connection with a transaction begun on the driver.

        On PostgreSQL a pooled connection may have died with a server restart (how that surfaces
        varies with the driver's state); nothing has happened yet at this point, so a first
        failure of any kind is retried once on a fresh connection. (SQLite connections do not go
        stale, and its failure here is a busy_timeout that already waited.)
        """
        for attempt in (1, 2):
            with translated_errors("begin transaction"):
                connection = await self._direct.connect()
                try:
                    raw = await connection.get_raw_connection()
                    db = driver_connection(self.dialect, raw.driver_connection)
                    await db.begin()
                    return connection, db
                except Exception as exc:
                    await _discard(connection)
                    if attempt == 2 or self.dialect == "sqlite":
                        raise
                    log.info("store: beginning a transaction failed (%s); retrying on a new connection", exc)
                except BaseException:
                    await _discard(connection)
                    raise
        raise AssertionError("unreachable")

    def _writer_slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._write_lock if self._write_lock is not None else contextlib.nullcontext()

    def _params_for(self, resource_type: str) -> Sequence[SearchParam]:
        return self._search_params.get(resource_type, ())

    # --- resource reads (raw driver: the hot path) ----------------------------------------------

    async def read(self, resource_type: str, id: str) -> StoredResource:
        """The current version. NotFound if it never existed, Gone if it is deleted."""
        rows = await self._readers.fetch(self._sql.read, (resource_type, id))
        if not rows:
            raise NotFound(f"{resource_type}/{id} not found")
        stored = _stored(resource_type, id, rows[0])
        if stored.deleted:
            raise Gone(f"{resource_type}/{id} was deleted (version {stored.version_id})")
        return stored

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource:
        """One version. NotFound if there is no such version, Gone if that version is a deletion."""
        rows = await self._readers.fetch(self._sql.vread, (resource_type, id, version_id))
        if not rows:
            raise NotFound(f"{resource_type}/{id} has no version {version_id}")
        stored = _stored(resource_type, id, rows[0])
        if stored.deleted:
            raise Gone(f"{resource_type}/{id} version {version_id} is a deletion")
        return stored

    async def history(self, resource_type: str, id: str) -> list[StoredResource]:
        """Every version, newest first, deletions included. NotFound if it never existed."""
        rows = await self._readers.fetch(self._sql.history, (resource_type, id))
        if not rows:
            raise NotFound(f"{resource_type}/{id} not found")
        return [_stored(resource_type, id, row) for row in rows]

    async def history_page(
        self,
        resource_type: str | None = None,
        id: str | None = None,
        *,
        since: datetime | None = None,
        cursor: HistoryCursor | None = None,
        count: int = 50,
    ) -> list[StoredResource]:
        """Versions newest first, deletions included: of one resource (type and id), of a type
        (type only) or of everything (neither); at or after `since`, strictly older than
        `cursor`, at most `count`. An unknown resource simply has no versions."""
        if id is not None and resource_type is None:
            raise ValueError("an instance history needs the resource type")
        sql = self._versions.history_page(resource_type, id, since is not None, cursor is not None)
        time = self._time
        params: list[Any] = [v for v in (resource_type, id) if v is not None]
        if since is not None:
            params.append(time(since))
        if cursor is not None:
            params += [time(cursor.last_updated), cursor.resource_type, cursor.id, cursor.version_id]
        # One over a page: the REST layer asks for one extra version to know if a next page exists.
        params.append(max(1, min(count, MAX_HISTORY_PAGE + 1)))
        rows = await self._readers.fetch(sql, params)
        return [_stored(row[0], row[1], row[2:]) for row in rows]

    def _time(self, moment: datetime) -> Any:
        return sqlite_time(moment) if self.dialect == "sqlite" else moment

    async def search(
        self,
        resource_type: str,
        *,
        token: dict[str, tuple[str | None, str]] | None = None,
        string: dict[str, str] | None = None,
        limit: int = 50,
        connection: AsyncConnection | None = None,
    ) -> list[StoredResource]:
        """See `search.search_query` for the matching rules. `connection`: search inside that
        connection's transaction (e.g. `tx.connection`, which sees the transaction's own writes)."""
        query = search_query(
            self.tables,
            self._params_for(resource_type),
            resource_type,
            token=token,
            string=string,
            limit=limit,
        )
        with translated_errors(f"search {resource_type}"):
            if connection is not None:
                rows = (await connection.execute(query)).all()
            else:
                async with self._direct.connect() as own:
                    rows = (await own.execute(query)).all()
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
            async with self._direct.connect() as connection:
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

    async def outbox_prune(self, published_before: datetime) -> int:
        """Delete outbox rows published before `published_before`; returns how many."""
        o = self.tables.outbox
        async with self._writer_slot():
            with translated_errors("outbox prune"):
                async with self._writes.begin() as connection:
                    result = await connection.execute(
                        delete(o).where(o.c.published_at.is_not(None), o.c.published_at < published_before)
                    )
        return int(result.rowcount or 0)

    @contextlib.asynccontextmanager
    async def outbox_leadership(self, poll_interval_s: float = 1.0) -> AsyncIterator[None]:
        """Held by the one relay that may publish this database's outbox.

        Two relays on one outbox would both publish every row (and out of order). On PostgreSQL
        the first replica to take a session advisory lock publishes; the others wait here and
        take over when its connection goes away. On SQLite a database belongs to one process.
        """
        if self.dialect != "postgresql":
            yield
            return
        lock = text("SELECT pg_try_advisory_lock(:k)")
        async with contextlib.AsyncExitStack() as stack:
            with translated_errors("outbox leadership"):
                connection = await stack.enter_async_context(self._direct.connect())
                # Polled: the holder is another process, so there is no event to wait on.
                while not (await connection.execute(lock, {"k": OUTBOX_RELAY_LOCK_KEY})).scalar_one():  # noqa: ASYNC110
                    await asyncio.sleep(poll_interval_s)
            try:
                yield
            finally:
                unlock = text("SELECT pg_advisory_unlock(:k)")
                with contextlib.suppress(Exception):
                    await connection.execute(unlock, {"k": OUTBOX_RELAY_LOCK_KEY})

    async def outbox_pending_count(self) -> int:
        o = self.tables.outbox
        query = select(func.count()).select_from(o).where(o.c.published_at.is_(None))
        with translated_errors("outbox count"):
            async with self._direct.connect() as connection:
                return int((await connection.execute(query)).scalar_one())

    async def inbox_contains(self, consumer: str, event_id: str) -> bool:
        i = self.tables.inbox
        query = select(i.c.event_id).where(i.c.consumer == consumer, i.c.event_id == event_id)
        with translated_errors("inbox read"):
            async with self._direct.connect() as connection:
                return (await connection.execute(query)).first() is not None

    async def get_projection(self, name: str, key: str) -> Projection | None:
        p = self.tables.projections
        query = select(p.c.version, p.c.data, p.c.change_count, p.c.updated_at).where(
            p.c.name == name, p.c.key == key
        )
        with translated_errors("projection read"):
            async with self._direct.connect() as connection:
                row = (await connection.execute(query)).first()
        if row is None:
            return None
        return Projection(name, key, row.version, row.data, row.change_count, row.updated_at)


def _stored(resource_type: str, id: str, row: Sequence[Any]) -> StoredResource:
    version_id, last_updated, deleted, content = row
    return StoredResource(
        resource_type, id, version_id, utc_from_db(last_updated), bool(deleted), bytes(content)
    )


async def _roll_back(connection: AsyncConnection, db: DriverConnection) -> None:
    try:
        await db.rollback()
    except Exception:
        # The connection is in an unknown state (it may be what failed): never reuse it.
        log.warning("rollback failed; discarding the connection", exc_info=True)
        with contextlib.suppress(Exception):
            await connection.invalidate()


async def _discard(connection: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await connection.invalidate()
    with contextlib.suppress(Exception):
        await connection.close()
