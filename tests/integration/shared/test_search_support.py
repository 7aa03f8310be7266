"""Helpers for the search integration tests (this module holds no tests).

`full_index_writes` makes `Transaction` write every index table through
`shared.store.index_writer` for the duration of a test, unless the transaction already does:
the number and quantity tables and the :text / :exact rows are filled only on that path.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest

from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.search import SearchQuery, SearchResult, parse_search, run_search
from shared.store import Store
from shared.store.index_writer import index_writer
from shared.store.transaction import Transaction

INTAKE = frozenset(OWNED_TYPES["intake"])


def full_index_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    if "index_writer" in Transaction._insert_index_rows.__code__.co_names:
        return  # the store writes through index_writer already

    async def insert(self: Any, resource_type: str, resource_id: str, doc: dict[str, Any]) -> None:
        params = self._params_for(resource_type)
        await index_writer(self.dialect).insert(self._db, resource_type, resource_id, doc, params)

    async def clear(self: Any, resource_type: str, resource_id: str) -> None:
        params = self._params_for(resource_type)
        await index_writer(self.dialect).clear(self._db, resource_type, resource_id, params)

    monkeypatch.setattr(Transaction, "_insert_index_rows", insert)
    monkeypatch.setattr(Transaction, "_delete_index_rows", clear)


def parse(resource_type: str, query: str) -> SearchQuery:
    return parse_search(resource_type, parse_qsl(query, keep_blank_values=True), local_types=INTAKE)


async def search(store: Store, resource_type: str, query: str) -> SearchResult:
    return await run_search(store, parse(resource_type, query))


async def ids(store: Store, resource_type: str, query: str) -> list[str]:
    """Matched ids in result order (one page of up to 1000)."""
    sep = "&" if query else ""
    return [r.id for r in (await search(store, resource_type, f"{query}{sep}_count=1000")).matches]


async def id_set(store: Store, resource_type: str, query: str) -> set[str]:
    return set(await ids(store, resource_type, query))
