"""batch and transaction Bundles POSTed to the service base (http://hl7.org/fhir/R4/http.html#transaction,
bundle.html#transaction).

- batch: every entry on its own, in its own store transaction; a failing entry gets its status
  and OperationOutcome in the batch-response and the others go on.
- transaction: all entries in ONE store transaction, so all or nothing (atomic within this
  service; the gateway refuses transactions that span services). Entries run in the order R4
  prescribes (DELETE, POST, PUT/PATCH, GET/HEAD), `urn:uuid:` fullUrls become the ids the
  server assigns, and references to them, and conditional references (`Patient?identifier=...`)
  to this service's types, are rewritten before anything is written. The first failure rolls
  everything back and is the response: that entry's OperationOutcome with its status.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from shared.errors import (
    CareBridgeError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    http_status,
    operation_outcome,
)
from shared.fhir.bundles import ResponseEntry, response_bundle
from shared.fhir.rest.conditional import parse_criteria, single_match
from shared.fhir.rest.messages import FHIR_JSON_TYPES, RestRequest, RestResponse, json_object, require_media
from shared.store import Transaction
from shared.store.content import format_instant, new_id

if TYPE_CHECKING:
    from shared.fhir.rest.dispatch import Dispatcher

log = logging.getLogger(__name__)

MAX_ENTRIES = 1000
#: R4 bundle.html#transaction: the order a transaction's entries are processed in.
TRANSACTION_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_ENTRY_HEADERS = {
    "ifMatch": "if-match",
    "ifNoneExist": "if-none-exist",
    "ifNoneMatch": "if-none-match",
    "ifModifiedSince": "if-modified-since",
}


@dataclass(slots=True)
class Entry:
    index: int
    method: str
    url: str
    path: list[str]
    params: list[tuple[str, str]]
    headers: dict[str, str]
    resource: Any
    full_url: str | None
    assigned_id: str | None = None

    def request(self, base: str, prefer: str | None) -> RestRequest:
        headers = dict(self.headers)
        if prefer:
            headers["prefer"] = prefer
        return RestRequest(
            self.method, "/".join(self.path), self.params, headers, base,
            resource=self.resource, assigned_id=self.assigned_id,
        )  # fmt: skip


async def process_bundle(dispatcher: Dispatcher, request: RestRequest) -> RestResponse:
    require_media(request, FHIR_JSON_TYPES, "a Bundle")
    bundle = json_object(request.body)
    if bundle.get("resourceType") != "Bundle":
        raise InvalidInput(
            "POST to the base takes a Bundle of type batch or transaction", expression=["resourceType"]
        )
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise InvalidInput(
            f"Bundle.type must be batch or transaction, not {kind!r}", expression=["Bundle.type"]
        )
    prefer = request.headers.get("prefer")
    if kind == "batch":
        results = []
        for index, item in enumerate(_raw_entries(bundle)):
            try:  # a malformed entry of a batch is answered on its own too (bundle.html#batch)
                entry = _entry(index, item, request.base)
            except CareBridgeError as exc:
                results.append(_error_entry(exc))
                continue
            results.append(await _batch_entry(dispatcher, entry, request.base, prefer))
    else:
        results = await _transaction(dispatcher, parse_entries(bundle, request.base), request.base, prefer)
    return RestResponse(200, response_bundle(f"{kind}-response", results))


def parse_entries(bundle: dict[str, Any], base: str) -> list[Entry]:
    return [_entry(i, item, base) for i, item in enumerate(_raw_entries(bundle))]


def _raw_entries(bundle: dict[str, Any]) -> list[Any]:
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise InvalidInput("Bundle.entry must be an array", expression=["Bundle.entry"])
    if len(raw) > MAX_ENTRIES:
        raise PayloadTooLarge(f"A Bundle may carry at most {MAX_ENTRIES} entries, not {len(raw)}")
    return raw


def _entry(index: int, item: Any, base: str) -> Entry:
    where = f"Bundle.entry[{index}]"
    request = item.get("request") if isinstance(item, dict) else None
    if not isinstance(request, dict):
        raise InvalidInput(
            f"{where}.request is required in a batch or transaction", expression=[f"{where}.request"]
        )
    method, url = request.get("method"), request.get("url")
    if method not in TRANSACTION_ORDER or not isinstance(url, str) or not url.strip():
        raise InvalidInput(
            f"{where}.request needs a method (GET, HEAD, POST, PUT, PATCH, DELETE) and a url",
            expression=[f"{where}.request"],
        )
    relative = url[len(base) :] if base and url.startswith(base + "/") else url
    split = urlsplit(relative.lstrip("/"))
    path = [p for p in split.path.split("/") if p]
    if not path or split.scheme:
        raise InvalidInput(
            f"{where}.request.url {url!r} must name a resource type", expression=[f"{where}.request.url"]
        )
    headers = {h: str(request[k]) for k, h in _ENTRY_HEADERS.items() if request.get(k) is not None}
    full_url = item.get("fullUrl")
    return Entry(
        index, method, url, path, parse_qsl(split.query, keep_blank_values=True), headers,
        item.get("resource"), full_url if isinstance(full_url, str) else None,
    )  # fmt: skip


# --- batch ----------------------------------------------------------------------------------------


async def _batch_entry(dispatcher: Dispatcher, entry: Entry, base: str, prefer: str | None) -> ResponseEntry:
    try:
        return _response_entry(await dispatcher.handle(entry.request(base, prefer)))
    except Exception as exc:
        if not isinstance(exc, CareBridgeError):
            log.exception("batch entry %d (%s) failed unexpectedly", entry.index, entry.method)
        return _error_entry(exc)


def _error_entry(exc: Exception) -> ResponseEntry:
    return ResponseEntry(http_status(exc), outcome=orjson.dumps(operation_outcome(exc)))


# --- transaction ----------------------------------------------------------------------------------


async def _transaction(
    dispatcher: Dispatcher, entries: list[Entry], base: str, prefer: str | None
) -> list[ResponseEntry]:
    results: dict[int, ResponseEntry] = {}
    async with dispatcher.rest.store.transaction() as tx:
        references: dict[str, str] = {}
        for entry in entries:
            with _blame(entry):
                await _assign_id(dispatcher, tx, entry, references)
        for entry in entries:
            with _blame(entry):
                await _rewrite(dispatcher, tx, entry, references)
        _check_no_overlap(entries)
        for entry in sorted(entries, key=lambda e: (TRANSACTION_ORDER[e.method], e.index)):
            with _blame(entry):
                results[entry.index] = _response_entry(
                    await dispatcher.handle(entry.request(base, prefer), tx)
                )
    return [results[i] for i in range(len(entries))]


@contextlib.contextmanager
def _blame(entry: Entry) -> Iterator[None]:
    """Raise a failure as the same error, saying which entry failed (all was rolled back)."""
    try:
        yield
    except CareBridgeError as exc:
        exc.diagnostics = (
            f"Transaction failed at entry {entry.index} ({entry.method} {entry.url}); nothing was saved: "
            f"{exc.diagnostics}"
        )
        exc.args = (exc.diagnostics,)
        exc.expression = [f"Bundle.entry[{entry.index}]", *(exc.expression or [])]
        raise


async def _assign_id(
    dispatcher: Dispatcher, tx: Transaction, entry: Entry, references: dict[str, str]
) -> None:
    """Record fullUrl -> `Type/id` for an entry that creates or names a resource.

    A create gets its id now, so other entries can point at it before it is written; a
    conditional create or update is decided now (under its criteria key), so references go to
    the resource that already matches when there is one.
    """
    rtype = dispatcher.rest.owned_type(entry.path[0])
    target: str | None = None
    if entry.method == "POST" and len(entry.path) == 1:
        entry.assigned_id = target = new_id()
        if "if-none-exist" in entry.headers:
            criteria = parse_criteria(rtype, entry.headers["if-none-exist"])
            existing = await dispatcher.rest.lock_and_match(tx, criteria, "create")
            target = existing.id if existing is not None else target
    elif entry.method == "PUT" and len(entry.path) == 2:
        target = entry.path[1]
    elif entry.method == "PUT" and len(entry.path) == 1 and isinstance(entry.resource, dict):
        criteria = parse_criteria(rtype, entry.params)
        match = await dispatcher.rest.lock_and_match(tx, criteria, "update")
        target = match.id if match is not None else entry.resource.get("id") or new_id()
        entry.resource = {**entry.resource, "id": target}
    if target is not None and entry.full_url:
        if entry.full_url in references:
            raise InvalidInput(f"fullUrl {entry.full_url} appears twice in the transaction")
        references[entry.full_url] = f"{rtype}/{target}"


async def _rewrite(dispatcher: Dispatcher, tx: Transaction, entry: Entry, references: dict[str, str]) -> None:
    """Point references at assigned ids, resolve conditional references, in place."""
    entry.params = [(k, _replace_placeholder(v, references)) for k, v in entry.params]
    if entry.resource is None:
        return
    for holder in reference_holders(entry.resource):
        value = holder["reference"]
        if value.startswith("urn:uuid:") or value.startswith("urn:oid:"):
            if value not in references:
                raise InvalidInput(f"Reference {value} is not the fullUrl of any entry in this transaction")
            holder["reference"] = references[value]
        elif "?" in value and "/" not in value.split("?", 1)[0]:
            holder["reference"] = await _resolve_conditional_reference(dispatcher, tx, value)


async def _resolve_conditional_reference(dispatcher: Dispatcher, tx: Transaction, value: str) -> str:
    """`Patient?identifier=x|1` becomes `Patient/<id>` of its one match (bundle.html#references)."""
    rtype, _, query = value.partition("?")
    if rtype not in dispatcher.rest.owned_types:
        raise InvalidInput(f"Conditional reference {value} names a type this service cannot resolve")
    criteria = parse_criteria(rtype, query)
    matches = await dispatcher.rest.searcher.matches(
        dispatcher.rest.store, rtype, list(criteria.params), connection=await tx.sql_connection()
    )
    match = single_match(criteria, matches, "reference")
    if match is None:
        raise NotFound(f"Conditional reference {value} matches no resource")
    return f"{rtype}/{match.id}"


def _check_no_overlap(entries: list[Entry]) -> None:
    """R4 bundle.html#transaction: entries of steps 1-3 must not touch the same resource."""
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.method in ("GET", "HEAD"):
            continue
        if len(entry.path) == 2:
            identity = "/".join(entry.path)
        elif entry.assigned_id is not None:
            identity = f"{entry.path[0]}/{entry.assigned_id}"
        else:
            continue
        if identity in seen:
            raise InvalidInput(
                f"Entries {seen[identity]} and {entry.index} both change {identity}; a transaction may "
                "change a resource once"
            )
        seen[identity] = entry.index


def reference_holders(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("reference"), str):
                found.append(item)
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
    return found


def _replace_placeholder(value: str, references: dict[str, str]) -> str:
    return references.get(value, value)


def _response_entry(response: RestResponse) -> ResponseEntry:
    stored = response.stored
    body: bytes | None = response.body or None
    return ResponseEntry(
        status=response.status,
        location=response.headers.get("Location"),
        etag=response.headers.get("ETag"),
        last_modified=format_instant(stored.last_updated) if stored is not None else None,
        resource=None if response.is_outcome else body,
        outcome=body if response.is_outcome else None,
    )
