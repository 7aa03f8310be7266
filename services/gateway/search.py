"""Searches through the gateway: access restrictions, chains and includes across services.

Each service searches only the types it owns: a chain whose target type lives in another service
is refused there, and `_include`/`_revinclude` naming another service's types are left out. The
gateway closes that gap (R4 search.html#chaining, #include):

- A chain such as ``CarePlan?subject:Patient.identifier=sys|val`` is resolved first by asking
  the owner of the target (``Patient?identifier=sys|val&_elements=id&_count=1000``) and
  rewritten to ``subject=Patient/a,Patient/b``; no match gives an empty searchset without asking
  the owner of CarePlan at all. More than 1,000 matches is refused (too costly).
- Remote includes are fetched after the owner answered: the references of each included
  parameter are collected from the page's matches and fetched from their owners with one ``_id``
  search per type; remote revincludes search the owner of the source type with
  ``param=Type/id1,Type/id2``. They are added as entries with ``search.mode = include``.
  ``:iterate`` includes are left to the owning service (they do not cross services).
- Include parameters the owner could not have answered are not sent to it, and are put back into
  the paging links so that ``next`` repeats the same search.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.gateway import searchsets
from services.gateway.access import Restriction, references, search_restrictions
from services.gateway.client import UpstreamResponse
from services.gateway.context import Call, Reply
from services.gateway.proxy import Route, raise_for_answer
from shared.errors import InvalidInput
from shared.fhir.ownership import OWNER_OF
from shared.fhir.search_params import param, params_for

#: Most targets a chain may resolve to (the largest page a service gives, R4 _count max here).
CHAIN_LIMIT = 1000
#: Ids per `_id` / reference search when fetching includes (keeps URLs short).
_IDS_PER_REQUEST = 100
#: Above this length a rewritten search goes to the service as POST _search (R4 search.html#2.21.1.3).
_MAX_URL_QUERY = 6000
_FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class RemoteChain:
    key: str
    value: str
    #: The reference parameter of the searched type, e.g. "subject".
    reference: str
    #: The chained type, e.g. "Patient".
    target: str
    #: The parameter (with any modifier) searched on the target, e.g. "identifier".
    target_param: str


@dataclass(frozen=True, slots=True)
class RemoteInclude:
    source: str
    #: A reference parameter of `source`, or "*" for all of them.
    param: str
    #: The remote types wanted; None: any type another service owns.
    allowed: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class RemoteRevInclude:
    source: str
    param: str


@dataclass
class SearchPlan:
    #: What the owner is sent (chains still to be resolved are not in it).
    forward: list[tuple[str, str]] = field(default_factory=list)
    chains: list[RemoteChain] = field(default_factory=list)
    includes: list[RemoteInclude] = field(default_factory=list)
    revincludes: list[RemoteRevInclude] = field(default_factory=list)
    #: Include parameters not sent to the owner, put back into the paging links.
    withheld: list[tuple[str, str]] = field(default_factory=list)
    #: Whether the search asks for includes at all (their entries then need access filtering).
    includes_anything: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.chains or self.withheld)


def plan_search(resource_type: str, params: list[tuple[str, str]]) -> SearchPlan:
    """Split a search into what the owning service answers and what the gateway adds. Pure."""
    here = OWNER_OF[resource_type]
    plan = SearchPlan()
    for key, value in params:
        name = key.split(":", 1)[0]
        if name in ("_include", "_revinclude"):
            plan.includes_anything = True
        if key == "_include" and _plan_include(resource_type, here, value, plan):
            plan.withheld.append((key, value))
        elif key == "_revinclude" and _plan_revinclude(resource_type, here, value, plan):
            plan.withheld.append((key, value))
        elif (
            "." in key
            and not key.startswith("_")
            and (chain := _remote_chain(resource_type, here, key, value))
        ):
            plan.chains.append(chain)
        else:
            plan.forward.append((key, value))
    return plan


def _remote_chain(resource_type: str, here: str, key: str, value: str) -> RemoteChain | None:
    head, rest = key.split(".", 1)
    name, _, modifier = head.partition(":")
    definition = param(resource_type, name)
    if definition is None or definition.type != "reference":
        return None  # the owner says what is wrong with it
    if modifier:
        candidates = [modifier]
    else:
        targets = definition.targets or tuple(OWNER_OF)
        candidates = [t for t in targets if t in OWNER_OF]
    if all(OWNER_OF.get(t) == here for t in candidates):
        return None  # a chain within one service: the owner resolves it
    if len(candidates) != 1:
        raise InvalidInput(
            f"The chained parameter {key} may point at several types owned by different services; "
            f"name the type, e.g. {name}:{candidates[0]}.{rest}"
        )
    target = candidates[0]
    if target not in OWNER_OF:
        raise InvalidInput(f"The chained parameter {key} names {target!r}, which this server does not serve")
    if "." in rest:
        raise InvalidInput(f"The chained parameter {key} chains more than one level across services")
    return RemoteChain(key, value, name, target, rest)


def _plan_include(resource_type: str, here: str, value: str, plan: SearchPlan) -> bool:
    """Record a remote part of `_include=Source:param[:Target]`; True when the owner can do none of it."""
    parts = value.split(":")
    if len(parts) not in (2, 3) or parts[0] != resource_type:
        return False
    source, name = parts[0], parts[1]
    if name == "*":
        plan.includes.append(RemoteInclude(source, "*", None))
        return False
    definition = param(source, name)
    if definition is None or definition.type != "reference":
        return False
    if len(parts) == 3:
        target = parts[2]
        if target not in OWNER_OF or OWNER_OF[target] == here:
            return False
        plan.includes.append(RemoteInclude(source, name, frozenset({target})))
        return True
    if not definition.targets:
        plan.includes.append(RemoteInclude(source, name, None))
        return False
    remote = frozenset(t for t in definition.targets if OWNER_OF.get(t) not in (None, here))
    if remote:
        plan.includes.append(RemoteInclude(source, name, remote))
    return bool(remote) and not any(OWNER_OF.get(t) == here for t in definition.targets)


def _plan_revinclude(resource_type: str, here: str, value: str, plan: SearchPlan) -> bool:
    parts = value.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != resource_type):
        return False
    source, name = parts[0], parts[1]
    if source not in OWNER_OF or OWNER_OF[source] == here:
        return False
    definition = param(source, name)
    if definition is None or definition.type != "reference":
        raise InvalidInput(f"_revinclude={value}: {source} has no reference search parameter {name!r}")
    if definition.targets and resource_type not in definition.targets:
        raise InvalidInput(f"_revinclude={value}: {source}.{name} does not point at {resource_type}")
    plan.revincludes.append(RemoteRevInclude(source, name))
    return True


# --- running it ----------------------------------------------------------------------------------


async def search(call: Call, route: Route, params: list[tuple[str, str]], restriction: Restriction) -> Reply:
    rtype = route.resource_type
    plan = plan_search(rtype, params)
    added = search_restrictions(rtype, restriction)
    forward = plan.forward + added
    if plan.chains:
        resolved = await asyncio.gather(*(_resolve_chain(call, chain) for chain in plan.chains))
        if any(not value for value in resolved):
            return Reply.fhir(searchsets.empty_searchset(_self_link(call, rtype)))
        forward += [(chain.reference, value) for chain, value in zip(plan.chains, resolved, strict=True)]
    if plan.changed or added:
        upstream = await _send_search(call, route, forward)
    else:
        upstream = await call.forward(route.service)  # untouched: the owner sees what the client sent
    if upstream.status != 200:
        return Reply.from_upstream(upstream)
    edit = plan.includes or plan.revincludes or plan.withheld or plan.includes_anything
    if not edit and restriction.unrestricted:
        return Reply.from_upstream(upstream)
    bundle = orjson.loads(upstream.body)
    await _add_remote_includes(call, route, plan, bundle)
    searchsets.filter_entries(bundle, call.policy, matches_checked=True)
    searchsets.append_to_links(bundle, plan.withheld)
    return Reply.fhir(orjson.dumps(bundle))


def _self_link(call: Call, rtype: str) -> str:
    query = call.query or searchsets.encode_query(call.extra.get("form", []))
    return f"{call.base}/{rtype}" + (f"?{query}" if query else "")


async def _send_search(call: Call, route: Route, params: list[tuple[str, str]]) -> UpstreamResponse:
    query = searchsets.encode_query(params)
    if len(query) <= _MAX_URL_QUERY:
        return await call.forward(route.service, "GET", f"/fhir/{route.resource_type}?{query}".encode(), b"")
    headers = [(k, v) for k, v in call.forward_headers() if k != "content-type"] + [("content-type", _FORM)]
    return await call.clients.send(
        route.service,
        "POST",
        f"/fhir/{route.resource_type}/_search".encode(),
        headers,
        query.encode("latin-1"),
        call.base,
    )


async def _resolve_chain(call: Call, chain: RemoteChain) -> str:
    """`Target/a,Target/b` for the targets matching the chained criterion; "" for none."""
    call.policy.restriction(chain.target, "search")  # chaining through a type is searching it
    query = searchsets.encode_query(
        [(chain.target_param, chain.value), ("_elements", "id"), ("_count", str(CHAIN_LIMIT))]
    )
    answer = await call.clients.get_json(OWNER_OF[chain.target], f"/fhir/{chain.target}?{query}", call.base)
    raise_for_answer(answer, f"The chained search {chain.key}={chain.value}")
    if searchsets.next_link(answer.body):
        raise InvalidInput(
            f"The chained search {chain.key}={chain.value} matches more than {CHAIN_LIMIT} "
            f"{chain.target} resources; narrow it",
            issue_code="too-costly",
        )
    ids = [str(r["id"]) for r in searchsets.entry_resources(answer.body) if r.get("id")]
    return ",".join(f"{chain.target}/{id_}" for id_ in ids)


async def _add_remote_includes(call: Call, route: Route, plan: SearchPlan, bundle: dict[str, Any]) -> None:
    if not (plan.includes or plan.revincludes):
        return
    here = route.service
    matches = list(searchsets.entry_resources(bundle))
    wanted: dict[str, set[str]] = {}
    for include in plan.includes:
        names = (
            [p.name for p in params_for(include.source) if p.type == "reference"]
            if include.param == "*"
            else [include.param]
        )
        for resource in matches:
            if resource.get("resourceType") != include.source:
                continue
            for name in names:
                for rtype, id_ in references(include.source, resource, name):
                    if OWNER_OF.get(rtype) not in (None, here) and (
                        include.allowed is None or rtype in include.allowed
                    ):
                        wanted.setdefault(rtype, set()).add(id_)
    present = searchsets.keys(bundle)
    requests = []
    for rtype, ids in wanted.items():
        missing = sorted(i for i in ids if (rtype, i) not in present)
        for chunk in _chunks(missing):
            requests.append((rtype, [("_id", ",".join(chunk)), ("_count", str(len(chunk)))]))
    match_ids = sorted(
        str(r["id"]) for r in matches if r.get("resourceType") == route.resource_type and r.get("id")
    )
    for rev in plan.revincludes:
        for chunk in _chunks(match_ids):
            refs = ",".join(f"{route.resource_type}/{i}" for i in chunk)
            requests.append((rev.source, [(rev.param, refs), ("_count", "1000")]))
    answers = await asyncio.gather(*(_fetch(call, rtype, query) for rtype, query in requests))
    for found in answers:
        searchsets.add_entries(bundle, found, "include")


async def _fetch(call: Call, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    answer = await call.clients.get_json(
        OWNER_OF[rtype], f"/fhir/{rtype}?{searchsets.encode_query(params)}", call.base
    )
    raise_for_answer(answer, f"Including {rtype} from its service")
    return searchsets.entries(answer.body)


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + _IDS_PER_REQUEST] for i in range(0, len(ids), _IDS_PER_REQUEST)]
