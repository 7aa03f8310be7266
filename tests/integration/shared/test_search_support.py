"""Helpers for the search integration tests (this module holds no tests)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.search import SearchQuery, SearchResult, parse_search, run_search
from shared.store import Store

INTAKE = frozenset(OWNED_TYPES["intake"])


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
