"""Bundles assembled from stored bytes, without building models (DESIGN.md, Store):
searchset, history, and the responses to batch and transaction Bundles
(http://hl7.org/fhir/R4/bundle.html)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

from shared.store import StoredResource
from shared.store.content import format_instant


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


def history(
    versions: Sequence[StoredResource], *, base_url: str, self_link: str, next_link: str | None = None
) -> bytes:
    """A `history` Bundle, newest first (http://hl7.org/fhir/R4/http.html#history).

    Each entry says how the version came about in request/response. Deletions have no
    resource. The store does not record whether a first version came from a POST or a PUT
    (update-as-create); version 1 is shown as the create it was.
    """
    links = [{"relation": "self", "url": self_link}]
    if next_link is not None:
        links.append({"relation": "next", "url": next_link})
    head = {"resourceType": "Bundle", "type": "history", "link": links}
    return _with_entries(head, [_history_entry(v, base_url) for v in versions])


def _history_entry(version: StoredResource, base_url: str) -> bytes:
    rtype, id_ = version.resource_type, version.id
    if version.deleted:
        request = {"method": "DELETE", "url": f"{rtype}/{id_}"}
        status = "204 No Content"
    elif version.version_id == 1:
        request, status = {"method": "POST", "url": rtype}, "201 Created"
    else:
        request, status = {"method": "PUT", "url": f"{rtype}/{id_}"}, "200 OK"
    response = {
        "status": status,
        "etag": f'W/"{version.version_id}"',
        "lastModified": format_instant(version.last_updated),
    }
    entry = {"fullUrl": f"{base_url}/{rtype}/{id_}", "request": request, "response": response}
    return entry_bytes(entry, None if version.deleted else version.content)


@dataclass(frozen=True, slots=True)
class ResponseEntry:
    """One entry of a batch-response or transaction-response (bundle.html#transaction-response)."""

    status: int
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    #: the resource (a read, or a write under Prefer: return=representation)
    resource: bytes | None = None
    #: an OperationOutcome: the failure of a batch entry, or an informational outcome
    outcome: bytes | None = None
    full_url: str | None = None


def response_bundle(kind: str, entries: Sequence[ResponseEntry]) -> bytes:
    """`batch-response` or `transaction-response`, entries in the order of the request's."""
    return _with_entries({"resourceType": "Bundle", "type": kind}, [_response_entry(e) for e in entries])


def _response_entry(entry: ResponseEntry) -> bytes:
    response: dict[str, Any] = {"status": status_line(entry.status)}
    for key, value in (
        ("location", entry.location),
        ("etag", entry.etag),
        ("lastModified", entry.last_modified),
    ):
        if value is not None:
            response[key] = value
    response_bytes = orjson.dumps(response)
    if entry.outcome is not None:
        response_bytes = response_bytes[:-1] + b',"outcome":' + entry.outcome + b"}"
    fields = []
    if entry.full_url is not None:
        fields.append(b'"fullUrl":' + orjson.dumps(entry.full_url))
    if entry.resource is not None:
        fields.append(b'"resource":' + entry.resource)
    fields.append(b'"response":' + response_bytes)
    return b"{" + b",".join(fields) + b"}"


def status_line(status: int) -> str:
    """`201 Created`: Bundle.entry.response.status carries the code and may carry the phrase."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def entry_bytes(entry: dict[str, Any], resource: bytes | None) -> bytes:
    """An entry object with the stored resource bytes spliced in after fullUrl."""
    if resource is None:
        return orjson.dumps(entry)
    full_url = orjson.dumps(entry.pop("fullUrl"))
    rest = orjson.dumps(entry)
    return (
        b'{"fullUrl":' + full_url + b',"resource":' + resource + (b"," + rest[1:] if rest != b"{}" else b"}")
    )


def _with_entries(head: dict[str, Any], entries: list[bytes]) -> bytes:
    if not entries:  # FHIR JSON has no empty arrays (json.html)
        return orjson.dumps(head)
    return orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}"
