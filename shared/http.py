"""HTTP plumbing every service shares: FHIR JSON responses, body limits, content negotiation,
and the one handler that turns exceptions into OperationOutcome responses.

Responses are built from bytes (stored canonical JSON) rather than dicts: FastAPI serializing a
dict costs about three times the whole request (DESIGN.md, Store).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from shared.errors import (
    CareBridgeError,
    InvalidInput,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    http_status,
    operation_outcome,
)

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
FHIR_JSON_UTF8 = "application/fhir+json; charset=utf-8"
#: Media types a FHIR JSON body may be sent as (http://hl7.org/fhir/R4/http.html#mime-type).
JSON_BODY_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
_ACCEPTABLE = ("application/fhir+json", "application/json", "application/json+fhir", "application/*", "*/*")
_FORMAT_OK = frozenset({"json", "application/json", "application/fhir+json", "application/json+fhir"})


def fhir_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=body, status_code=status, media_type=FHIR_JSON_UTF8, headers=headers)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return fhir_response(orjson.dumps(obj), status, headers)


def error_response(exc: BaseException) -> Response:
    return json_response(operation_outcome(exc), http_status(exc))


def check_accept(request: Request) -> None:
    """406 unless the client accepts FHIR JSON (XML is not offered: see the CapabilityStatement)."""
    fmt = request.query_params.get("_format")
    if fmt is not None and fmt not in _FORMAT_OK:
        raise NotAcceptable(f"_format={fmt} is not supported; this server speaks application/fhir+json")
    accept = request.headers.get("accept")
    if not accept:
        return
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in _ACCEPTABLE:
            return
    raise NotAcceptable(f"Cannot produce any of: {accept}; this server speaks application/fhir+json")


def check_content_type(request: Request) -> None:
    raw = request.headers.get("content-type")
    if not raw:
        raise UnsupportedMediaType("Content-Type is required: application/fhir+json")
    media = raw.split(";", 1)[0].strip().lower()
    if media not in JSON_BODY_TYPES:
        raise UnsupportedMediaType(f"Content-Type {media} is not supported; send application/fhir+json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"Request body of {declared} bytes exceeds the limit of {limit} bytes")
        except ValueError:
            raise InvalidInput("Content-Length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidInput("The request body is empty; expected a FHIR resource in JSON")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidInput("The request body must be a JSON object holding a FHIR resource")
    return obj


def install_error_handlers(app: FastAPI) -> None:
    """Every failure leaves as an OperationOutcome with the right status; nothing crashes."""

    async def carebridge_error(_: Request, exc: Exception) -> Response:
        return error_response(exc)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return error_response(NotFound("No such endpoint"))
        if exc.status_code == 405:
            return error_response(MethodNotAllowed("This method is not supported on this endpoint"))
        mapped = CareBridgeError(str(exc.detail))
        return json_response(operation_outcome(mapped), exc.status_code)

    async def validation_error(_: Request, exc: Exception) -> Response:
        return error_response(InvalidInput(f"Invalid request: {exc}"))

    async def unexpected(request: Request, exc: Exception) -> Response:
        # The traceback goes to the log; the client gets no internals (and no PHI).
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(exc)

    app.add_exception_handler(CareBridgeError, carebridge_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
