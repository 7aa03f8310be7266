"""Routing `/fhir/{type}...` to the service that owns the type, and asking services if they are ready.

The gateway authenticates and authorizes at the door, then forwards the request with its trace
context and the public base URL (so Location headers and fullUrls point at the gateway).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from starlette.responses import Response

from shared.errors import DependencyUnavailable, MethodNotAllowed, NotFound
from shared.fhir.ownership import OWNER_OF
from shared.fhir.router import FORWARDED_BASE_HEADER
from shared.telemetry import http_headers_from_context

#: Request headers a client may send that the owning service needs.
_FORWARD_REQUEST_HEADERS = (
    "content-type",
    "accept",
    "if-match",
    "if-none-match",
    "if-none-exist",
    "if-modified-since",
    "prefer",
)
#: Response headers the client gets back.
_FORWARD_RESPONSE_HEADERS = ("content-type", "etag", "last-modified", "location", "content-location")


@dataclass(frozen=True, slots=True)
class Route:
    service: str
    resource_type: str
    #: create | read | vread | update | patch | delete | search | history
    interaction: str


_TYPE_LEVEL = {"POST": "create", "GET": "search", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_INSTANCE_LEVEL = {"GET": "read", "HEAD": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def route(method: str, path: str) -> Route:
    """Which service and which FHIR interaction a `/fhir/<path>` request is (R4 http.html)."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in OWNER_OF:
        raise NotFound(f"Unknown or unsupported resource type {parts[0] if parts else ''!r}")
    rtype, n = parts[0], len(parts)
    table: dict[str, str]
    if n == 1:
        table = _TYPE_LEVEL
    elif n == 2 and parts[1] == "_search":
        table = {"POST": "search", "GET": "search"}
    elif (n == 2 and parts[1] == "_history") or (n == 3 and parts[2] == "_history"):
        table = {"GET": "history"}
    elif n == 4 and parts[2] == "_history":
        table = {"GET": "vread"}
    elif n == 2:
        table = _INSTANCE_LEVEL
    else:
        raise NotFound(f"No such endpoint: /fhir/{path}")
    interaction = table.get(method)
    if interaction is None:
        raise MethodNotAllowed(f"{method} is not allowed on /fhir/{path}")
    return Route(OWNER_OF[rtype], rtype, interaction)


class ServiceClients:
    """One pooled HTTP client per backing service."""

    def __init__(self, urls: dict[str, str], timeout_s: float = 30.0):
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
        self._clients = {
            name: httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits)
            for name, url in urls.items()
        }

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients.values()))

    async def forward(
        self, service: str, method: str, path: str, query: str, headers: Any, body: bytes, public_base: str
    ) -> Response:
        outgoing = {k: v for k in _FORWARD_REQUEST_HEADERS if (v := headers.get(k)) is not None}
        outgoing[FORWARDED_BASE_HEADER] = public_base
        outgoing.update(http_headers_from_context())
        url = f"/fhir/{path}" + (f"?{query}" if query else "")
        try:
            upstream = await self._clients[service].request(
                method, url, content=body or None, headers=outgoing
            )
        except httpx.TransportError as exc:
            raise DependencyUnavailable(
                f"The {service} service is unavailable ({type(exc).__name__})"
            ) from None
        back = {k: v for k in _FORWARD_RESPONSE_HEADERS if (v := upstream.headers.get(k)) is not None}
        return Response(upstream.content, upstream.status_code, back)

    async def readiness(self) -> dict[str, Any]:
        async def one(name: str, client: httpx.AsyncClient) -> tuple[str, Any]:
            try:
                response = await client.get("/readyz", timeout=3.0)
                body = orjson.loads(response.content)
                return name, {"ready": response.status_code == 200, "checks": body.get("checks", {})}
            except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
                return name, {"ready": False, "error": f"unreachable: {type(exc).__name__}"}

        results = await asyncio.gather(*(one(n, c) for n, c in self._clients.items()))
        return dict(results)
