"""FHIR R4 search, framework-free: parse a query, run it on a Store, render a searchset Bundle.

    query = parse_search("Patient", request_params, local_types=OWNED_TYPES["intake"])
    result = await run_search(store, query)
    body = searchset_bundle(query, result, base_url="https://host/fhir")

What is supported, and the rules paging and totals follow, are described in query.py,
criteria.py (parameters and modifiers), compile.py (matching), engine.py (paging and totals),
includes.py and render.py (links, _summary, _elements). Every search parameter comes from the
one table in `shared.fhir.search_params`.
"""

from shared.fhir.search.engine import run_search
from shared.fhir.search.model import (
    Criterion,
    Cursor,
    Include,
    SearchQuery,
    SearchResult,
    SortKey,
)
from shared.fhir.search.query import DEFAULT_COUNT, MAX_COUNT, link_params, parse_search
from shared.fhir.search.render import SUBSETTED_TAG, searchset_bundle

__all__ = [
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "SUBSETTED_TAG",
    "Criterion",
    "Cursor",
    "Include",
    "SearchQuery",
    "SearchResult",
    "SortKey",
    "link_params",
    "parse_search",
    "run_search",
    "searchset_bundle",
]
