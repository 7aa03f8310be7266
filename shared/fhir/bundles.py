"""Bundles assembled from stored bytes, without building models (DESIGN.md, Store)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from shared.store import StoredResource


def searchset(
    resources: Sequence[StoredResource],
    *,
    base_url: str,
    self_link: str,
    total: int | None = None,
) -> bytes:
    """A `searchset` Bundle (http://hl7.org/fhir/R4/bundle.html) around stored resource bytes."""
    head: dict[str, object] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": "self", "url": self_link}]
    entries = [
        b'{"fullUrl":'
        + orjson.dumps(f"{base_url}/{r.resource_type}/{r.id}")
        + b',"resource":'
        + r.content
        + b',"search":{"mode":"match"}}'
        for r in resources
    ]
    return orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}"
