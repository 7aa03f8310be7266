"""Which service answers a `/fhir/...` request, and the pooled connections the gateway uses to ask it.

`route()` maps a request onto a FHIR interaction (R4 http.html) and the service that owns the
resource type (shared/fhir/ownership.py). `ServiceClients` holds one keep-alive pool per backing
service (services/gateway/client.py) and adds what every forwarded request carries: the public
base URL (so Location headers and fullUrls point at the gateway) and the W3C trace context.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from services.gateway.client import BackendPool, UpstreamResponse
from shared.errors import DependencyUnavailable, InvalidInput, MethodNotAllowed, NotFound
from shared.fhir.operations import OperationDefinition, find_operation
from shared.fhir.ownership import OWNER_OF
from shared.fhir.router import FORWARDED_BASE_HEADER
from shared.telemetry import http_headers_from_context

#: Request headers a client may send that the owning service needs (R4 http.html: conditional
#: interactions, Prefer, content negotiation).
FORWARD_REQUEST_HEADERS = (
    "content-type",
    "accept",
    "if-match",
    "if-none-match",
    "if-none-exist",
    "if-modified-since",
    "prefer",
)
#: Response headers the client gets back.
FORWARD_RESPONSE_HEADERS = frozenset(
    {b"content-type", b"etag", b"last-modified", b"location", b"content-location"}
)
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True, slots=True)
class Route:
    service: str
    resource_type: str
    #: create | read | vread | update | patch | delete | search | history | everything | operation
    interaction: str
    #: The logical id for instance-level interactions; None at type level (search, create,
    #: conditional update/patch/delete).
    id: str | None = None
    #: A path template for span names: the id does not belong in them.
    template: str = ""
    #: For interaction "operation": which one (its `interaction` is what the token needs).
    operation: OperationDefinition | None = None


_TYPE_LEVEL = {"POST": "create", "GET": "search", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_INSTANCE_LEVEL = {"GET": "read", "HEAD": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def route(method: str, path: str) -> Route:
    """Which service and which FHIR interaction a `/fhir/<path>` request is (R4 http.html)."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in OWNER_OF:
        raise NotFound(f"Unknown or unsupported resource type {parts[0] if parts else ''!r}")
    rtype, n = parts[0], len(parts)
    table: dict[str, str]
    id_ = parts[1] if n > 1 and not parts[1].startswith(("_", "$")) else None
    if n == 1:
        table, template = _TYPE_LEVEL, "/fhir/{type}"
    elif n == 2 and parts[1] == "_search":
        table, template = {"POST": "search"}, "/fhir/{type}/_search"
    elif n == 2 and parts[1] == "_history":
        table, template = {"GET": "history"}, "/fhir/{type}/_history"
    elif n == 3 and parts[2] == "_history" and id_:
        table, template = {"GET": "history"}, "/fhir/{type}/{id}/_history"
    elif n == 4 and parts[2] == "_history" and id_:
        table, template = {"GET": "vread"}, "/fhir/{type}/{id}/_history/{vid}"
    elif n == 3 and rtype == "Patient" and parts[2] == "$everything" and id_:
        table, template = {"GET": "everything"}, "/fhir/Patient/{id}/$everything"
    elif (n == 2 and parts[1].startswith("$")) or (n == 3 and parts[2].startswith("$") and id_):
        return _operation_route(method, path, rtype, parts[-1], id_)
    elif n == 2 and id_:
        table, template = _INSTANCE_LEVEL, "/fhir/{type}/{id}"
    else:
        raise NotFound(f"No such endpoint: /fhir/{path}")
    interaction = table.get(method)
    if interaction is None:
        raise MethodNotAllowed(f"{method} is not allowed on /fhir/{path}")
    return Route(OWNER_OF[rtype], rtype, interaction, id_, template)


def _operation_route(method: str, path: str, rtype: str, code: str, id_: str | None) -> Route:
    """`[type]/$name` or `[type]/[id]/$name`: one of the operations in shared/fhir/operations.py."""
    operation = find_operation(rtype, code, instance=id_ is not None)
    if operation is None:
        raise NotFound(f"Operation {code} is not supported on {rtype}{'/[id]' if id_ else ''}")
    if method not in operation.methods:
        raise MethodNotAllowed(
            f"{method} is not allowed on /fhir/{path}; use {' or '.join(operation.methods)}"
        )
    template = f"/fhir/{rtype}/{{id}}/{code}" if id_ else f"/fhir/{rtype}/{code}"
    return Route(OWNER_OF[rtype], rtype, "operation", id_, template, operation)


@dataclass(frozen=True, slots=True)
class JsonAnswer:
    """A service's answer parsed as JSON (what the gateway's own fan-out requests read)."""

    status: int
    body: dict[str, Any]
    raw: UpstreamResponse


class ServiceClients:
    """One keep-alive connection pool per backing service."""

    def __init__(self, urls: dict[str, str], *, max_connections: int = 64, timeout_s: float = 30.0):
        self.pools = {
            name: BackendPool(name, url, max_connections=max_connections, timeout_s=timeout_s)
            for name, url in urls.items()
        }

    async def aclose(self) -> None:
        await asyncio.gather(*(pool.aclose() for pool in self.pools.values()))

    async def send(
        self,
        service: str,
        method: str,
        target: bytes,
        headers: list[tuple[str, str]],
        body: bytes,
        public_base: str,
    ) -> UpstreamResponse:
        """One request to a service, with the public base URL and the current trace context."""
        outgoing = [*headers, (FORWARDED_BASE_HEADER, public_base)]
        outgoing.extend(http_headers_from_context().items())
        return await self.pools[service].request(method, target, outgoing, body)

    async def get_json(self, service: str, target: str, public_base: str) -> JsonAnswer:
        """GET `target` (a path with query, already encoded) and parse the answer."""
        raw = await self.send(
            service, "GET", target.encode("latin-1"), [("accept", FHIR_JSON)], b"", public_base
        )
        return JsonAnswer(raw.status, parse_json(raw.body, service), raw)

    async def post_json(self, service: str, target: str, body: bytes, public_base: str) -> JsonAnswer:
        headers = [("accept", FHIR_JSON), ("content-type", FHIR_JSON)]
        raw = await self.send(service, "POST", target.encode("latin-1"), headers, body, public_base)
        return JsonAnswer(raw.status, parse_json(raw.body, service), raw)

    async def readiness(self) -> dict[str, Any]:
        async def one(name: str, pool: BackendPool) -> tuple[str, Any]:
            try:
                async with asyncio.timeout(3.0):
                    response = await pool.request("GET", b"/readyz", [("accept", "application/json")])
                body = orjson.loads(response.body)
                return name, {"ready": response.status == 200, "checks": body.get("checks", {})}
            except (DependencyUnavailable, TimeoutError, orjson.JSONDecodeError) as exc:
                return name, {"ready": False, "error": f"unreachable: {type(exc).__name__}"}

        results = await asyncio.gather(*(one(n, p) for n, p in self.pools.items()))
        return dict(results)


def parse_json(body: bytes, service: str) -> dict[str, Any]:
    """A service's JSON answer; anything else means the service misbehaved (503, not 500)."""
    try:
        parsed = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        raise DependencyUnavailable(f"The {service} service sent an answer that is not JSON") from None
    if not isinstance(parsed, dict):
        raise DependencyUnavailable(f"The {service} service sent an answer that is not a JSON object")
    return parsed


def outcome_text(answer: JsonAnswer) -> str:
    """The diagnostics of an OperationOutcome a service answered with, for the gateway's own errors."""
    issues = answer.body.get("issue") if answer.body.get("resourceType") == "OperationOutcome" else None
    if isinstance(issues, list) and issues and isinstance(issues[0], dict):
        return str(issues[0].get("diagnostics") or issues[0].get("code") or answer.status)
    return f"status {answer.status}"


def raise_for_answer(answer: JsonAnswer, what: str) -> None:
    """Turn a service's error answer to one of the gateway's own requests into a CareBridge error."""
    if answer.status < 400:
        return
    text = f"{what}: {outcome_text(answer)}"
    if answer.status >= 500:
        raise DependencyUnavailable(text)
    if answer.status == 404:
        raise NotFound(text)
    raise InvalidInput(text)
