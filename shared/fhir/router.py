"""The FHIR endpoints a service serves for the resource types it owns: thin FastAPI routes over
the framework-free REST layer (`shared.fhir.rest`).

Read and vread have routes of their own: they are the hottest path in the system (DESIGN.md,
Benchmarks), one indexed SELECT whose stored bytes go out as they are. Every other interaction
(create, update, patch, delete, conditional ones, search, history, batch/transaction at the
base, metadata) goes through the one dispatcher that Bundle entries also use.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from shared.fhir.rest import Dispatcher, RestRequest, RestResponse
from shared.fhir.rest.headers import not_modified, version_headers
from shared.http import FHIR_JSON_UTF8, check_accept, read_body
from shared.store import StoredResource

#: The gateway tells a service the public base URL, so Location headers and fullUrls point there.
FORWARDED_BASE_HEADER = "x-forwarded-fhir-base"
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def base_url(request: Request) -> str:
    return request.headers.get(FORWARDED_BASE_HEADER) or str(request.base_url).rstrip("/") + "/fhir"


def build_router(dispatcher: Dispatcher, max_body_bytes: int) -> APIRouter:
    rest = dispatcher.rest
    router = APIRouter(prefix="/fhir")

    @router.get("/{resource_type}/{id_}")
    async def read(resource_type: str, id_: str, request: Request) -> Response:
        if id_.startswith(("_", "$")):  # [type]/_history, [type]/_search, [type]/$operation
            return await dispatch(request, f"{resource_type}/{id_}")
        check_accept(request)
        return _read_response(request, await rest.read(resource_type, id_))

    @router.get("/{resource_type}/{id_}/_history/{version}")
    async def vread(resource_type: str, id_: str, version: str, request: Request) -> Response:
        check_accept(request)
        return _read_response(request, await rest.vread(resource_type, id_, version))

    @router.api_route("", methods=_METHODS)
    async def base(request: Request) -> Response:
        return await dispatch(request, "")

    @router.api_route("/{path:path}", methods=_METHODS)
    async def interaction(path: str, request: Request) -> Response:
        return await dispatch(request, path)

    async def dispatch(request: Request, path: str) -> Response:
        check_accept(request)
        body = await read_body(request, max_body_bytes) if request.method in _WITH_BODY else b""
        rest_request = RestRequest(
            request.method,
            path,
            request.query_params.multi_items(),
            request.headers,
            base_url(request),
            body,
        )
        return to_http(await dispatcher.handle(rest_request))

    return router


def _read_response(request: Request, stored: StoredResource) -> Response:
    headers = version_headers(stored, "", location=False)
    if ("if-none-match" in request.headers or "if-modified-since" in request.headers) and not_modified(
        stored, request.headers.get("if-none-match"), request.headers.get("if-modified-since")
    ):
        return Response(None, 304, headers)
    return Response(stored.content, 200, headers, media_type=FHIR_JSON_UTF8)


def to_http(response: RestResponse) -> Response:
    if not response.body:
        return Response(None, response.status, response.headers)
    return Response(response.body, response.status, response.headers, media_type=FHIR_JSON_UTF8)
