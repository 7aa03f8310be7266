"""`POST /fhir` with a batch or transaction Bundle (http://hl7.org/fhir/R4/http.html#transaction).

- A **transaction** is atomic within one service (each has its own database): one whose entries
  all belong to one service is forwarded whole to it; one spanning services is refused with 400
  and an OperationOutcome that says which services it spans.
- A **batch** has no atomicity: it is split by owning service, each part is sent as a batch to
  its service concurrently, and the answers are put back in the order of the request's entries
  (Bundle type batch-response). An entry the token may not perform gets a 403 answer of its own
  and is not sent; a service that cannot be reached gives its entries 503 answers.

Every entry is authorized at the door like a single request. For restricted tokens (patient/
scopes, a clinic's organization) searches and conditional writes get the restriction added to
their URL, written resources are checked, and what comes back is filtered. Cross-service chains
and includes are not resolved inside a batch (send those searches on their own).
"""

from __future__ import annotations

import asyncio
import http
from dataclasses import dataclass
from typing import Any

import orjson

from services.gateway import searchsets
from services.gateway.access import Restriction
from services.gateway.context import Call, Reply
from services.gateway.proxy import FHIR_JSON, Route, parse_json, route
from services.gateway.writes import check_write, restricted_condition
from shared.errors import (
    CareBridgeError,
    DependencyUnavailable,
    Forbidden,
    InvalidInput,
    http_status,
    operation_outcome,
)
from shared.http import parse_json_object


@dataclass
class _Entry:
    index: int
    entry: dict[str, Any]
    route: Route | None = None
    restriction: Restriction | None = None
    #: Set when the entry is answered by the gateway itself (refused).
    answer: dict[str, Any] | None = None


async def batch_or_transaction(call: Call) -> Reply:
    bundle = parse_json_object(call.body)
    kind = bundle.get("type")
    if bundle.get("resourceType") != "Bundle" or kind not in ("batch", "transaction"):
        raise InvalidInput("POST /fhir takes a Bundle of type batch or transaction")
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise InvalidInput("Bundle.entry must be a list")
    entries = [_Entry(i, e if isinstance(e, dict) else {}) for i, e in enumerate(raw_entries)]
    await asyncio.gather(*(_authorize(call, e, strict=kind == "transaction") for e in entries))
    if kind == "transaction":
        return await _transaction(call, bundle, entries)
    return await _batch(call, entries)


def _entry_route(call: Call, entry: dict[str, Any]) -> tuple[Route, str, str]:
    request = entry.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("method"), str):
        raise InvalidInput("Every entry needs request.method and request.url")
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidInput("Every entry needs request.method and request.url")
    if url.startswith(call.base + "/"):
        url = url[len(call.base) + 1 :]
    elif "://" in url:
        raise InvalidInput(f"Entry URL {url} is not on this server")
    path, _, query = url.lstrip("/").partition("?")
    method = request["method"].upper()
    return route("GET" if method == "HEAD" else method, path), path, query


async def _authorize(call: Call, item: _Entry, *, strict: bool) -> None:
    """Route and authorize one entry; refusals become the entry's answer (or, in a transaction,
    refuse the whole Bundle, since it is all or nothing)."""
    try:
        rte, path, query = _entry_route(call, item.entry)
        if rte.service == "gateway":
            raise InvalidInput(f"{rte.resource_type} is not available in batch or transaction Bundles")
        if rte.interaction == "everything":
            raise InvalidInput("Operations are not available in batch or transaction Bundles")
        item.route = rte
        item.restriction = call.policy.restriction(rte.resource_type, rte.interaction)
        if not item.restriction.unrestricted:
            await check_write(call, rte, item.restriction, item.entry.get("resource"))
            if rte.id is None and rte.interaction in ("search", "update", "patch", "delete"):
                url = f"{path}?{restricted_condition(rte, query, item.restriction)}"
                item.entry = {**item.entry, "request": {**item.entry["request"], "url": url}}
    except CareBridgeError as exc:
        if strict:
            refusal = Forbidden if isinstance(exc, Forbidden) else InvalidInput
            raise refusal(f"Entry {item.index}: {exc.diagnostics}") from None
        item.answer = _error_entry(exc)


async def _transaction(call: Call, bundle: dict[str, Any], entries: list[_Entry]) -> Reply:
    types_by_service: dict[str, set[str]] = {}
    for e in entries:
        if e.route is not None:
            types_by_service.setdefault(e.route.service, set()).add(e.route.resource_type)
    services = sorted(types_by_service)
    if len(services) > 1:
        spans = "; ".join(f"{s} ({', '.join(sorted(types_by_service[s]))})" for s in services)
        raise InvalidInput(
            "A transaction is atomic within one service, and this one spans several: "
            f"{spans}. Send one transaction per service, or a batch."
        )
    if not services:
        return Reply.json({"resourceType": "Bundle", "type": "transaction-response"})
    restricted = any(e.restriction is not None and not e.restriction.unrestricted for e in entries)
    body = orjson.dumps({**bundle, "entry": [e.entry for e in entries]}) if restricted else call.body
    headers = [("accept", FHIR_JSON), ("content-type", FHIR_JSON), *call.identity_headers()]
    upstream = await call.clients.send(services[0], "POST", b"/fhir", headers, body, call.base)
    if upstream.status != 200 or not restricted:
        return Reply.from_upstream(upstream)
    answer = parse_json(upstream.body, services[0])
    got = answer.get("entry")
    if isinstance(got, list) and len(got) == len(entries):
        _filter_answers(call, entries, got)
    return Reply.json(answer)


async def _batch(call: Call, entries: list[_Entry]) -> Reply:
    by_service: dict[str, list[_Entry]] = {}
    for item in entries:
        if item.answer is None and item.route is not None:
            by_service.setdefault(item.route.service, []).append(item)
    await asyncio.gather(*(_send_part(call, service, part) for service, part in by_service.items()))
    answers = [item.answer or _error_entry(DependencyUnavailable("No answer")) for item in entries]
    _filter_answers(call, entries, answers)
    return Reply.json({"resourceType": "Bundle", "type": "batch-response", "entry": answers})


async def _send_part(call: Call, service: str, part: list[_Entry]) -> None:
    body = orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": [e.entry for e in part]})
    headers = [("accept", FHIR_JSON), ("content-type", FHIR_JSON), *call.identity_headers()]
    try:
        upstream = await call.clients.send(service, "POST", b"/fhir", headers, body, call.base)
        answer = parse_json(upstream.body, service)
    except CareBridgeError as exc:
        for item in part:
            item.answer = _error_entry(exc)
        return
    got = answer.get("entry") if upstream.status == 200 else None
    if not isinstance(got, list) or len(got) != len(part):
        # The service refused the whole part (or answered out of shape): each entry says so.
        outcome = answer if answer.get("resourceType") == "OperationOutcome" else None
        status = upstream.status if upstream.status != 200 else 502
        for item in part:
            item.answer = {
                "response": {"status": _status_text(status), **({"outcome": outcome} if outcome else {})}
            }
        return
    for item, got_entry in zip(part, got, strict=True):
        item.answer = (
            got_entry if isinstance(got_entry, dict) else _error_entry(DependencyUnavailable("No answer"))
        )


_READS = frozenset({"read", "vread", "search", "history"})


def _filter_answers(call: Call, entries: list[_Entry], answers: list[Any]) -> None:
    """What the token may not see does not leave in the answer to a read or search entry either."""
    for i, (item, answer) in enumerate(zip(entries, answers, strict=True)):
        if item.route is None or item.route.interaction not in _READS:
            continue
        resource = answer.get("resource") if isinstance(answer, dict) else None
        if not isinstance(resource, dict):
            continue
        rtype = str(resource.get("resourceType"))
        if rtype == "Bundle":
            searchsets.filter_entries(
                resource, call.policy, matches_checked=item.route.interaction == "search"
            )
        elif rtype != "OperationOutcome" and not call.policy.may_see(rtype, resource):
            answers[i] = _error_entry(Forbidden(f"This {rtype} is outside what the token may see"))


def _error_entry(exc: BaseException) -> dict[str, Any]:
    return {"response": {"status": _status_text(http_status(exc)), "outcome": operation_outcome(exc)}}


def _status_text(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)
