"""The floor for a FHIR read: a bare FastAPI endpoint returning stored bytes, nothing else.

Serve it the way the services are served (uvicorn, uvloop, httptools, one worker):

    BENCH_BARE_BODY=/tmp/patient.json python -m uvicorn bench.bare_app:app \
        --loop uvloop --http httptools --workers 1 --no-access-log

`BENCH_BARE_BODY` names a file with the exact body the gateway returned for the read;
`BENCH_BARE_CONTENT_TYPE`, `BENCH_BARE_ETAG` and `BENCH_BARE_LAST_MODIFIED` give the headers
it returned with it, so both answers are the same bytes with the same content type.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response


def create_app(body: bytes, content_type: str, headers: dict[str, str]) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/fhir/{resource_type}/{id_}")
    async def read(resource_type: str, id_: str) -> Response:
        return Response(body, 200, headers, media_type=content_type)

    return app


def _from_environment() -> FastAPI:
    body_file = os.environ.get("BENCH_BARE_BODY")
    body = Path(body_file).read_bytes() if body_file else b'{"resourceType":"Patient"}'
    content_type = os.environ.get("BENCH_BARE_CONTENT_TYPE", "application/fhir+json; charset=utf-8")
    headers = {
        name: value
        for name, var in (("ETag", "BENCH_BARE_ETAG"), ("Last-Modified", "BENCH_BARE_LAST_MODIFIED"))
        if (value := os.environ.get(var))
    }
    return create_app(body, content_type, headers)


#: Built from the environment because uvicorn imports the app by name in its own process.
app = _from_environment()
