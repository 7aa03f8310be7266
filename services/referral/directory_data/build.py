"""`python -m services.referral.directory_data.build [--check]`: (re)write directory.json, the
synthetic resource directory the repository ships for demos, tests and `make bench`.

Deterministic: a fixed seed and the catalog give the same Bundle on every run (`--check` fails
when the file differs from what the code builds). The Bundle is a transaction of conditional
updates by identifier, so `carebridge directory import` (or POSTing it to /fhir) twice changes
nothing. Every person, place, phone number (555-01xx) and web site (.example) is invented.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from services.referral.directory_data import catalog
from services.referral.domain import directory_codes as codes
from services.referral.domain.directory import (
    capacity_extension,
    classification,
    eligibility,
    languages,
    referral_methods,
    transaction_bundle,
    transaction_entry,
)
from services.referral.domain.opening_hours import available_time

DIRECTORY_FILE = Path(__file__).resolve().parent / "directory.json"
SEED = 20261120


def _system(resource_type: str) -> str:
    return codes.identifier_system(resource_type)


def _ref(resource: dict[str, Any], display: str | None = None) -> dict[str, Any]:
    ref = {"reference": transaction_entry(resource)["fullUrl"]}
    return {**ref, "display": display} if display else ref


@dataclass
class _Phones:
    """Unique fictional numbers: 555-0100 to 555-0199 in several area codes."""

    used: Iterator[str] = field(
        default_factory=lambda: (f"+1 {a} 555 01{n:02d}" for a in catalog.AREA_CODES for n in range(100))
    )

    def next(self) -> str:
        return next(self.used)


@dataclass
class _Site:
    location: dict[str, Any]
    district: str


class DirectoryBuilder:
    def __init__(self, seed: int = SEED):
        self.rng = random.Random(seed)
        self.phones = _Phones()
        self.resources: list[dict[str, Any]] = []
        self.counters: dict[str, int] = {}

    def _next_id(self, prefix: str) -> str:
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"{prefix}-{self.counters[prefix]:04d}"

    def build(self) -> dict[str, Any]:
        districts = catalog.DISTRICTS
        for kind in catalog.KINDS:
            # Organizations of a kind spread over the districts, from a kind-dependent start.
            for n in range(kind.count):
                district = districts[(n * 3 + hash_of(kind.key)) % len(districts)]
                self._organization(kind, district, kind.names[n % len(kind.names)])
        return transaction_bundle([transaction_entry(r) for r in self.resources])

    # --- organizations, endpoints, sites ----------------------------------------------------------

    def _organization(
        self, kind: catalog.OrganizationKind, district: tuple[str, float, float, str], name: str
    ) -> None:
        rng = self.rng
        org_name = f"{district[0]} {name}"
        slug = re.sub(r"[^a-z0-9]+", "-", org_name.lower()).strip("-")
        spoken = ["en"] + (["es"] if rng.random() < 0.55 else [])
        if rng.random() < 0.4:
            spoken.append(rng.choice(catalog.OTHER_LANGUAGES))
        org: dict[str, Any] = {
            "resourceType": "Organization",
            "identifier": [{"system": _system("Organization"), "value": self._next_id("ORG")}],
            "active": True,
            "type": [codes.concept(codes.ORGANIZATION_TYPE, kind.org_type)],
            "name": org_name,
            "telecom": [
                {"system": "phone", "value": self.phones.next(), "use": "work"},
                {"system": "url", "value": f"https://{slug}.example"},
            ],
        }
        sites = [self._site(org, district, main=True)]
        if rng.random() < 0.35:
            other = rng.choice([d for d in catalog.DISTRICTS if d[0] != district[0]])
            sites.append(self._site(org, other, main=False))
        org["address"] = [sites[0].location["address"]]
        endpoint = None
        if kind.endpoint and rng.random() < 0.7:
            endpoint = self._endpoint(org, slug)
            org["endpoint"] = [_ref(endpoint)]
        self.resources.append(org)
        if endpoint:
            self.resources.append(endpoint)
        self.resources.extend(s.location for s in sites)
        templates = [t for t in catalog.SERVICES[kind.key] if rng.random() < 0.85] or list(
            catalog.SERVICES[kind.key][:1]
        )
        for template in templates:
            self._service(template, org, sites, endpoint, spoken, slug)

    def _site(self, org: dict[str, Any], district: tuple[str, float, float, str], *, main: bool) -> _Site:
        rng = self.rng
        lat = catalog.CENTER[0] + district[1] + rng.uniform(-0.012, 0.012)
        lon = catalog.CENTER[1] + district[2] + rng.uniform(-0.015, 0.015)
        name = org["name"] if main else f"{org['name']} ({district[0]} site)"
        location = {
            "resourceType": "Location",
            "identifier": [{"system": _system("Location"), "value": self._next_id("LOC")}],
            "extension": [{"url": codes.TIMEZONE_EXTENSION, "valueCode": catalog.ZONE}],
            "status": "active",
            "name": name,
            "mode": "instance",
            "telecom": [{"system": "phone", "value": self.phones.next(), "use": "work"}],
            "address": {
                "use": "work",
                "type": "physical",
                "line": [f"{rng.randint(10, 4999)} {rng.choice(catalog.STREETS)}"],
                "city": catalog.CITY,
                "district": district[0],
                "state": catalog.STATE,
                "postalCode": district[3],
            },
            "position": {"longitude": round(lon, 5), "latitude": round(lat, 5)},
            "managingOrganization": _ref(org, org["name"]),
        }
        return _Site(location, district[0])

    def _endpoint(self, org: dict[str, Any], slug: str) -> dict[str, Any]:
        return {
            "resourceType": "Endpoint",
            "identifier": [{"system": _system("Endpoint"), "value": self._next_id("EP")}],
            "status": "active",
            "connectionType": codes.coding(codes.ENDPOINT_CONNECTION_TYPE, "hl7-fhir-rest", "HL7 FHIR"),
            "name": f"{org['name']} referrals (FHIR)",
            "managingOrganization": _ref(org, org["name"]),
            "payloadType": [codes.concept(codes.ENDPOINT_PAYLOAD_TYPE, "any", "Any")],
            "payloadMimeType": ["application/fhir+json"],
            "address": f"https://fhir.{slug}.example/r4",
        }

    # --- services and the people who deliver them ------------------------------------------------------

    def _service(
        self,
        template: catalog.ServiceTemplate,
        org: dict[str, Any],
        sites: list[_Site],
        endpoint: dict[str, Any] | None,
        spoken: list[str],
        slug: str,
    ) -> None:
        rng = self.rng
        service: dict[str, Any] = {
            "resourceType": "HealthcareService",
            "identifier": [{"system": _system("HealthcareService"), "value": self._next_id("HS")}],
        }
        if template.capacity is not None:
            low, high = template.capacity
            service["extension"] = [
                capacity_extension(0 if rng.random() < 0.1 else rng.randint(max(low, 1), high))
            ]
        service["active"] = True
        service["providedBy"] = _ref(org, org["name"])
        parts = classification(template.categories, template.types)
        service.update({k: v for k, v in parts.items() if v})
        placed = [] if template.remote else ([sites[0]] if len(sites) == 1 or rng.random() < 0.6 else sites)
        if placed:
            service["location"] = [_ref(s.location, s.location["name"]) for s in placed]
        service["name"] = f"{template.name}, {org['name']}"
        if template.description:
            service["comment"] = template.description
        service["telecom"] = [
            {"system": "phone", "value": self.phones.next(), "use": "work"},
            {"system": "email", "value": f"intake@{slug}.example", "use": "work"},
        ]
        service["serviceProvisionCode"] = [codes.concept(codes.PROVISION, template.fees)]
        rules = eligibility(template.min_age, template.max_age, template.eligibility)
        if rules:
            service["eligibility"] = rules
        characteristic = [codes.REMOTE] if template.remote else []
        if rng.random() < 0.3:
            characteristic.append(codes.INTERPRETER)
        if characteristic:
            service["characteristic"] = [
                codes.concept(codes.CHARACTERISTIC, c, codes.CHARACTERISTIC_DISPLAYS[c])
                for c in characteristic
            ]
        service["communication"] = languages(spoken)
        methods = (
            ["phone"]
            + (["elec"] if endpoint else [])
            + [m for m in ("fax", "semail", "mail") if rng.random() < 0.25]
        )
        service["referralMethod"] = referral_methods(methods)
        service["appointmentRequired"] = template.appointment
        service["availableTime"] = available_time(catalog.HOURS[rng.choice(template.hours)])
        if "24/7" not in catalog.HOURS[template.hours[0]] and rng.random() < 0.2:
            service["notAvailable"] = [
                {
                    "description": "Closed for the winter holiday",
                    "during": {"start": "2026-12-24", "end": "2026-12-26"},
                }
            ]
        if endpoint:
            service["endpoint"] = [_ref(endpoint)]
        self.resources.append(service)
        if template.role:
            for _ in range(rng.choice((1, 1, 2))):
                self._practitioner_role(template, service, org, placed, spoken)

    def _practitioner_role(
        self,
        template: catalog.ServiceTemplate,
        service: dict[str, Any],
        org: dict[str, Any],
        placed: list[_Site],
        spoken: list[str],
    ) -> None:
        rng = self.rng
        given, family = rng.choice(catalog.GIVEN_NAMES), rng.choice(catalog.FAMILY_NAMES)
        practitioner = {
            "resourceType": "Practitioner",
            "identifier": [{"system": _system("Practitioner"), "value": self._next_id("PR")}],
            "active": True,
            "name": [{"family": family, "given": [given]}],
            "communication": languages(spoken[: rng.randint(1, len(spoken))]),
        }
        assert template.role is not None
        role: dict[str, Any] = {
            "resourceType": "PractitionerRole",
            "identifier": [{"system": _system("PractitionerRole"), "value": self._next_id("PRR")}],
            "active": True,
            "practitioner": _ref(practitioner, f"{given} {family}"),
            "organization": _ref(org, org["name"]),
            "code": [codes.concept(codes.NUCC, template.role, catalog.ROLE_DISPLAYS[template.role])],
        }
        if service.get("specialty"):
            role["specialty"] = service["specialty"]
        if placed:
            role["location"] = [_ref(s.location, s.location["name"]) for s in placed]
        role["healthcareService"] = [_ref(service, service["name"])]
        role["telecom"] = [{"system": "phone", "value": self.phones.next(), "use": "work"}]
        role["availableTime"] = service["availableTime"]
        self.resources.extend((practitioner, role))


def hash_of(text: str) -> int:
    """A stable small number for a text (Python's hash() changes between runs)."""
    return sum(ord(c) * (i + 1) for i, c in enumerate(text))


def build_directory(seed: int = SEED) -> dict[str, Any]:
    return DirectoryBuilder(seed).build()


def directory_bytes(seed: int = SEED) -> bytes:
    """The Bundle with one entry per line: compact, and a change shows as the entries it touches."""
    bundle = build_directory(seed)
    head = orjson.dumps({k: v for k, v in bundle.items() if k != "entry"})[:-1]
    entries = b",\n".join(orjson.dumps(e) for e in bundle["entry"])
    return head + b',"entry":[\n' + entries + b"\n]}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.referral.directory_data.build", description=__doc__
    )
    parser.add_argument(
        "--check", action="store_true", help="fail if directory.json is not what the code builds"
    )
    parser.add_argument(
        "--output", type=Path, default=DIRECTORY_FILE, help="where to write (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    content = directory_bytes()
    if args.check:
        if not args.output.exists() or args.output.read_bytes() != content:
            print(
                f"{args.output} is out of date: run python -m services.referral.directory_data.build",
                file=sys.stderr,
            )
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_bytes(content)
    types: dict[str, int] = {}
    for entry in orjson.loads(content)["entry"]:
        rtype = entry["resource"]["resourceType"]
        types[rtype] = types.get(rtype, 0) + 1
    print(f"Wrote {args.output}: " + ", ".join(f"{n} {t}" for t, n in types.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
