"""The shipped synthetic directory as a server would store it (ids assigned, urn:uuid references
resolved), for the pure matching tests; and small hand-made services for the ranking tests."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from services.referral.directory_data.build import DIRECTORY_FILE
from services.referral.domain import directory_codes as codes
from services.referral.domain.directory import capacity_extension, eligibility, languages
from services.referral.domain.directory_import import stored_form
from services.referral.domain.directory_index import DirectoryIndex
from services.referral.domain.opening_hours import available_time


@functools.cache
def shipped_bundle() -> dict[str, Any]:
    bundle: dict[str, Any] = orjson.loads(DIRECTORY_FILE.read_bytes())
    return bundle


def stored_resources() -> dict[str, dict[str, dict[str, Any]]]:
    """By type and id; each entry's id is its fullUrl's uuid."""
    return stored_form(shipped_bundle())


@functools.cache
def shipped_index() -> DirectoryIndex:
    stored = stored_resources()
    return DirectoryIndex.build(
        stored["HealthcareService"].values(), stored["Location"], stored["Organization"]
    )


CENTER = (40.0, -100.0)
ZONE = "America/Chicago"


def location(id_: str, lat: float, lon: float, name: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": id_,
        "extension": [{"url": codes.TIMEZONE_EXTENSION, "valueCode": ZONE}],
        "status": "active",
        "name": name or f"Site {id_}",
        "position": {"longitude": lon, "latitude": lat},
    }


def service(
    id_: str,
    *categories: str,
    site: str | None = "here",
    langs: tuple[str, ...] = ("en",),
    hours: str = "24/7",
    capacity: int | None = 5,
    min_age: int | None = None,
    max_age: int | None = None,
    requires: tuple[str, ...] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "HealthcareService",
        "id": id_,
        "active": True,
        "name": f"Service {id_}",
        "category": [codes.gravity(c) for c in categories or ("homelessness",)],
    }
    if capacity is not None:
        resource["extension"] = [capacity_extension(capacity)]
    if site:
        resource["location"] = [{"reference": f"Location/{site}"}]
    if langs:
        resource["communication"] = languages(langs)
    if hours:
        resource["availableTime"] = available_time(hours)
    rules = eligibility(min_age, max_age, requires)
    if rules:
        resource["eligibility"] = rules
    return {**resource, **(extra or {})}


def index_of(*services: dict[str, Any], sites: list[dict[str, Any]] | None = None) -> DirectoryIndex:
    places = sites if sites is not None else [location("here", *CENTER), location("far", 40.2, -100.0)]
    return DirectoryIndex.build(services, {s["id"]: s for s in places})
