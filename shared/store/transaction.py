"""Writes: one `Transaction` per unit of work, created by `Store.transaction()`.

Everything done through one Transaction commits or rolls back together: resource versions,
their index rows, outbox events (transactional outbox), inbox claims, projections, and whatever
a service does to its own tables through `connection`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.errors import Conflict, Gone, InvalidInput, NotFound, PreconditionFailed
from shared.fhir.search_params import SearchParam
from shared.store.content import canonical_document, check_id, check_type, new_id, next_timestamp, to_json
from shared.store.driver import DriverConnection, utc_from_db
from shared.store.engine import translated_errors
from shared.store.index_writer import index_writer
from shared.store.records import StoredResource
from shared.store.statements import Statements
from shared.store.versions import VersionStatements


class _Current(NamedTuple):
    version_id: int
    last_updated: datetime
    deleted: bool


class Transaction:
    """A write transaction.

    `connection` is a SQLAlchemy connection inside this same transaction, for a service's own
    tables; do not commit or roll it back yourself. To read rows the store wrote in this
    transaction through it, get it from `await sql_connection()`. A transaction serves one task
    at a time.
    """

    def __init__(
        self,
        connection: AsyncConnection,
        db: DriverConnection,
        statements: Statements,
        params_for: Callable[[str], Sequence[SearchParam]],
        versions: VersionStatements | None = None,
    ) -> None:
        self.connection = connection
        self.dialect = db.dialect
        self._db = db
        self._sql = statements
        self._params_for = params_for
        self._versions = versions or VersionStatements(db.dialect)
        #: True once an outbox row was added: the store wakes the relay after commit.
        self.outbox_added = False

    async def sql_connection(self) -> AsyncConnection:
        """`connection`, after the store's queued writes ran: use this one to read rows this
        transaction wrote (the store queues writes whose result it does not need)."""
        with translated_errors("flush"):
            await self._db.flush()
        return self.connection

    # --- resources ------------------------------------------------------------------------------

    async def create(self, resource: dict[str, Any], *, id: str | None = None) -> StoredResource:
        """Store version 1. Raises Conflict if a resource with this id exists (or existed)."""
        resource_type = check_type(resource.get("resourceType"))
        chosen = id if id is not None else resource.get("id")
        resource_id = check_id(new_id() if chosen is None else chosen)
        with translated_errors(f"create {resource_type}/{resource_id}"):
            stored = await self._insert_first_version(resource, resource_type, resource_id)
        if stored is None:
            raise Conflict(f"{resource_type}/{resource_id} already exists")
        return stored

    async def update(
        self, resource: dict[str, Any], *, if_match: int | None = None
    ) -> tuple[StoredResource, bool]:
        """Store the next version; returns (version, created).

        created is True for update-as-create and for re-creating a deleted resource (FHIR
        answers both with 201). `if_match` must equal the current version, deleted or not.
        """
        resource_type = check_type(resource.get("resourceType"))
        if not resource.get("id"):
            raise InvalidInput("An update needs the resource id", expression=["id"])
        resource_id = check_id(resource["id"])
        label = f"{resource_type}/{resource_id}"
        with translated_errors(f"update {label}"):
            for _attempt in range(2):
                current = await self._current(resource_type, resource_id)
                _check_version(label, current, if_match)
                if current is None:
                    created = await self._insert_first_version(resource, resource_type, resource_id)
                    if created is not None:
                        return created, True
                    continue  # another transaction created it since we looked: update that one
                at = next_timestamp(current.last_updated)
                stored, doc = _new_version(resource, resource_type, resource_id, current.version_id + 1, at)
                await self._write_next_version(stored)
                await self._delete_index_rows(resource_type, resource_id)
                await self._insert_index_rows(resource_type, resource_id, doc)
                return stored, current.deleted
        raise Conflict(f"{label} changed concurrently; retry")

    async def delete(
        self, resource_type: str, id: str, *, if_match: int | None = None
    ) -> StoredResource | None:
        """Record a deletion as a new version; None if absent or already deleted (idempotent)."""
        label = f"{resource_type}/{id}"
        with translated_errors(f"delete {label}"):
            current = await self._current(resource_type, id)
            if current is None or current.deleted:
                return None
            _check_version(label, current, if_match)
            at = next_timestamp(current.last_updated)
            stored = StoredResource(resource_type, id, current.version_id + 1, at, True, b"")
            await self._write_next_version(stored)
            await self._delete_index_rows(resource_type, id)
        return stored

    async def read(self, resource_type: str, id: str) -> StoredResource:
        """The current version, locked until commit on PostgreSQL (SQLite's writer holds the
        whole database already), so read-modify-write needs no If-Match of its own."""
        with translated_errors(f"read {resource_type}/{id}"):
            rows = await self._db.fetch(self._sql.read_for_update, (resource_type, id))
        if not rows:
            raise NotFound(f"{resource_type}/{id} not found")
        version_id, last_updated, deleted, content = rows[0]
        if deleted:
            raise Gone(f"{resource_type}/{id} was deleted (version {version_id})")
        return StoredResource(resource_type, id, version_id, utc_from_db(last_updated), False, bytes(content))

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource:
        """One version, as this transaction sees it (including its own writes)."""
        with translated_errors(f"vread {resource_type}/{id}"):
            rows = await self._db.fetch(self._sql.vread, (resource_type, id, version_id))
        if not rows:
            raise NotFound(f"{resource_type}/{id} has no version {version_id}")
        vid, last_updated, deleted, content = rows[0]
        if deleted:
            raise Gone(f"{resource_type}/{id} version {version_id} is a deletion")
        return StoredResource(resource_type, id, vid, utc_from_db(last_updated), False, bytes(content))

    # --- conditional create ---------------------------------------------------------------------

    async def lock_conditional_key(self, resource_type: str, criteria_hash: str, criteria: str) -> None:
        """Hold the key of one conditional-create criteria until this transaction ends.

        The key's primary key is what makes concurrent conditional creates safe
        (http://hl7.org/fhir/R4/http.html#ccreate): a second transaction with the same criteria
        waits here (PostgreSQL row lock; SQLite's single writer) until the first commits, and
        only then searches, so it sees the first one's resource. A key left behind by a resource
        that was since changed or deleted does no harm: the search after the lock decides.
        """
        now = self._db.time(datetime.now(UTC))
        with translated_errors(f"conditional key {resource_type}"):
            await self._db.execute(
                self._versions.lock_conditional_key, (resource_type, criteria_hash, criteria, now)
            )

    async def set_conditional_key(self, resource_type: str, criteria_hash: str, resource_id: str) -> None:
        """Record which resource the key's criteria created (for diagnosis; the search decides)."""
        with translated_errors(f"conditional key {resource_type}"):
            await self._db.execute(
                self._versions.set_conditional_key, (resource_id, resource_type, criteria_hash)
            )

    # --- events and projections -----------------------------------------------------------------

    async def add_outbox(
        self,
        *,
        event_id: str,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Queue an event; it becomes visible to the relay only if this transaction commits.

        Events with the same key (a patient's id) leave in the order their transactions commit.
        """
        if self._sql.lock_outbox_key is not None and key is not None:
            # seq is drawn at insert but transactions commit in any order, so on PostgreSQL a
            # later seq can become visible first and the relay would publish one patient's
            # events out of order. Holding a per-key lock until commit makes seq order and
            # commit order agree for each key; transactions with other keys do not wait.
            with translated_errors(f"outbox event {event_id}"):
                await self._db.fetch(self._sql.lock_outbox_key, (_lock_id(key),))
        # latin-1 maps every byte to one code point and back, so any header value survives JSON
        # while ASCII ones (traceparent) stay readable in the table.
        encoded_headers = orjson.dumps([[name, value.decode("latin-1")] for name, value in headers])
        now = self._db.time(datetime.now(UTC))
        with translated_errors(f"outbox event {event_id}"):
            await self._db.defer(self._sql.insert_outbox, (event_id, topic, key, value, encoded_headers, now))
        self.outbox_added = True

    async def claim_event(self, consumer: str, event_id: str) -> bool:
        """True the first time `consumer` claims `event_id`; False if it already processed it.

        Call it in the same transaction as the handler's effect, so the effect and the claim
        commit (or roll back) together.
        """
        now = self._db.time(datetime.now(UTC))
        with translated_errors(f"inbox claim {consumer}/{event_id}"):
            return await self._db.execute(self._sql.insert_inbox, (consumer, event_id, now)) == 1

    async def put_projection(self, name: str, key: str, version: int, data: bytes) -> bool:
        """Store `data` at `version` unless an equal or newer version is already there.

        Events arrive at least once and a replay can bring old ones back: the version check
        makes the projection converge on the owner's latest state whatever the order.
        """
        now = self._db.time(datetime.now(UTC))
        with translated_errors(f"projection {name}/{key}"):
            return await self._db.execute(self._sql.upsert_projection, (name, key, version, data, now)) == 1

    # --- helpers --------------------------------------------------------------------------------

    async def _insert_first_version(
        self, resource: dict[str, Any], resource_type: str, resource_id: str
    ) -> StoredResource | None:
        """Insert version 1; None if the id is taken."""
        stored, doc = _new_version(resource, resource_type, resource_id, 1, next_timestamp(None))
        if await self._db.execute(self._sql.insert_resource, self._version_row(stored)) != 1:
            return None
        await self._db.defer(self._sql.insert_history, self._version_row(stored))
        await self._insert_index_rows(resource_type, resource_id, doc)
        return stored

    async def _current(self, resource_type: str, resource_id: str) -> _Current | None:
        rows = await self._db.fetch(self._sql.current_version, (resource_type, resource_id))
        if not rows:
            return None
        version_id, last_updated, deleted = rows[0]
        return _Current(version_id, utc_from_db(last_updated), bool(deleted))

    async def _write_next_version(self, stored: StoredResource) -> None:
        at = self._db.time(stored.last_updated)
        params = (stored.version_id, at, stored.deleted, stored.content, stored.resource_type, stored.id)
        await self._db.defer(self._sql.update_resource, params)
        await self._db.defer(self._sql.insert_history, self._version_row(stored))

    def _version_row(self, stored: StoredResource) -> tuple[Any, ...]:
        at = self._db.time(stored.last_updated)
        return (stored.resource_type, stored.id, stored.version_id, at, stored.deleted, stored.content)

    async def _insert_index_rows(self, resource_type: str, resource_id: str, doc: dict[str, Any]) -> None:
        params = self._params_for(resource_type)
        await index_writer(self.dialect).insert(self._db, resource_type, resource_id, doc, params)

    async def _delete_index_rows(self, resource_type: str, resource_id: str) -> None:
        params = self._params_for(resource_type)
        await index_writer(self.dialect).clear(self._db, resource_type, resource_id, params)


def _new_version(
    resource: dict[str, Any], resource_type: str, resource_id: str, version_id: int, at: datetime
) -> tuple[StoredResource, dict[str, Any]]:
    doc = canonical_document(resource, resource_id, version_id, at)
    return StoredResource(resource_type, resource_id, version_id, at, False, to_json(doc)), doc


def _lock_id(key: bytes) -> int:
    """A signed 64-bit advisory-lock id for an outbox key."""
    return int.from_bytes(
        hashlib.blake2b(key, digest_size=8, person=b"cb.outbox").digest(), "big", signed=True
    )


def _check_version(label: str, current: _Current | None, if_match: int | None) -> None:
    if if_match is None:
        return
    if current is None:
        raise PreconditionFailed(f"{label} does not exist, so it cannot be at version {if_match}")
    if current.version_id != if_match:
        raise PreconditionFailed(f"{label} is at version {current.version_id}, not {if_match}")
