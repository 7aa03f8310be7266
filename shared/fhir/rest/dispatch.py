"""Which FHIR interaction a request is, and running it (http://hl7.org/fhir/R4/http.html).

One dispatcher serves the HTTP routes and the entries of batch and transaction Bundles, so an
interaction behaves the same whichever way it arrives (Medplum's fhir-router works this way).
Writes run in the caller's transaction when there is one (a transaction Bundle), else in their own.
Each request runs as the caller its headers name (caller.py), so write hooks can decide by role;
a type whose hooks say `requires_if_match` refuses an update or patch without If-Match (428).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl, urlencode

from shared.errors import (
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PreconditionRequired,
    UnsupportedMediaType,
)
from shared.fhir.operations import find_operation
from shared.fhir.rest import history
from shared.fhir.rest.bundles import process_bundle
from shared.fhir.rest.caller import caller_of, calling_as, current_caller
from shared.fhir.rest.capability import capability_bytes
from shared.fhir.rest.headers import not_modified, parse_version_tag
from shared.fhir.rest.interactions import FhirRest, OperationCall
from shared.fhir.rest.messages import (
    FHIR_JSON_TYPES,
    RestRequest,
    RestResponse,
    deleted_response,
    json_object,
    media_type,
    require_media,
    resource_response,
    written_response,
)
from shared.fhir.rest.patch import JSON_PATCH_MEDIA_TYPE, PATCH_MEDIA_TYPES, PatchDocument
from shared.store import Transaction

FORM_TYPE = "application/x-www-form-urlencoded"


class Dispatcher:
    def __init__(self, rest: FhirRest) -> None:
        self.rest = rest
        self._capabilities: dict[str, bytes] = {}

    async def handle(self, request: RestRequest, tx: Transaction | None = None) -> RestResponse:
        """Run one request (or Bundle entry) as the caller its headers name."""
        with calling_as(caller_of(request.headers, current_caller())):
            return await self._handle(request, tx)

    async def _handle(self, request: RestRequest, tx: Transaction | None) -> RestResponse:
        parts = [p for p in request.path.split("/") if p]
        method = request.method.upper()
        if not parts:
            if method == "POST" and tx is None:
                return await process_bundle(self, request)
            raise MethodNotAllowed(
                f"{method} is not supported at the service base; POST a batch or transaction Bundle"
            )
        if parts == ["metadata"]:
            _only(method, request, "GET")
            return RestResponse(200, self.capability_statement(request.base))
        if parts == ["_history"]:
            _only(method, request, "GET")
            return await self._history(request, None, None)
        resource_type = self.rest.owned_type(parts[0])
        if len(parts) == 1:
            return await self._type_level(method, request, resource_type, tx)
        if len(parts) == 2 and parts[1].startswith("$"):
            return await self._operation(method, request, resource_type, parts[1], None, tx)
        if len(parts) == 3 and parts[2].startswith("$"):
            return await self._operation(method, request, resource_type, parts[2], parts[1], tx)
        if len(parts) == 2 and parts[1] == "_search":
            _only(method, request, "GET", "POST")
            return await self._search(request, resource_type, form=method == "POST", tx=tx)
        if len(parts) == 2 and parts[1] == "_history":
            _only(method, request, "GET")
            return await self._history(request, resource_type, None)
        if len(parts) == 2:
            return await self._instance_level(method, request, resource_type, parts[1], tx)
        if len(parts) == 3 and parts[2] == "_history":
            _only(method, request, "GET")
            return await self._history(request, resource_type, parts[1])
        if len(parts) == 4 and parts[2] == "_history":
            _only(method, request, "GET", "HEAD")
            return self._read_response(request, await self.rest.vread(resource_type, parts[1], parts[3], tx))
        raise NotFound(f"No such FHIR endpoint: {request.path}")

    def capability_statement(self, base: str) -> bytes:
        cached = self._capabilities.get(base)
        if cached is None:
            service = self.rest.settings.service_name
            cached = capability_bytes(
                service, self.rest.owned_types, base_url=base, operations=tuple(self.rest.operations)
            )
            if len(self._capabilities) < 16:  # a handful of public bases at most
                self._capabilities[base] = cached
        return cached

    # --- levels ---------------------------------------------------------------------------------

    async def _type_level(
        self, method: str, request: RestRequest, resource_type: str, tx: Transaction | None
    ) -> RestResponse:
        rest, headers = self.rest, request.headers
        if method == "GET":
            return await self._search(request, resource_type, form=False, tx=tx)
        if method == "POST":
            resource = _resource_body(request)
            if_none_exist = headers.get("if-none-exist")
            query = [(k, v) for k, v in request.params if k != "_format"]
            if if_none_exist is None and query:
                # R4 has only the header; fhirpy's resource.create(**criteria) sends the criteria
                # as the query of the POST. Either way the same conditional create.
                if_none_exist = urlencode(query)
            async with self.rest.transaction(tx) as txn:
                written = await rest.create(
                    txn,
                    resource_type,
                    resource,
                    if_none_exist=if_none_exist,
                    assigned_id=request.assigned_id,
                )
            return written_response(written, request.prefer, request.base)
        criteria = [(k, v) for k, v in request.params if k != "_format"]
        if method not in ("PUT", "PATCH", "DELETE"):
            raise MethodNotAllowed(f"{method} is not supported on /{resource_type}")
        if not criteria:
            raise MethodNotAllowed(
                f"{method} on /{resource_type} needs search criteria (conditional {method.lower()}) "
                f"or an id: /{resource_type}/[id]"
            )
        if_match = parse_version_tag(headers.get("if-match"))
        if method != "DELETE":
            self._check_if_match(resource_type, if_match)
        async with self.rest.transaction(tx) as txn:
            if method == "DELETE":
                return deleted_response(await rest.conditional_delete(txn, resource_type, criteria))
            if method == "PUT":
                written = await rest.conditional_update(
                    txn, resource_type, criteria, _resource_body(request), if_match=if_match
                )
            else:
                written = await rest.conditional_patch(
                    txn, resource_type, criteria, _patch_body(request), if_match=if_match
                )
        return written_response(written, request.prefer, request.base)

    async def _instance_level(
        self, method: str, request: RestRequest, resource_type: str, id_: str, tx: Transaction | None
    ) -> RestResponse:
        rest = self.rest
        if method in ("GET", "HEAD"):
            return self._read_response(request, await rest.read(resource_type, id_, tx))
        if method not in ("PUT", "PATCH", "DELETE"):
            raise MethodNotAllowed(f"{method} is not allowed on a resource instance ({resource_type}/{id_})")
        if_match = parse_version_tag(request.headers.get("if-match"))
        if method != "DELETE":
            self._check_if_match(resource_type, if_match)
        async with self.rest.transaction(tx) as txn:
            if method == "DELETE":
                return deleted_response(await rest.delete(txn, resource_type, id_, if_match=if_match))
            if method == "PUT":
                written = await rest.update(
                    txn, resource_type, id_, _resource_body(request), if_match=if_match
                )
            else:
                written = await rest.patch(txn, resource_type, id_, _patch_body(request), if_match=if_match)
        return written_response(written, request.prefer, request.base)

    async def _operation(
        self,
        method: str,
        request: RestRequest,
        resource_type: str,
        code: str,
        id_: str | None,
        tx: Transaction | None,
    ) -> RestResponse:
        """`[type]/$name` and `[type]/[id]/$name` (R4 operations.html), run by the code the
        service registered; the table in shared/fhir/operations.py says which methods apply."""
        definition = find_operation(resource_type, code, instance=id_ is not None)
        run = self.rest.operations.get((resource_type, code[1:]))
        if definition is None or run is None:
            level = f"{resource_type}/[id]" if id_ is not None else resource_type
            raise NotFound(f"Operation {code} is not supported on {level}")
        _only(method, request, *definition.methods)
        return await run(OperationCall(self.rest, request, id_, tx))

    def _check_if_match(self, resource_type: str, if_match: int | None) -> None:
        """428 for an update or patch without If-Match of a type whose hooks require it (R4
        http.html#concurrency: a server may require it; RFC 6585 section 3)."""
        hooks = self.rest.hooks.get(resource_type)
        if if_match is None and hooks is not None and hooks.requires_if_match:
            raise PreconditionRequired(
                f"An update of a {resource_type} needs If-Match with the version it changes (its ETag, "
                f'e.g. W/"3"), so that two writers cannot overwrite each other',
                expression=["If-Match"],
            )

    # --- reads ----------------------------------------------------------------------------------

    @staticmethod
    def _read_response(request: RestRequest, stored: Any) -> RestResponse:
        response = resource_response(stored)
        headers = request.headers
        if not_modified(stored, headers.get("if-none-match"), headers.get("if-modified-since")):
            return RestResponse(304, b"", response.headers, stored)
        return response

    async def _search(
        self, request: RestRequest, resource_type: str, *, form: bool, tx: Transaction | None
    ) -> RestResponse:
        params = list(request.params)
        if form:
            require_media(request, {FORM_TYPE}, "a search POSTed to _search")
            params += parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        params = [(k, v) for k, v in params if k != "_format"]
        body = await self.rest.searcher.searchset(
            self.rest.store,
            resource_type,
            params,
            base=request.base,
            lenient=request.prefer.lenient,
            connection=(await tx.sql_connection()) if tx is not None else None,
        )
        return RestResponse(200, body)

    async def _history(
        self, request: RestRequest, resource_type: str | None, id_: str | None
    ) -> RestResponse:
        body = await history.history_bundle(
            self.rest.store,
            resource_type,
            id_,
            request.params,
            base=request.base,
            lenient=request.prefer.lenient,
        )
        return RestResponse(200, body)


def _only(method: str, request: RestRequest, *allowed: str) -> None:
    if method not in allowed:
        raise MethodNotAllowed(
            f"{method} is not allowed on {request.path or 'the base'}; use {' or '.join(allowed)}"
        )


def _resource_body(request: RestRequest) -> dict[str, Any]:
    if request.resource is not None:
        if not isinstance(request.resource, dict):
            raise InvalidInput("The entry's resource must be a JSON object")
        return request.resource
    require_media(request, FHIR_JSON_TYPES, "a FHIR resource")
    return json_object(request.body)


def _patch_body(request: RestRequest) -> PatchDocument:
    """The patch: the request body, or in a Bundle a Binary holding it (R4 http.html#patch)."""
    if request.resource is not None:
        binary = request.resource
        if not (isinstance(binary, dict) and binary.get("resourceType") == "Binary"):
            raise UnsupportedMediaType("A PATCH entry carries its patch as a Binary resource")
        media = str(binary.get("contentType") or "")
        if media not in PATCH_MEDIA_TYPES:
            raise UnsupportedMediaType(f"Send a patch as {JSON_PATCH_MEDIA_TYPE}, not {media or 'nothing'}")
        try:
            raw = base64.b64decode(binary.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("The Binary's data is not base64") from None
        return PatchDocument.parse(media, raw)
    require_media(request, PATCH_MEDIA_TYPES, "a patch")
    return PatchDocument.parse(media_type(request), request.body)
