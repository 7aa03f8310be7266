"""The request the FHIR facade is answering (`Call`) and the answer it sends back (`Reply`).

Plain objects rather than Starlette's Request/Response: the facade serves every `/fhir` request
on the gateway's hot path, and these carry only what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from services.gateway.access import AccessPolicy
from services.gateway.client import UpstreamResponse
from services.gateway.proxy import FORWARD_REQUEST_HEADERS, FORWARD_RESPONSE_HEADERS, ServiceClients
from shared.errors import http_status, operation_outcome
from shared.fhir.audit import ACTOR_HEADER
from shared.fhir.rest.caller import ORGANIZATION_HEADER

FHIR_JSON_UTF8 = b"application/fhir+json; charset=utf-8"


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    #: Header names lower-case; content-type included, content-length added when sent.
    headers: list[tuple[bytes, bytes]]

    @classmethod
    def from_upstream(cls, upstream: UpstreamResponse) -> Reply:
        headers = [(k, v) for k, v in upstream.headers if k in FORWARD_RESPONSE_HEADERS]
        return cls(upstream.status, upstream.body, headers)

    @classmethod
    def fhir(cls, body: bytes, status: int = 200) -> Reply:
        return cls(status, body, [(b"content-type", FHIR_JSON_UTF8)])

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> Reply:
        return cls.fhir(orjson.dumps(obj), status)

    @classmethod
    def error(cls, exc: BaseException) -> Reply:
        return cls.json(operation_outcome(exc), http_status(exc))


@dataclass(slots=True)
class Call:
    """One `/fhir` request: what the client sent, who sent it, and where to send it on."""

    method: str
    #: The path after `/fhir/`, percent-decoded (for routing).
    path: str
    #: The path and query exactly as received (for forwarding unchanged).
    raw_target: bytes
    #: The raw query string.
    query: str
    headers: dict[str, str]
    body: bytes
    #: The public base URL of the FHIR API (for Location headers, fullUrls and links).
    base: str
    policy: AccessPolicy
    clients: ServiceClients
    #: Form parameters of a POST _search, merged with the query by the search pipeline.
    extra: dict[str, Any] = field(default_factory=dict)

    def forward_headers(self) -> list[tuple[str, str]]:
        """The client's FHIR headers, and who the client is."""
        forwarded = [
            (name, value) for name in FORWARD_REQUEST_HEADERS if (value := self.headers.get(name)) is not None
        ]
        forwarded.extend(self.identity_headers())
        return forwarded

    def identity_headers(self) -> list[tuple[str, str]]:
        """Who the client is, for the service (shared/fhir/rest/caller.py): the token's subject
        (audit records) and a clinic token's Organization (referral decides Task roles by it).
        Clients cannot send these themselves: only FORWARD_REQUEST_HEADERS are passed on."""
        principal = self.policy.principal
        headers = [(ACTOR_HEADER, principal.subject)]
        if principal.organization:
            headers.append((ORGANIZATION_HEADER, str(principal.organization)))
        return headers

    async def forward(
        self, service: str, method: str | None = None, target: bytes | None = None, body: bytes | None = None
    ) -> UpstreamResponse:
        """Send this request (or a rewrite of it) to a service, with the client's FHIR headers."""
        return await self.clients.send(
            service,
            method or self.method,
            self.raw_target if target is None else target,
            self.forward_headers(),
            self.body if body is None else body,
            self.base,
        )
