"""`GET /fhir/metadata`: one CapabilityStatement for the whole API (R4 http.html#capabilities),
merged from the statements each service publishes about the types it owns.

`rest[0].resource` is every service's list put together, each entry exactly as its service
declared it (what works there); the gateway adds what it does itself: batch and transaction at
the system level, `Patient/$everything`, and the SMART-on-FHIR security description.

The merged statement is kept in memory for `ttl_s` (a deploy changes it, nothing else does).
When a service cannot be reached: if an earlier full statement is known it is served again
(stale but complete: a capability list does not change while a service restarts); otherwise
the answer is 503 with an OperationOutcome naming the unreachable services. A partial statement
is never served: a client would read the missing types as unsupported and might cache that.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from services.gateway.proxy import ServiceClients
from shared.errors import CareBridgeError, DependencyUnavailable
from shared.fhir.ownership import OWNER_OF
from shared.fhir.search_params import SEARCH_PARAMETERS

log = logging.getLogger(__name__)

#: R4 restful-security-service code for SMART App Launch.
_SMART = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}
    ],
    "text": "OAuth2 bearer tokens with SMART App Launch v2 scopes",
}
_SECURITY_TEXT = (
    "Every request but GET /metadata needs a bearer JWT (RS256 verified against the configured JWKS; "
    "HS256 in development). SMART v2 scopes (system/, user/, patient/ with c r u d s) are enforced per "
    "interaction; patient/ scopes reach only the compartment of the token's patient claim, and a token "
    "with an organization claim sees only the ServiceRequests and Tasks addressed to that Organization."
)
_EVERYTHING = {
    "name": "everything",
    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
}


class CapabilityCache:
    def __init__(
        self,
        clients: ServiceClients,
        *,
        ttl_s: float = 30.0,
        local: Callable[[str], list[dict[str, Any]]] | None = None,
    ):
        self._clients = clients
        self._ttl_s = ttl_s
        self._local = local
        self._lock = asyncio.Lock()
        #: public base URL -> (fresh until, statement bytes)
        self._cached: dict[str, tuple[float, bytes]] = {}

    async def statement(self, public_base: str) -> bytes:
        cached = self._cached.get(public_base)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        async with self._lock:
            cached = self._cached.get(public_base)
            if cached and cached[0] > time.monotonic():
                return cached[1]
            try:
                parts = await self._fetch(public_base)
            except DependencyUnavailable:
                if cached:
                    log.warning("serving the last CapabilityStatement: a service is unreachable")
                    return cached[1]
                raise
            body = orjson.dumps(merge(parts, public_base, self._local(public_base) if self._local else []))
            self._cached[public_base] = (time.monotonic() + self._ttl_s, body)
            return body

    async def _fetch(self, public_base: str) -> dict[str, dict[str, Any]]:
        names = list(self._clients.pools)

        async def one(name: str) -> dict[str, Any] | None:
            try:
                answer = await self._clients.get_json(name, "/fhir/metadata", public_base)
            except CareBridgeError:
                return None
            ok = answer.status == 200 and answer.body.get("resourceType") == "CapabilityStatement"
            return answer.body if ok else None

        found = await asyncio.gather(*(one(n) for n in names))
        missing = [n for n, statement in zip(names, found, strict=True) if statement is None]
        if missing:
            raise DependencyUnavailable(
                f"The CapabilityStatement cannot be assembled: {', '.join(missing)} did not answer"
            )
        return {n: s for n, s in zip(names, found, strict=True) if s is not None}


def remote_revincludes(target: str) -> list[str]:
    """`Source:param` the gateway resolves for `target`: reference parameters of types another
    service owns that may point at it (each service declares only its own)."""
    here = OWNER_OF.get(target)
    found = []
    for source, params in SEARCH_PARAMETERS.items():
        if OWNER_OF.get(source) in (None, here):
            continue
        for param in params:
            if param.type == "reference" and (not param.targets or target in param.targets):
                found.append(f"{source}:{param.name}")
    return found


def _server_rest(statement: dict[str, Any]) -> dict[str, Any]:
    for rest in statement.get("rest") or ():
        if isinstance(rest, dict) and rest.get("mode", "server") == "server":
            return rest
    return {}


def merge(parts: dict[str, dict[str, Any]], public_base: str, local: list[dict[str, Any]]) -> dict[str, Any]:
    """One statement from the services' statements (and the gateway's own resources).

    System-level interactions are the gateway's own (batch, transaction): a service's
    whole-system search or history covers only that service, so the gateway does not offer them.
    """
    resources: list[dict[str, Any]] = list(local)
    for statement in parts.values():
        rest = _server_rest(statement)
        resources.extend(r for r in rest.get("resource") or () if isinstance(r, dict))
    resources.sort(key=lambda r: str(r.get("type")))
    for resource in resources:
        rtype = str(resource.get("type"))
        remote = remote_revincludes(rtype)
        if remote:
            declared = [r for r in resource.get("searchRevInclude") or () if r not in remote]
            resource["searchRevInclude"] = [*declared, *remote]
        if rtype == "Patient":
            operations = [o for o in resource.get("operation") or () if o.get("name") != "everything"]
            resource["operation"] = [*operations, _EVERYTHING]
    interactions = [{"code": "batch"}, {"code": "transaction"}]
    first = next(iter(parts.values()), {})
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "publisher": "CareBridge",
        "kind": "instance",
        "software": {"name": "CareBridge"},
        "implementation": {"description": "CareBridge FHIR R4 API", "url": public_base},
        "fhirVersion": first.get("fhirVersion", "4.0.1"),
        "format": first.get("format") or ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Transactions are atomic within one service; a transaction whose "
                "entries span services is refused. Batches may span services.",
                "security": {"cors": False, "service": [_SMART], "description": _SECURITY_TEXT},
                "resource": resources,
                "interaction": interactions,
            }
        ],
    }
