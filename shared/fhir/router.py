"""The FHIR endpoints a service serves for the resource types it owns.

For now: create, read (with vread) and a search by identifier, name or _id; the full R4 REST
layer (update, delete, history, conditional interactions, the search grammar, Bundles) builds on
this. Routes stay thin: the work is in `ResourceService`, which has no HTTP in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from fastapi import APIRouter, Request
from starlette.responses import Response

from shared.errors import Gone, InvalidInput, NotFound
from shared.fhir import bundles
from shared.fhir.events import enqueue_resource_event
from shared.fhir.validation import validate_resource
from shared.http import FHIR_JSON_UTF8, check_accept, fhir_response, read_json_resource
from shared.settings import ServiceSettings
from shared.store import Store, StoredResource

#: The gateway tells a service the public base URL, so Location headers and fullUrls point there.
FORWARDED_BASE_HEADER = "x-forwarded-fhir-base"
_SEARCH_PARAMS = frozenset({"_id", "identifier", "name", "_count", "_format"})
_DEFAULT_COUNT, _MAX_COUNT = 50, 1000


class StoreHolder(Protocol):
    """Whatever holds the service's store and settings (the ServiceRuntime, or a test's)."""

    store: Store
    settings: ServiceSettings


class ResourceService:
    """Create, read and search one service's resources; every write emits its event.

    It reads the store through its holder because the store opens in the app's lifespan, after
    the routes are built.
    """

    def __init__(self, holder: StoreHolder):
        self._holder = holder
        self.settings = holder.settings

    @property
    def store(self) -> Store:
        return self._holder.store

    async def create(self, resource_type: str, resource: dict[str, Any]) -> StoredResource:
        validate_resource(resource, resource_type)
        resource.pop("id", None)  # FHIR create: the server assigns the id (R4 http.html#create)
        async with self.store.transaction() as tx:
            stored = await tx.create(resource)
            await enqueue_resource_event(tx, self.settings, stored, "created", resource)
        return stored

    async def read(self, resource_type: str, id_: str, version: int | None = None) -> StoredResource:
        if version is None:
            return await self.store.read(resource_type, id_)
        return await self.store.vread(resource_type, id_, version)

    async def search(self, resource_type: str, params: Iterable[tuple[str, str]]) -> list[StoredResource]:
        token: dict[str, tuple[str | None, str]] = {}
        string: dict[str, str] = {}
        count = _DEFAULT_COUNT
        ids: list[str] = []
        for name, value in params:
            if name not in _SEARCH_PARAMS:
                raise InvalidInput(f"Search parameter {name!r} is not supported on {resource_type}")
            if name == "identifier":
                # FHIR token forms: system|code, |code (no system: store's ""), code (any system)
                system, sep, code = value.rpartition("|")
                token["identifier"] = (system if sep else None, code)
            elif name == "name":
                string["name"] = value
            elif name == "_id":
                ids.extend(v for v in value.split(",") if v)
            elif name == "_count":
                count = _parse_count(value)
        if ids:
            return await self._by_ids(resource_type, ids)
        return await self.store.search(resource_type, token=token or None, string=string or None, limit=count)

    async def _by_ids(self, resource_type: str, ids: list[str]) -> list[StoredResource]:
        found = []
        for id_ in ids:
            try:
                found.append(await self.store.read(resource_type, id_))
            except (NotFound, Gone):  # an id that is not there simply does not match
                continue
        return found


def _parse_count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise InvalidInput(f"_count must be a whole number, not {value!r}") from None
    if count < 1:
        raise InvalidInput("_count must be at least 1")
    return min(count, _MAX_COUNT)


def base_url(request: Request) -> str:
    return request.headers.get(FORWARDED_BASE_HEADER) or str(request.base_url).rstrip("/") + "/fhir"


def version_headers(stored: StoredResource, base: str) -> dict[str, str]:
    return {
        "ETag": f'W/"{stored.version_id}"',
        "Last-Modified": stored.last_updated.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Location": f"{base}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}",
    }


def build_router(service: ResourceService, resource_types: Iterable[str]) -> APIRouter:
    owned = frozenset(resource_types)
    router = APIRouter(prefix="/fhir")

    def owned_type(resource_type: str) -> str:
        if resource_type not in owned:
            raise NotFound(f"Resource type {resource_type!r} is not served here")
        return resource_type

    @router.post("/{resource_type}")
    async def create(resource_type: str, request: Request) -> Response:
        check_accept(request)
        rtype = owned_type(resource_type)
        resource = await read_json_resource(request, service.settings.max_body_bytes)
        stored = await service.create(rtype, resource)
        return fhir_response(stored.content, 201, version_headers(stored, base_url(request)))

    @router.get("/{resource_type}/{id_}")
    async def read(resource_type: str, id_: str, request: Request) -> Response:
        check_accept(request)
        stored = await service.read(owned_type(resource_type), id_)
        headers = version_headers(stored, base_url(request))
        del headers["Location"]
        return Response(stored.content, 200, headers, media_type=FHIR_JSON_UTF8)

    @router.get("/{resource_type}/{id_}/_history/{version}")
    async def vread(resource_type: str, id_: str, version: str, request: Request) -> Response:
        check_accept(request)
        if not version.isdigit():
            raise NotFound(f"No version {version!r} of {resource_type}/{id_}")
        stored = await service.read(owned_type(resource_type), id_, int(version))
        headers = version_headers(stored, base_url(request))
        del headers["Location"]
        return Response(stored.content, 200, headers, media_type=FHIR_JSON_UTF8)

    @router.get("/{resource_type}")
    async def search(resource_type: str, request: Request) -> Response:
        check_accept(request)
        rtype = owned_type(resource_type)
        found = await service.search(rtype, request.query_params.multi_items())
        base = base_url(request)
        query = f"?{request.url.query}" if request.url.query else ""
        return fhir_response(bundles.searchset(found, base_url=base, self_link=f"{base}/{rtype}{query}"))

    return router
