"""The resource directory as data: a CSV of services turned into FHIR resources, opening hours,
transaction entries keyed by identifier, and when an update changes nothing. No I/O.

Opening hours (`available_time`) live in opening_hours.py.

A directory is imported with conditional updates by identifier (`PUT HealthcareService?
identifier=system|value`) so that importing the same file twice changes nothing: the second time
every resource matches the one stored, and `same_content` lets the service skip writing a new
version of it (R4 http.html#cond-update; HAPI FHIR's no-op updates work the same way).

CSV format (one row per service; `carebridge directory import --help` prints the same list):
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from services.referral.domain import directory_codes as codes
from services.referral.domain.opening_hours import available_time
from shared.errors import InvalidInput

_NAMESPACE: Final = uuid.UUID("0b6f3c3e-5a0e-4d1c-9a57-6f1b1f0c7d21")

#: The CSV columns: name, required, what it holds.
CSV_COLUMNS: Final[tuple[tuple[str, bool, str], ...]] = (
    ("service_id", True, "the service's identifier in this source (unique; kept across imports)"),
    ("service_name", True, "the service's name"),
    ("organization_id", True, "the providing organization's identifier (rows may share it)"),
    ("organization_name", True, "the organization's name"),
    ("categories", True, "';'-separated: Gravity SDOH categories (food-insecurity, homelessness, ...) "
     "and/or psychiatry, therapy, sud-treatment, crisis, case-management"),
    ("types", False, "';'-separated service-type codes (terminology.hl7.org/CodeSystem/service-type)"),
    ("description", False, "free text shown to case managers"),
    ("organization_phone", False, "the organization's phone"),
    ("organization_website", False, "the organization's web site"),
    ("location_id", False, "the site's identifier (rows may share it; default: one site per service)"),
    ("location_name", False, "the site's name (default: the organization's)"),
    ("address", False, "street line"),
    ("city", False, "city"),
    ("state", False, "state"),
    ("postal_code", False, "postal code"),
    ("latitude", False, "decimal degrees (WGS84)"),
    ("longitude", False, "decimal degrees (WGS84)"),
    ("phone", False, "the service's phone"),
    ("email", False, "the service's email"),
    ("website", False, "the service's web page"),
    ("languages", False, "';'-separated BCP-47 tags, e.g. en;es;vi (default: none listed)"),
    ("hours", False, "'24/7' or e.g. 'mon-fri 09:00-17:00; sat 10:00-14:00'"),
    ("min_age", False, "youngest age served, years"),
    ("max_age", False, "oldest age served, years"),
    ("eligibility", False, "';'-separated: veteran, low-income, uninsured, resident"),
    ("capacity", False, "open slots now (0 = full)"),
    ("referral_methods", False, "';'-separated: phone, fax, elec, semail, mail"),
    ("interpreter", False, "yes when an interpreter is available"),
    ("remote", False, "yes when delivered by phone or video"),
)  # fmt: skip
__doc__ = (__doc__ or "") + "\n".join(
    f"- `{name}`{' (required)' if required else ''}: {text}" for name, required, text in CSV_COLUMNS
)

REFERRAL_METHODS: Final = {
    "phone": "Phone",
    "fax": "Fax",
    "elec": "Secure Messaging",
    "semail": "Secure Email",
    "mail": "Mail",
}
_YES: Final = frozenset({"yes", "y", "true", "1", "x"})


# --- transaction entries keyed by identifier -----------------------------------------------------


def full_url(resource_type: str, system: str, value: str) -> str:
    """A stable `urn:uuid:` for a resource named by its identifier: the same file gives the same
    fullUrls, so its references read the same on every import."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{resource_type}|{system}|{value}')}"


def escape_token(value: str) -> str:
    """R4 search.html#escaping: `\\`, `|`, `,` and `$` in a token value are escaped."""
    return re.sub(r"([\\|,$])", r"\\\1", value)


def conditional_url(resource_type: str, system: str, value: str) -> str:
    """`Type?identifier=system|value`, the value URL-encoded (an identifier system is a URL: a
    raw `://` in the query reads as an absolute URL to some servers and proxies)."""
    token = f"{escape_token(system)}|{escape_token(value)}"
    return f"{resource_type}?identifier={quote(token, safe='')}"


def transaction_entry(resource: dict[str, Any]) -> dict[str, Any]:
    """A conditional-update entry for a resource named by its first identifier."""
    ident = first_identifier(resource)
    if ident is None:
        raise InvalidInput(f"A {resource.get('resourceType')} needs an identifier with system and value")
    rtype, (system, value) = resource["resourceType"], ident
    return {
        "fullUrl": full_url(rtype, system, value),
        "resource": resource,
        "request": {"method": "PUT", "url": conditional_url(rtype, system, value)},
    }


def first_identifier(resource: Mapping[str, Any]) -> tuple[str, str] | None:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") and ident.get("value"):
            return str(ident["system"]), str(ident["value"])
    return None


def transaction_bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def same_content(stored: Mapping[str, Any], incoming: Mapping[str, Any]) -> bool:
    """Whether an update would store what is already there: equal but for the server's
    meta.versionId and meta.lastUpdated."""
    return _without_server_meta(stored) == _without_server_meta(incoming)


def _without_server_meta(resource: Mapping[str, Any]) -> dict[str, Any]:
    body = dict(resource)
    meta = body.pop("meta", None)
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if kept:
            body["meta"] = kept
    return body


# --- building resources --------------------------------------------------------------------------


def eligibility(
    min_age: int | None, max_age: int | None, requirements: Iterable[str]
) -> list[dict[str, Any]]:
    """HealthcareService.eligibility: an `age` entry carrying the range, one entry per other code."""
    found: list[dict[str, Any]] = []
    if min_age is not None or max_age is not None:
        age_range: dict[str, Any] = {}
        if min_age is not None:
            age_range["low"] = _years(min_age)
        if max_age is not None:
            age_range["high"] = _years(max_age)
        served = f"{min_age if min_age is not None else 0}" + (f"-{max_age}" if max_age is not None else "+")
        found.append(
            {
                "extension": [{"url": codes.AGE_RANGE_EXTENSION, "valueRange": age_range}],
                "code": codes.concept(codes.ELIGIBILITY, "age", codes.ELIGIBILITY_DISPLAYS["age"]),
                "comment": f"Ages {served}",
            }
        )
    for code in requirements:
        if code not in codes.ELIGIBILITY_DISPLAYS or code == "age":
            allowed = ", ".join(c for c in codes.ELIGIBILITY_DISPLAYS if c != "age")
            raise InvalidInput(f"eligibility {code!r} is not one of {allowed}")
        found.append({"code": codes.concept(codes.ELIGIBILITY, code, codes.ELIGIBILITY_DISPLAYS[code])})
    return found


def _years(value: int) -> dict[str, Any]:
    return {"value": value, "unit": "years", "system": codes.UCUM, "code": "a"}


def capacity_extension(open_slots: int) -> dict[str, Any]:
    return {"url": codes.CAPACITY_EXTENSION, "valueInteger": open_slots}


def referral_methods(methods: Iterable[str]) -> list[dict[str, Any]]:
    found = []
    for method in methods:
        if method not in REFERRAL_METHODS:
            raise InvalidInput(f"referral method {method!r} is not one of {', '.join(REFERRAL_METHODS)}")
        found.append(codes.concept(codes.REFERRAL_METHOD, method, REFERRAL_METHODS[method]))
    return found


def languages(tags: Iterable[str]) -> list[dict[str, Any]]:
    found = []
    for tag in tags:
        if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", tag):
            raise InvalidInput(f"language {tag!r} is not a BCP-47 tag (en, es, zh-Hant, ...)")
        found.append({"coding": [{"system": codes.BCP47, "code": tag}]})
    return found


def classification(
    categories: Iterable[str], extra_types: Iterable[str] = ()
) -> dict[str, list[dict[str, Any]]]:
    """category, type and specialty of a HealthcareService from Gravity categories and the
    behavioural-health kinds (directory_codes.BEHAVIOURAL_HEALTH)."""
    category: list[dict[str, Any]] = []
    types: list[dict[str, Any]] = []
    specialty: list[dict[str, Any]] = []

    def add(target: list[dict[str, Any]], item: dict[str, Any]) -> None:
        if item not in target:
            target.append(item)

    for name in categories:
        if name in codes.GRAVITY_CATEGORIES:
            add(category, codes.gravity(name))
        elif name in codes.BEHAVIOURAL_HEALTH:
            kind = codes.BEHAVIOURAL_HEALTH[name]
            for code in kind["category"]:
                add(category, codes.service_category(code))
            for code in kind["type"]:
                add(types, codes.service_type(code))
            for code in kind["snomed_type"]:
                add(types, codes.snomed(code))
            for code in kind["specialty"]:
                add(specialty, codes.snomed(code))
        else:
            known = ", ".join([*codes.GRAVITY_CATEGORIES, *codes.BEHAVIOURAL_HEALTH])
            raise InvalidInput(f"category {name!r} is not one of: {known}")
    for code in extra_types:
        if not code.isdigit():
            raise InvalidInput(f"type {code!r} is not a service-type code (a number)")
        add(types, codes.service_type(code))
    return {"category": category, "type": types, "specialty": specialty}


# --- CSV ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CsvDirectory:
    """What a CSV file becomes: resources keyed by identifier, ready for a transaction."""

    organizations: list[dict[str, Any]]
    locations: list[dict[str, Any]]
    services: list[dict[str, Any]]

    def bundle(self) -> dict[str, Any]:
        resources = [*self.organizations, *self.locations, *self.services]
        return transaction_bundle([transaction_entry(r) for r in resources])


def parse_directory_csv(text: str, *, source: str) -> CsvDirectory:
    """One row per service (CSV_COLUMNS). Identifiers are `<base>/<source>/<type>|<id column>`,
    so re-importing the file (or a corrected one) updates the same resources."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [name for name, required, _ in CSV_COLUMNS if required and name not in header]
    if missing:
        raise InvalidInput(f"CSV header: missing column(s) {', '.join(missing)}")
    unknown = [h for h in header if h not in {name for name, _, _ in CSV_COLUMNS}]
    if unknown:
        raise InvalidInput(f"CSV header: unknown column(s) {', '.join(unknown)}")
    base = f"{codes.DIRECTORY_IDENTIFIER_BASE}/{_slug(source)}"
    organizations: dict[str, dict[str, Any]] = {}
    locations: dict[str, dict[str, Any]] = {}
    services: dict[str, dict[str, Any]] = {}
    for number, raw in enumerate(reader, start=2):  # the header is line 1
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()):
            continue
        try:
            _add_row(row, base, organizations, locations, services)
        except InvalidInput as exc:
            raise InvalidInput(f"CSV line {number}: {exc.diagnostics}") from None
    if not services:
        raise InvalidInput("The CSV has no service rows")
    return CsvDirectory(list(organizations.values()), list(locations.values()), list(services.values()))


def _add_row(
    row: dict[str, str],
    base: str,
    organizations: dict[str, dict[str, Any]],
    locations: dict[str, dict[str, Any]],
    services: dict[str, dict[str, Any]],
) -> None:
    for name, required, _ in CSV_COLUMNS:
        if required and not row.get(name):
            raise InvalidInput(f"{name} is empty")
    service_id = row["service_id"]
    if service_id in services:
        raise InvalidInput(f"service_id {service_id!r} appears twice")
    org = _organization(row, base)
    org_id = row["organization_id"]
    if org_id in organizations and organizations[org_id]["name"] != org["name"]:
        raise InvalidInput(f"organization {org_id!r} has two names ({organizations[org_id]['name']!r})")
    organizations.setdefault(org_id, org)
    org_url = transaction_entry(organizations[org_id])["fullUrl"]
    location = _location(row, base, org_url)
    location_url = None
    if location is not None:
        loc_id = location["identifier"][0]["value"]
        locations.setdefault(loc_id, location)
        location_url = transaction_entry(locations[loc_id])["fullUrl"]
    services[service_id] = _service(row, base, org_url, location_url)


def _organization(row: dict[str, str], base: str) -> dict[str, Any]:
    org: dict[str, Any] = {
        "resourceType": "Organization",
        "identifier": [{"system": f"{base}/organization", "value": row["organization_id"]}],
        "active": True,
        "name": row["organization_name"],
    }
    telecom = _telecom(row.get("organization_phone"), None, row.get("organization_website"))
    if telecom:
        org["telecom"] = telecom
    return org


def _location(row: dict[str, str], base: str, org_url: str) -> dict[str, Any] | None:
    has_address = any(row.get(k) for k in ("address", "city", "postal_code"))
    lat, lon = _decimal(row, "latitude", -90, 90), _decimal(row, "longitude", -180, 180)
    if (lat is None) != (lon is None):
        raise InvalidInput("give both latitude and longitude, or neither")
    if not (has_address or lat is not None or row.get("location_id")):
        return None
    location: dict[str, Any] = {
        "resourceType": "Location",
        "identifier": [{"system": f"{base}/location", "value": row.get("location_id") or f"{row['service_id']}-site"}],  # noqa: E501
        "status": "active",
        "name": row.get("location_name") or row["organization_name"],
        "mode": "instance",
    }  # fmt: skip
    if has_address:
        address: dict[str, Any] = {"use": "work", "type": "physical"}
        if row.get("address"):
            address["line"] = [row["address"]]
        for key, column in (("city", "city"), ("state", "state"), ("postalCode", "postal_code")):
            if row.get(column):
                address[key] = row[column]
        location["address"] = address
    if lat is not None and lon is not None:
        location["position"] = {"longitude": lon, "latitude": lat}
    location["managingOrganization"] = {"reference": org_url, "display": row["organization_name"]}
    return location


def _service(row: dict[str, str], base: str, org_url: str, location_url: str | None) -> dict[str, Any]:
    service: dict[str, Any] = {
        "resourceType": "HealthcareService",
        "identifier": [{"system": f"{base}/healthcare-service", "value": row["service_id"]}],
        "active": True,
        "providedBy": {"reference": org_url, "display": row["organization_name"]},
    }
    capacity = _integer(row, "capacity", 0, 100_000)
    if capacity is not None:
        service["extension"] = [capacity_extension(capacity)]
    parts = classification(_list(row.get("categories")), _list(row.get("types")))
    service.update({k: v for k, v in parts.items() if v})
    if location_url:
        service["location"] = [{"reference": location_url}]
    service["name"] = row["service_name"]
    if row.get("description"):
        service["comment"] = row["description"]
    telecom = _telecom(row.get("phone"), row.get("email"), row.get("website"))
    if telecom:
        service["telecom"] = telecom
    rules = eligibility(
        _integer(row, "min_age", 0, 130), _integer(row, "max_age", 0, 130), _list(row.get("eligibility"))
    )
    if rules:
        service["eligibility"] = rules
    characteristics = [c for c, col in ((codes.INTERPRETER, "interpreter"), (codes.REMOTE, "remote"))
                       if row.get(col, "").lower() in _YES]  # fmt: skip
    if characteristics:
        service["characteristic"] = [
            codes.concept(codes.CHARACTERISTIC, c, codes.CHARACTERISTIC_DISPLAYS[c]) for c in characteristics
        ]
    spoken = languages(_list(row.get("languages")))
    if spoken:
        service["communication"] = spoken
    methods = referral_methods(_list(row.get("referral_methods")))
    if methods:
        service["referralMethod"] = methods
    hours = available_time(row.get("hours") or "")
    if hours:
        service["availableTime"] = hours
    return service


def _telecom(phone: str | None, email: str | None, url: str | None) -> list[dict[str, Any]]:
    found = []
    for system, value in (("phone", phone), ("email", email), ("url", url)):
        if value:
            found.append({"system": system, "value": value, "use": "work"})
    return found


def _list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(";") if item.strip()]


def _integer(row: dict[str, str], column: str, low: int, high: int) -> int | None:
    text = row.get(column)
    if not text:
        return None
    if not re.fullmatch(r"\d+", text) or not low <= int(text) <= high:
        raise InvalidInput(f"{column} {text!r} is not a whole number from {low} to {high}")
    return int(text)


def _decimal(row: dict[str, str], column: str, low: float, high: float) -> float | None:
    text = row.get(column)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"{column} {text!r} is not a number") from None
    if not low <= value <= high:
        raise InvalidInput(f"{column} {text!r} is out of range ({low} to {high})")
    return value


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not slug:
        raise InvalidInput(f"source {text!r} needs letters or digits")
    return slug
