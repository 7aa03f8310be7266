"""`GET /fhir/Patient/{id}/$everything` across the services
(http://hl7.org/fhir/R4/patient-operation-everything.html).

The Patient comes from intake, then every owned type in the patient compartment (the types with
a `patient` search parameter) is searched with ``patient=Patient/{id}`` at its owner, all in
parallel, following `next` links. The answer is one searchset with the Patient first. Scopes
apply: types the token may not search are left out, and what a restricted token may not see is
filtered out. Supported parameters: `_type` (comma-separated types) and `_since` (an instant:
only resources changed since). The answer is not paged; past `EVERYTHING_LIMIT` resources it is
cut short, and says so in an OperationOutcome entry (search.mode = outcome).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson

from services.gateway import searchsets
from services.gateway.access import PATIENT_LINKED, Restriction, require_permitted, search_restrictions
from services.gateway.context import Call, Reply
from services.gateway.proxy import FHIR_JSON, Route, raise_for_answer
from shared.errors import Forbidden, InvalidInput
from shared.fhir.ownership import OWNED_TYPES, OWNER_OF

#: Most resources one $everything returns.
EVERYTHING_LIMIT = 10_000
_PAGE = 1000
#: Compartment types the backing services serve (the gateway's own AuditEvents are not part of
#: a patient's record), in the ownership table's order.
COMPARTMENT_TYPES = tuple(
    t
    for service, types in OWNED_TYPES.items()
    if service != "gateway"
    for t in types
    if t in PATIENT_LINKED and t != "Patient"
)


def _options(query: str) -> tuple[list[str], str | None]:
    types: list[str] = list(COMPARTMENT_TYPES)
    since = None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "_type":
            asked = [t for t in value.split(",") if t]
            unknown = [t for t in asked if t not in COMPARTMENT_TYPES and t != "Patient"]
            if unknown:
                raise InvalidInput(f"_type names types outside the patient compartment: {', '.join(unknown)}")
            types = [t for t in types if t in asked]
        elif key == "_since":
            since = value
        elif key not in ("_format",):
            raise InvalidInput(f"Patient/$everything does not support the parameter {key!r}")
    return types, since


async def everything(call: Call, route: Route, restriction: Restriction) -> Reply:
    assert route.id is not None
    types, since = _options(call.query)
    target = f"/fhir/Patient/{quote(route.id, safe='')}".encode()
    upstream = await call.clients.send("intake", "GET", target, [("accept", FHIR_JSON)], b"", call.base)
    if upstream.status != 200:
        return Reply.from_upstream(upstream)  # 404, 410: as the owner said
    patient = orjson.loads(upstream.body)
    require_permitted("Patient", patient, restriction)
    searchable = [t for t in types if _may_search(call, t)]
    gathered = await asyncio.gather(*(_gather(call, t, route.id, since) for t in searchable))
    found = [{"fullUrl": f"{call.base}/Patient/{route.id}", "resource": patient, "search": {"mode": "match"}}]
    truncated = False
    for entries in gathered:
        room = EVERYTHING_LIMIT - len(found)
        truncated = truncated or len(entries) > room
        found.extend(entries[: max(room, 0)])
    self_link = f"{call.base}/Patient/{route.id}/$everything" + (f"?{call.query}" if call.query else "")
    bundle = searchsets.searchset(found, self_link)
    searchsets.filter_entries(bundle, call.policy)
    bundle["total"] = len(searchsets.entries(bundle))
    if truncated:
        bundle.setdefault("entry", []).append(_truncation_outcome())
    return Reply.fhir(orjson.dumps(bundle))


def _may_search(call: Call, rtype: str) -> bool:
    try:
        call.policy.restriction(rtype, "search")
    except Forbidden:
        return False
    return True


async def _gather(call: Call, rtype: str, patient_id: str, since: str | None) -> list[dict[str, Any]]:
    """Every entry of `rtype` in the patient's compartment, following `next` up to the limit."""
    params = [("patient", f"Patient/{patient_id}"), ("_count", str(_PAGE))]  # encoded below
    if since:
        params.append(("_lastUpdated", f"ge{since}"))
    restriction = call.policy.restriction(rtype, "search")
    params += [p for p in search_restrictions(rtype, restriction) if p not in params]
    target: str | None = f"/fhir/{rtype}?{searchsets.encode_query(params)}"
    found: list[dict[str, Any]] = []
    while target and len(found) <= EVERYTHING_LIMIT:
        answer = await call.clients.get_json(OWNER_OF[rtype], target, call.base)
        raise_for_answer(answer, f"Gathering {rtype} for Patient/$everything")
        for entry in searchsets.entries(answer.body):
            if (
                isinstance(entry.get("resource"), dict)
                and (entry.get("search") or {}).get("mode", "match") == "match"
            ):
                found.append(
                    {
                        "fullUrl": entry.get("fullUrl"),
                        "resource": entry["resource"],
                        "search": {"mode": "match"},
                    }
                )
        url = searchsets.next_link(answer.body)
        target = searchsets.service_target(url, call.base) if url else None
    return found


def _truncation_outcome() -> dict[str, Any]:
    return {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "warning",
                    "code": "too-costly",
                    "diagnostics": f"Patient/$everything stopped at {EVERYTHING_LIMIT} resources; "
                    "use _type or _since, or search each type, to get the rest",
                }
            ],
        },
        "search": {"mode": "outcome"},
    }
