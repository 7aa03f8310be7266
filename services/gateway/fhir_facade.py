"""The gateway's `/fhir` door: authenticate, authorize, route to the owning service, and add what
no single service can do (cross-service search features, $everything, batch, the merged
CapabilityStatement).

It is served as plain ASGI in front of the FastAPI app (`FhirRoutes`), because it is the hot path
of every FHIR request: FastAPI's routing, dependency resolution and Response classes cost more
than the rest of a proxied read together. What a request needs is in `Call`, what goes back in
`Reply`; errors leave as OperationOutcome with their status, as everywhere else
(shared/errors.py). `GET /fhir/metadata` is public (R4 http.html#capabilities, SMART App Launch
conformance); everything else needs a bearer token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request

from services.gateway import search as search_
from services.gateway.access import AccessPolicy, Restriction, require_permitted
from services.gateway.batch import batch_or_transaction
from services.gateway.capability import CapabilityCache
from services.gateway.context import Call, Reply
from services.gateway.everything import everything
from services.gateway.proxy import Route, ServiceClients, route
from services.gateway.searchsets import filter_entries
from services.gateway.writes import body_resource, check_write, restricted_condition
from shared.auth import Principal, TokenVerifier
from shared.errors import CareBridgeError, Forbidden, MethodNotAllowed, NotFound
from shared.http import check_accept, read_body

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_FORM = "application/x-www-form-urlencoded"
#: Accept headers FHIR clients send that need no parsing (anything else goes through
#: shared.http.check_accept, the one place the rule lives).
_PLAIN_ACCEPT = frozenset({"application/fhir+json", "application/json", "*/*", "application/fhir+json, */*"})
#: Principals' access decisions, kept across requests (they depend only on the token's claims).
_POLICY_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class _Template:
    """What TracingMiddleware reads from scope["route"] to name the span without the id."""

    path: str


class FhirFacade:
    def __init__(
        self,
        *,
        clients: ServiceClients,
        verifier: TokenVerifier,
        capability: CapabilityCache,
        max_body_bytes: int,
        public_base_url: str | None,
    ):
        self.clients = clients
        self.verifier = verifier
        self.capability = capability
        self.max_body_bytes = max_body_bytes
        self.public_base_url = public_base_url
        self._policies: dict[Principal, AccessPolicy] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send, local: ASGIApp) -> None:
        """Answer one `/fhir` request; `local` serves the types the gateway owns itself (AuditEvent)."""
        try:
            reply = await self._handle(scope, receive, send, local)
        except CareBridgeError as exc:
            reply = Reply.error(exc)
        except Exception as exc:
            # The traceback goes to the log; the client gets no internals (and no PHI).
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            reply = Reply.error(exc)
        if reply is not None:
            await send_reply(send, reply)

    def public_base(self, scope: Scope, headers: dict[str, str]) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = headers.get("host")
        if not host:
            server = scope.get("server") or ("localhost", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}/fhir"

    async def _handle(self, scope: Scope, receive: Receive, send: Send, local: ASGIApp) -> Reply | None:
        method: str = scope["method"]
        sub = scope["path"][6:]  # after "/fhir/"
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request = Request(scope, receive)
        base = self.public_base(scope, headers)
        if sub == "metadata":
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowed(f"{method} is not allowed on /fhir/metadata")
            _check_accept(request, headers, scope["query_string"])
            return Reply.fhir(await self.capability.statement(base))
        principal = await self.verifier.verify_async(headers.get("authorization"))
        policy = self._policy(principal)
        if not sub:
            if method != "POST":
                raise NotFound("Only POST of a batch or transaction Bundle is served at the base URL")
            _check_accept(request, headers, scope["query_string"])
            body = await read_body(request, self.max_body_bytes)
            return await batch_or_transaction(self._call(scope, headers, "", body, base, policy))
        rte = route(method, sub)
        scope["route"] = _Template(rte.template)
        needs = rte.operation.interaction if rte.operation is not None else rte.interaction
        restriction = policy.restriction(rte.resource_type, needs)
        _check_accept(request, headers, scope["query_string"])
        if rte.service == "gateway":
            if not restriction.unrestricted:
                raise Forbidden(f"{rte.resource_type} is only available to user/ and system/ scopes")
            await local(scope, receive, send)
            return None
        body = await read_body(request, self.max_body_bytes) if method in _WITH_BODY else b""
        call = self._call(scope, headers, sub, body, base, policy)
        return await self._dispatch(call, rte, restriction)

    def _policy(self, principal: Principal) -> AccessPolicy:
        policy = self._policies.get(principal)
        if policy is None:
            if len(self._policies) >= _POLICY_CACHE_SIZE:
                self._policies.clear()
            policy = self._policies[principal] = AccessPolicy(principal)
        return policy

    def _call(
        self, scope: Scope, headers: dict[str, str], sub: str, body: bytes, base: str, policy: AccessPolicy
    ) -> Call:
        query: bytes = scope["query_string"]
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        target = raw_path + b"?" + query if query else raw_path
        return Call(
            scope["method"], sub, target, query.decode("latin-1"), headers, body, base, policy, self.clients
        )

    async def _dispatch(self, call: Call, rte: Route, restriction: Restriction) -> Reply:
        interaction = rte.interaction
        if interaction in ("read", "vread"):
            if not restriction.unrestricted:
                # A 304 would confirm a version of a resource the token may not see: ask whole.
                call.headers.pop("if-none-match", None)
                call.headers.pop("if-modified-since", None)
            upstream = await call.forward(rte.service, "GET", body=b"")  # HEAD: uvicorn drops the body
            if upstream.status == 200 and not restriction.unrestricted:
                require_permitted(rte.resource_type, orjson.loads(upstream.body), restriction)
            return Reply.from_upstream(upstream)
        if interaction == "search":
            return await search_.search(call, rte, self._search_params(call), restriction)
        if interaction == "history":
            upstream = await call.forward(rte.service)
            if upstream.status != 200 or restriction.unrestricted:
                return Reply.from_upstream(upstream)
            bundle = orjson.loads(upstream.body)
            filter_entries(bundle, call.policy)
            return Reply.json(bundle)
        if interaction == "everything":
            return await everything(call, rte, restriction)
        if interaction == "operation":
            if not restriction.unrestricted:
                # An operation's answer is not a resource the compartment rules can filter.
                raise Forbidden(f"{rte.template[6:]} is only available to user/ and system/ scopes")
            assert rte.operation is not None
            for rtype, needed in rte.operation.also_needs:
                call.policy.restriction(rtype, needed)  # Forbidden when no scope covers it
            return Reply.from_upstream(await call.forward(rte.service))
        return await self._write(call, rte, restriction)

    def _search_params(self, call: Call) -> list[tuple[str, str]]:
        params = parse_qsl(call.query, keep_blank_values=True)
        media = call.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if call.method == "POST" and media == _FORM:
            form = parse_qsl(call.body.decode("utf-8", "replace"), keep_blank_values=True)
            call.extra["form"] = form
            params += form
        return params

    async def _write(self, call: Call, rte: Route, restriction: Restriction) -> Reply:
        if restriction.unrestricted:
            return Reply.from_upstream(await call.forward(rte.service))
        resource = body_resource(call.body) if rte.interaction in ("create", "update") else None
        await check_write(call, rte, restriction, resource)
        target = None
        if rte.id is None and rte.interaction in ("update", "patch", "delete"):
            condition = restricted_condition(rte, call.query, restriction)
            target = f"/fhir/{rte.resource_type}?{condition}".encode("latin-1")
        if "if-none-exist" in call.headers:
            # A conditional create that matched someone else's resource would answer with it.
            call.headers["if-none-exist"] = restricted_condition(
                rte, call.headers["if-none-exist"], restriction
            )
        return Reply.from_upstream(await call.forward(rte.service, target=target))


def _check_accept(request: Request, headers: dict[str, str], query: bytes) -> None:
    """406 unless the client accepts FHIR JSON; the common cases without parsing anything."""
    if b"_format" in query or headers.get("accept", "*/*") not in _PLAIN_ACCEPT:
        check_accept(request)


async def send_reply(send: Send, reply: Reply) -> None:
    headers = [*reply.headers, (b"content-length", b"%d" % len(reply.body))]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


class FhirRoutes:
    """ASGI middleware: `/fhir` and `/fhir/...` go to the facade, everything else to the app.

    The facade is built in the app's lifespan (it needs the connection pools), so it is looked
    up on each request through `holder`.
    """

    def __init__(self, app: ASGIApp, holder: Any):
        self.app = app
        self.holder = holder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/fhir/") or path == "/fhir":
                await self.holder.facade(scope, receive, send, self.app)
                return
        await self.app(scope, receive, send)
