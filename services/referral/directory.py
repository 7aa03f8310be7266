"""The resource directory in the referral service: the in-memory index matching reads, and the
write hooks that make re-importing a directory change nothing.

Cache strategy. `$match` must not parse hundreds of stored resources per request, so the
HealthcareServices, Locations and Organizations live in an in-process `DirectoryIndex`. Before
each use the cache asks the store for a fingerprint of those types: per type, the number of
rows and the sum of their version ids. Every committed create, update or delete of one of them
raises the sum by exactly one (a new row is version 1, each update and deletion adds a version),
so the fingerprint changes with every write, including deletes (which write hooks never see),
writes by other processes of the service, and imports by any client; and it does not depend on
timestamps, which concurrent PostgreSQL transactions can commit out of order. The check is one
aggregate over a few hundred rows on the store's raw read path (about 0.4 ms on SQLite here);
the reload, only after a change, parses the three types once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import select

from services.referral.domain.directory import same_content
from services.referral.domain.directory_import import IMPORTABLE_TYPES
from services.referral.domain.directory_index import DirectoryIndex
from shared.errors import Gone, NotFound
from shared.fhir.rest import FhirRest, Proceed, WriteHooks, Written
from shared.store import Store, Transaction
from shared.store.driver import portable_sql

#: What the matcher reads.
INDEXED_TYPES: Final = ("HealthcareService", "Location", "Organization")


@dataclass(frozen=True, slots=True)
class LoadedDirectory:
    index: DirectoryIndex
    #: Stored bytes by id, served as they are in $match results.
    services: Mapping[str, bytes]
    locations: Mapping[str, bytes]
    fingerprint: tuple[tuple[str, int, int], ...]


class DirectoryCache:
    """The directory index, rebuilt when the store's fingerprint of the indexed types changes."""

    def __init__(self) -> None:
        self._loaded: LoadedDirectory | None = None
        self._lock = asyncio.Lock()
        self.reloads = 0

    async def current(self, store: Store) -> LoadedDirectory:
        fingerprint = await _fingerprint(store)
        loaded = self._loaded
        if loaded is not None and loaded.fingerprint == fingerprint:
            return loaded
        async with self._lock:  # one reload however many requests notice the change
            loaded = self._loaded
            fingerprint = await _fingerprint(store)
            if loaded is None or loaded.fingerprint != fingerprint:
                # The fingerprint is read before the rows: a write in between only causes one
                # more reload next time, never a stale index kept under a newer fingerprint.
                loaded = await _load(store, fingerprint)
                self._loaded = loaded
                self.reloads += 1
            return loaded


#: Per indexed type: rows and the sum of their versions. Placeholders in "?" form (portable_sql).
_FINGERPRINT_SQL: Final = (
    "SELECT resource_type, COUNT(*), COALESCE(SUM(version_id), 0) FROM resources "
    f"WHERE resource_type IN ({', '.join('?' * len(INDEXED_TYPES))}) "
    "GROUP BY resource_type ORDER BY resource_type"
)


async def raw_fetch(store: Store, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """A single-statement read on the store's raw driver connections, the path `Store.read`
    takes: about 0.4 ms here where a SQLAlchemy Core round trip costs about 3 ms, which would be
    most of a $match. (Store has no public method for this yet; `_readers` is its read pool.)"""
    return await store._readers.fetch(portable_sql(store.dialect, sql), params)


async def _fingerprint(store: Store) -> tuple[tuple[str, int, int], ...]:
    rows = await raw_fetch(store, _FINGERPRINT_SQL, INDEXED_TYPES)
    return tuple((str(t), int(n), int(total)) for t, n, total in rows)


async def _load(store: Store, fingerprint: tuple[tuple[str, int, int], ...]) -> LoadedDirectory:
    r = store.tables.resources
    query = select(r.c.resource_type, r.c.id, r.c.content).where(
        r.c.resource_type.in_(INDEXED_TYPES), r.c.deleted.is_(False)
    )
    async with store.connect() as connection:
        rows = (await connection.execute(query)).all()
    raw: dict[str, dict[str, bytes]] = {t: {} for t in INDEXED_TYPES}
    for rtype, id_, content in rows:
        raw[rtype][id_] = bytes(content)
    parsed = {t: {id_: orjson.loads(body) for id_, body in by_id.items()} for t, by_id in raw.items()}
    index = DirectoryIndex.build(
        parsed["HealthcareService"].values(), parsed["Location"], parsed["Organization"]
    )
    return LoadedDirectory(index, raw["HealthcareService"], raw["Location"], fingerprint)


class UnchangedIsNoOp(WriteHooks):
    """An update that would store what is already stored writes nothing: no new version, no
    event (as HAPI FHIR's no-op updates). So importing a directory twice changes nothing, and the
    importer tells unchanged resources from updated ones by their version."""

    async def update(
        self, rest: FhirRest, tx: Transaction, resource: dict[str, Any], proceed: Proceed
    ) -> Written:
        try:
            current = await tx.read(resource["resourceType"], resource["id"])
        except (NotFound, Gone):
            return await proceed(resource)
        if same_content(orjson.loads(current.content), resource):
            label = f"{current.resource_type}/{current.id}"
            return Written(
                current, 200, f"{label} is unchanged (version {current.version_id}); nothing written"
            )
        return await proceed(resource)


def hooks() -> dict[str, WriteHooks]:
    """The directory types' write hooks, for FhirRest(hooks=...)."""
    no_op = UnchangedIsNoOp()
    return dict.fromkeys(IMPORTABLE_TYPES, no_op)
