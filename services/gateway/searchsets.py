"""Editing searchset Bundles the services answered with: filtering entries, adding includes,
keeping paging links intact (R4 bundle.html, search.html#include).

The gateway passes a service's bytes through untouched whenever it can; these helpers are for
the answers it must change (cross-service includes, access filtering, $everything).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson

from services.gateway.access import AccessPolicy

#: Characters left as they are in query strings the gateway builds: FHIR's own separators read
#: better unescaped, and every server decodes them the same either way.
_SAFE = ":/|,$"


def encode_query(params: Iterable[tuple[str, str]]) -> str:
    return urlencode(list(params), quote_via=quote, safe=_SAFE)


def entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    found = bundle.get("entry")
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def entry_resources(bundle: dict[str, Any], mode: str | None = "match") -> Iterator[dict[str, Any]]:
    """The resources of the entries with the given search mode (None: every entry)."""
    for entry in entries(bundle):
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        search = entry.get("search")
        entry_mode = search.get("mode", "match") if isinstance(search, dict) else "match"
        if mode is None or entry_mode == mode:
            yield resource


def keys(bundle: dict[str, Any]) -> set[tuple[str, str]]:
    return {(str(r.get("resourceType")), str(r.get("id"))) for r in entry_resources(bundle, mode=None)}


def add_entries(bundle: dict[str, Any], found: Iterable[dict[str, Any]], mode: str) -> None:
    """Append entries from other searchsets with `mode`, leaving out resources already there."""
    present = keys(bundle)
    added = list(entries(bundle))
    for entry in found:
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        key = (str(resource.get("resourceType")), str(resource.get("id")))
        if key in present:
            continue
        present.add(key)
        added.append({"fullUrl": entry.get("fullUrl"), "resource": resource, "search": {"mode": mode}})
    if added:
        bundle["entry"] = added


def filter_entries(bundle: dict[str, Any], policy: AccessPolicy, *, matches_checked: bool = False) -> int:
    """Drop the entries the principal may not see; returns how many were dropped.

    `matches_checked`: the search itself carried the restriction (access.search_restrictions),
    so its matches need no second look; that matters because `_elements` or `_summary` may have
    left out the very element (the subject) a second look would need. Included resources are
    always checked. An entry without a resource (a deleted version in a history Bundle) cannot be
    checked, so a restricted principal does not get it.
    """
    kept, dropped = [], 0
    for entry in entries(bundle):
        if _visible(entry, policy, matches_checked):
            kept.append(entry)
        else:
            dropped += 1
    if dropped:
        if kept:
            bundle["entry"] = kept
        else:
            bundle.pop("entry", None)
    return dropped


def _visible(entry: dict[str, Any], policy: AccessPolicy, matches_checked: bool) -> bool:
    search = entry.get("search")
    if matches_checked and (not isinstance(search, dict) or search.get("mode", "match") == "match"):
        return True
    resource = entry.get("resource")
    if isinstance(resource, dict):
        rtype = str(resource.get("resourceType"))
        return rtype == "OperationOutcome" or policy.may_see(rtype, resource)
    return policy.unrestricted_for({_entry_type(entry)})


def _entry_type(entry: dict[str, Any]) -> str:
    url = entry.get("fullUrl") or (entry.get("request") or {}).get("url") or ""
    parts = [p for p in str(url).split("/") if p]
    while parts and not parts[-1][:1].isupper():
        parts.pop()
    return parts[-1] if parts else ""


def append_to_links(bundle: dict[str, Any], params: list[tuple[str, str]]) -> None:
    """Put parameters the service was not sent back into every paging link, so following
    `next` repeats the same cross-service search."""
    if not params:
        return
    extra = encode_query(params)
    for link in bundle.get("link") or ():
        if isinstance(link, dict) and isinstance(link.get("url"), str):
            url = link["url"]
            link["url"] = url + ("&" if "?" in url else "?") + extra


def next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or ():
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def service_target(url: str, public_base: str) -> str:
    """A paging link the service made (under the public base) as a path to ask the service."""
    if url.startswith(public_base):
        return "/fhir" + url[len(public_base) :]
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def empty_searchset(self_link: str) -> bytes:
    """No match (R4 search.html: an empty searchset, not an error); no `entry` at all, since
    FHIR JSON does not allow empty arrays."""
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 0,
            "link": [{"relation": "self", "url": self_link}],
        }
    )


def searchset(resources_entries: list[dict[str, Any]], self_link: str) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources_entries),
        "link": [{"relation": "self", "url": self_link}],
    }
    if resources_entries:
        bundle["entry"] = resources_entries
    return bundle
