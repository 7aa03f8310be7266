"""Writes: one `Transaction` per unit of work, created by `Store.transaction()`.

Everything done through one Transaction commits or rolls back together: resource versions,
their index rows, outbox events (transactional outbox), inbox claims and projections.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.errors import Conflict, Gone, InvalidInput, NotFound, PreconditionFailed
from shared.fhir.search_params import SearchParam
from shared.store.content import canonical_document, check_id, check_type, new_id, next_timestamp, to_json
from shared.store.engine import translated_errors
from shared.store.indexing import IndexRows, extract_index_rows
from shared.store.records import StoredResource
from shared.store.statements import INDEX_KINDS, WriteStatements


class _Current(NamedTuple):
    version_id: int
    last_updated: datetime
    deleted: bool


class Transaction:
    """A write transaction. `connection` is there for a service's own tables."""

    def __init__(
        self,
        connection: AsyncConnection,
        statements: WriteStatements,
        params_for: Callable[[str], Sequence[SearchParam]],
    ) -> None:
        self.connection = connection
        self.dialect = connection.dialect.name
        self._s = statements
        self._t = statements.tables
        self._params_for = params_for
        #: True once an outbox row was added: the store wakes the relay after commit.
        self.outbox_added = False

    # --- resources ------------------------------------------------------------------------------

    async def create(self, resource: dict[str, Any], *, id: str | None = None) -> StoredResource:
        """Store version 1. Raises Conflict if a resource with this id exists (or existed)."""
        resource_type = check_type(resource.get("resourceType"))
        chosen = id if id is not None else resource.get("id")
        resource_id = check_id(new_id() if chosen is None else chosen)
        stored, doc = self._version(resource, resource_type, resource_id, 1, next_timestamp(None))
        with translated_errors(f"create {resource_type}/{resource_id}"):
            # The primary key decides, atomically, even against another process; DO NOTHING
            # instead of catching the violation keeps a PostgreSQL transaction usable.
            inserted = await self.connection.execute(self._s.insert_resource, _row(stored))
            if inserted.rowcount != 1:
                raise Conflict(f"{resource_type}/{resource_id} already exists")
            await self.connection.execute(self._s.insert_history, _row(stored))
            await self._insert_index_rows(resource_type, resource_id, doc)
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
                    stored, doc = self._version(resource, resource_type, resource_id, 1, next_timestamp(None))
                    inserted = await self.connection.execute(self._s.insert_resource, _row(stored))
                    if inserted.rowcount != 1:
                        continue  # another transaction created it since we looked: update that
                    await self.connection.execute(self._s.insert_history, _row(stored))
                    await self._insert_index_rows(resource_type, resource_id, doc)
                    return stored, True
                stored, doc = self._version(
                    resource,
                    resource_type,
                    resource_id,
                    current.version_id + 1,
                    next_timestamp(current.last_updated),
                )
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
            stored = StoredResource(
                resource_type, id, current.version_id + 1, next_timestamp(current.last_updated), True, b""
            )
            await self._write_next_version(stored)
            await self._delete_index_rows(resource_type, id)
        return stored

    async def read(self, resource_type: str, id: str) -> StoredResource:
        """The current version, locked until commit on PostgreSQL (SQLite's writer holds the
        whole database already), so read-modify-write needs no If-Match of its own."""
        keys = {"key_type": resource_type, "key_id": id}
        with translated_errors(f"read {resource_type}/{id}"):
            row = (await self.connection.execute(self._s.current_with_content, keys)).first()
        if row is None:
            raise NotFound(f"{resource_type}/{id} not found")
        if row.deleted:
            raise Gone(f"{resource_type}/{id} was deleted (version {row.version_id})")
        return StoredResource(resource_type, id, row.version_id, row.last_updated, False, row.content)

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
        """Queue an event; it becomes visible to the relay only if this transaction commits."""
        # latin-1 maps every byte to one code point and back, so any header value survives JSON
        # while ASCII ones (traceparent) stay readable in the table.
        encoded_headers = orjson.dumps([[name, value.decode("latin-1")] for name, value in headers])
        row = {
            "event_id": event_id, "topic": topic, "key": key, "value": value,
            "headers": encoded_headers, "created_at": datetime.now(UTC), "published_at": None,
        }  # fmt: skip
        with translated_errors(f"outbox event {event_id}"):
            await self.connection.execute(self._s.insert_outbox, row)
        self.outbox_added = True

    async def claim_event(self, consumer: str, event_id: str) -> bool:
        """True the first time `consumer` claims `event_id`; False if it already processed it.

        Call it in the same transaction as the handler's effect, so the effect and the claim
        commit (or roll back) together.
        """
        row = {"consumer": consumer, "event_id": event_id, "processed_at": datetime.now(UTC)}
        with translated_errors(f"inbox claim {consumer}/{event_id}"):
            result = await self.connection.execute(self._s.insert_inbox, row)
        return result.rowcount == 1

    async def put_projection(self, name: str, key: str, version: int, data: bytes) -> bool:
        """Store `data` at `version` unless a newer or equal version is already there.

        Events arrive at least once and a replay can bring old ones back: the version check
        makes the projection converge on the owner's latest state whatever the order.
        """
        row = {
            "name": name,
            "key": key,
            "version": version,
            "data": data,
            "change_count": 1,
            "updated_at": datetime.now(UTC),
        }
        with translated_errors(f"projection {name}/{key}"):
            result = await self.connection.execute(self._s.upsert_projection, row)
        return result.rowcount == 1

    # --- helpers --------------------------------------------------------------------------------

    def _version(
        self, resource: dict[str, Any], resource_type: str, resource_id: str, version_id: int, at: datetime
    ) -> tuple[StoredResource, dict[str, Any]]:
        doc = canonical_document(resource, resource_id, version_id, at)
        return StoredResource(resource_type, resource_id, version_id, at, False, to_json(doc)), doc

    async def _current(self, resource_type: str, resource_id: str) -> _Current | None:
        row = (
            await self.connection.execute(self._s.current, {"key_type": resource_type, "key_id": resource_id})
        ).first()
        return None if row is None else _Current(row.version_id, row.last_updated, row.deleted)

    async def _write_next_version(self, stored: StoredResource) -> None:
        await self.connection.execute(
            self._s.update_resource,
            {
                "key_type": stored.resource_type,
                "key_id": stored.id,
                "version_id": stored.version_id,
                "last_updated": stored.last_updated,
                "deleted": stored.deleted,
                "content": stored.content,
            },
        )
        await self.connection.execute(self._s.insert_history, _row(stored))

    async def _insert_index_rows(self, resource_type: str, resource_id: str, doc: dict[str, Any]) -> None:
        params = self._params_for(resource_type)
        if not params:
            return
        rows = extract_index_rows(doc, params)
        for kind, values in _index_values(rows, resource_type, resource_id).items():
            if values:  # one executemany per table
                await self.connection.execute(self._s.insert_index[kind], values)

    async def _delete_index_rows(self, resource_type: str, resource_id: str) -> None:
        kinds = {param.type for param in self._params_for(resource_type)}
        keys = {"key_type": resource_type, "key_id": resource_id}
        for kind in INDEX_KINDS:
            if kind in kinds:  # tables this type never writes to have nothing to delete
                await self.connection.execute(self._s.delete_index[kind], keys)


def _index_values(rows: IndexRows, resource_type: str, resource_id: str) -> dict[str, list[dict[str, Any]]]:
    base = {"resource_type": resource_type, "resource_id": resource_id}
    return {
        "token": [{**base, "param": p, "system": s, "code": c} for p, s, c in rows.token],
        "string": [{**base, "param": p, "value": v} for p, v in rows.string],
        "date": [{**base, "param": p, "low": lo, "high": hi} for p, lo, hi in rows.date],
        "reference": [
            {**base, "param": p, "target_type": tt, "target_id": ti} for p, tt, ti in rows.reference
        ],
    }


def _check_version(label: str, current: _Current | None, if_match: int | None) -> None:
    if if_match is None:
        return
    if current is None:
        raise PreconditionFailed(f"{label} does not exist, so it cannot be at version {if_match}")
    if current.version_id != if_match:
        raise PreconditionFailed(f"{label} is at version {current.version_id}, not {if_match}")


def _row(stored: StoredResource) -> dict[str, Any]:
    return {
        "resource_type": stored.resource_type,
        "id": stored.id,
        "version_id": stored.version_id,
        "last_updated": stored.last_updated,
        "deleted": stored.deleted,
        "content": stored.content,
    }
