"""A FHIR REST request and response as plain data: what the HTTP routes build from a real
request and what a Bundle entry is turned into, so both go through one dispatcher
(`dispatch.py`), and how interaction results become responses (status, headers, Prefer)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.errors import UnsupportedMediaType, outcome
from shared.fhir.rest.headers import Prefer, parse_prefer, version_headers
from shared.fhir.rest.interactions import Deleted, Written
from shared.http import parse_json_object
from shared.store import StoredResource

#: Media types a FHIR JSON body may be sent as (http://hl7.org/fhir/R4/http.html#mime-type).
FHIR_JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})


@dataclass(slots=True)
class RestRequest:
    """`path` is what follows the FHIR base, e.g. `Patient/1/_history`; `headers` has lower-case
    names; `resource` is an already-parsed body (a Bundle entry's), used instead of `body`."""

    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: Mapping[str, str] = field(default_factory=dict)
    base: str = ""
    body: bytes = b""
    resource: Any = None
    #: the id a transaction promised a create for its urn:uuid fullUrl (bundle.html#references)
    assigned_id: str | None = None

    @property
    def prefer(self) -> Prefer:
        return parse_prefer(self.headers.get("prefer"))


@dataclass(slots=True)
class RestResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: the version this response is about (Bundle entry etag/lastModified/location)
    stored: StoredResource | None = None
    #: the body is an OperationOutcome rather than a resource
    is_outcome: bool = False


def outcome_bytes(diagnostics: str, *, severity: str = "information", code: str = "informational") -> bytes:
    return orjson.dumps(outcome(severity, code, diagnostics))


def resource_response(stored: StoredResource) -> RestResponse:
    """A read or vread: the stored bytes as they are, with ETag and Last-Modified."""
    return RestResponse(200, stored.content, version_headers(stored, "", location=False), stored)


def written_response(written: Written, prefer: Prefer, base: str) -> RestResponse:
    """Create, update and patch answer with the version's headers and, as the client prefers,
    the resource, nothing, or an OperationOutcome (http.html#ops, `Prefer: return=`)."""
    stored = written.stored
    headers = version_headers(stored, base)
    if prefer.return_ == "minimal":
        return RestResponse(written.status, b"", headers, stored)
    if prefer.return_ == "OperationOutcome":
        return RestResponse(written.status, outcome_bytes(written.message), headers, stored, is_outcome=True)
    return RestResponse(written.status, stored.content, headers, stored)


def deleted_response(deleted: Deleted) -> RestResponse:
    """200 with an OperationOutcome and the deletion's ETag, or 204 when nothing was there
    (http.html#delete: deleting what does not exist is not an error)."""
    if deleted.stored is None:
        return RestResponse(204)
    headers = {"ETag": f'W/"{deleted.stored.version_id}"'}
    return RestResponse(200, outcome_bytes(deleted.message), headers, deleted.stored, is_outcome=True)


def media_type(request: RestRequest) -> str:
    return (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()


def require_media(request: RestRequest, allowed: set[str] | frozenset[str], what: str) -> None:
    media = media_type(request)
    if media not in allowed:
        raise UnsupportedMediaType(f"Send {what} as {' or '.join(sorted(allowed))}, not {media or 'nothing'}")


def json_object(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or InvalidInput saying what is wrong with it."""
    return parse_json_object(body)
