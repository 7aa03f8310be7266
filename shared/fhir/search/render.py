"""`searchset_bundle`: the search result as Bundle bytes, built from stored bytes.

Entries are spliced in as stored (no model is built); only `_summary` and `_elements` parse a
resource, to drop elements. Links (R4 http.html#paging, search.html#self): `self` is the query
as understood (parameters in a canonical order, unknown ones dropped under lenient handling,
`_count` always present, the page's `_cursor` if any); `next` and `previous` are the same
query with another `_cursor`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from shared.fhir.search.model import SearchQuery, SearchResult
from shared.fhir.search.query import link_params
from shared.store import StoredResource

#: meta.tag marking a resource with elements left out (R4 search.html#summary, #elements).
SUBSETTED_TAG = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


def searchset_bundle(query: SearchQuery, result: SearchResult, *, base_url: str) -> bytes:
    base = base_url.rstrip("/")
    parts = [b'{"resourceType":"Bundle","type":"searchset"']
    if result.total is not None:
        parts.append(b',"total":%d' % result.total)
    parts.append(b',"link":' + orjson.dumps(_links(query, result, f"{base}/{query.resource_type}")))
    if query.summary != "count" and (result.matches or result.included):
        match_view = _view(query, for_matches=True)
        include_view = _view(query, for_matches=False)
        entries = [_entry(base, r, b"match", match_view) for r in result.matches]
        entries += [_entry(base, r, b"include", include_view) for r in result.included]
        parts.append(b',"entry":[' + b",".join(entries) + b"]")
    parts.append(b"}")
    return b"".join(parts)


def _links(query: SearchQuery, result: SearchResult, type_url: str) -> list[dict[str, str]]:
    params = link_params(query)

    def url(cursor: str | None) -> str:
        pairs = params if cursor is None else [*params, ("_cursor", cursor)]
        return f"{type_url}?{urlencode(pairs, safe=':,|/')}"

    links = [{"relation": "self", "url": url(query.cursor.token if query.cursor else None)}]
    if result.next_cursor:
        links.append({"relation": "next", "url": url(result.next_cursor)})
    if result.previous_cursor:
        links.append({"relation": "previous", "url": url(result.previous_cursor)})
    return links


def _entry(
    base: str, resource: StoredResource, mode: bytes, view: Callable[[StoredResource], bytes] | None
) -> bytes:
    full_url = orjson.dumps(f"{base}/{resource.resource_type}/{resource.id}")
    content = resource.content if view is None else view(resource)
    return b'{"fullUrl":' + full_url + b',"resource":' + content + b',"search":{"mode":"' + mode + b'"}}'


def _view(query: SearchQuery, *, for_matches: bool) -> Callable[[StoredResource], bytes] | None:
    """How each resource is shown: whole (None), or reduced by _summary / _elements.

    _elements names elements of the searched type, so it applies to matches; included
    resources of other types come whole. _summary applies to every entry.
    """
    summary = query.summary
    if summary in ("true", "text", "data"):
        return lambda r: _subset(r.content, _summary_filter(r.resource_type, summary))
    if query.elements and for_matches:
        wanted = frozenset(query.elements)
        return lambda r: _subset(r.content, _elements_filter(r.resource_type, wanted))
    return None


def _summary_filter(resource_type: str, summary: str) -> Callable[[str], bool]:
    if summary == "data":  # everything but the narrative
        return lambda name: name != "text"
    if summary == "text":  # the narrative, and what must be there (R4 search.html#summary)
        mandatory = mandatory_elements(resource_type)
        return lambda name: name == "text" or name in mandatory
    elements = summary_elements(resource_type)
    return (lambda name: True) if elements is None else elements.__contains__


def _elements_filter(resource_type: str, wanted: frozenset[str]) -> Callable[[str], bool]:
    # Mandatory elements come too: R4 search.html#elements says servers SHOULD return them.
    # A choice is asked for by its root: `_elements=value` keeps valueQuantity.
    info = _element_info(resource_type)
    return lambda name: name in wanted or name in info.mandatory or info.choice_roots.get(name) in wanted


def _subset(content: bytes, keep: Callable[[str], bool]) -> bytes:
    doc: dict[str, Any] = orjson.loads(content)
    out = {k: v for k, v in doc.items() if k in _ALWAYS or keep(k[1:] if k.startswith("_") else k)}
    meta = dict(out.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(t.get("code") == "SUBSETTED" and t.get("system") == SUBSETTED_TAG["system"] for t in tags):
        tags.append(SUBSETTED_TAG)
    meta["tag"] = tags
    out["meta"] = meta
    return orjson.dumps(out)


def summary_elements(resource_type: str) -> frozenset[str] | None:
    """Top-level elements marked Σ in R4 (fhir.resources: summary_element_property), or None
    for a type the models do not know."""
    return _element_info(resource_type).summary


def mandatory_elements(resource_type: str) -> frozenset[str]:
    """Top-level elements with minimum cardinality 1 (each type of a required choice counts)."""
    return _element_info(resource_type).mandatory


@dataclass(frozen=True)
class _ElementInfo:
    summary: frozenset[str] | None
    mandatory: frozenset[str]
    choice_roots: dict[str, str]  # "valueQuantity" -> "value"


@functools.cache
def _element_info(resource_type: str) -> _ElementInfo:
    from fhir.resources.R4B import get_fhir_model_class  # heavy: only once a view needs it

    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError, ImportError):
        return _ElementInfo(None, frozenset(), {})
    summary, mandatory, roots = set(), set(), {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if not extra.get("element_property"):
            continue
        alias = info.alias or name
        if extra.get("summary_element_property"):
            summary.add(alias)
        if info.is_required() or extra.get("element_required") or extra.get("one_of_many_required"):
            mandatory.add(alias)
        if isinstance(extra.get("one_of_many"), str):
            roots[alias] = str(extra["one_of_many"])
    return _ElementInfo(frozenset(summary), frozenset(mandatory), roots)
