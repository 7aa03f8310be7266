"""Search as the REST layer uses it: a searchset for `GET [type]?...` and `POST [type]/_search`,
and the matches of conditional criteria (If-None-Exist, `PUT/DELETE/PATCH [type]?...`,
conditional references in a transaction), all through the one search engine
(`shared.fhir.search`), so a condition selects exactly what the same search would return.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.fhir.search import parse_search, run_search, searchset_bundle
from shared.store import Store, StoredResource

#: Result parameters a conditional match overrides: it needs at most two matches and no total.
_MATCH_OVERRIDES = frozenset(
    {"_count", "_total", "_sort", "_include", "_revinclude", "_summary", "_elements"}
)


class _InTransaction:
    """The store as seen from inside a write transaction: the engine's queries (it reads through
    `connect()`) use the transaction's own connection, so they see its uncommitted writes and
    take no second connection while the transaction holds one (no pool starvation when many
    transactions wait on one conditional key)."""

    def __init__(self, store: Store, connection: AsyncConnection) -> None:
        self._store = store
        self._connection = connection

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        yield self._connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class Searcher:
    """Runs one service's searches; types it does not own are the gateway's to resolve."""

    def __init__(self, owned_types: Sequence[str]) -> None:
        self.owned_types = tuple(owned_types)

    async def searchset(
        self,
        store: Store,
        resource_type: str,
        params: list[tuple[str, str]],
        *,
        base: str,
        lenient: bool,
        connection: AsyncConnection | None = None,
    ) -> bytes:
        """The searchset Bundle; unknown parameters are 400 unless `lenient` (search.html#errors).
        With `connection`, the search sees that transaction's writes (a transaction's GETs)."""
        query = parse_search(resource_type, params, local_types=self.owned_types, lenient=lenient)
        target: Any = store if connection is None else _InTransaction(store, connection)
        result = await run_search(target, query)
        return searchset_bundle(query, result, base_url=base)

    async def matches(
        self,
        store: Store,
        resource_type: str,
        criteria: list[tuple[str, str]],
        *,
        connection: AsyncConnection | None = None,
        limit: int = 2,
    ) -> list[StoredResource]:
        """Up to `limit` resources matching conditional criteria, seen from `connection`'s
        transaction when given. Criteria are never lenient: a condition the server does not
        understand must not be half-applied (http.html#cond-update)."""
        params = [(k, v) for k, v in criteria if k not in _MATCH_OVERRIDES]
        params += [("_count", str(limit)), ("_total", "none")]
        query = parse_search(resource_type, params, local_types=self.owned_types, lenient=False)
        target: Any = store if connection is None else _InTransaction(store, connection)
        result = await run_search(target, query)
        return list(result.matches)[:limit]
