"""The resource directory as data: CSV rows to FHIR resources, opening hours, what counts as an
unchanged update, and the synthetic directory the repository ships."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote

import pytest

from services.intake.domain import screening_codes as intake_codes
from services.referral.directory_data.build import DIRECTORY_FILE, directory_bytes
from services.referral.domain import directory_codes as codes
from services.referral.domain.directory import (
    conditional_url,
    parse_directory_csv,
    same_content,
)
from services.referral.domain.opening_hours import available_time
from shared.errors import InvalidInput
from shared.fhir.validation import validate_resource
from tests.unit.referral.directory_fixture import shipped_bundle

HEADER = (
    "service_id,service_name,organization_id,organization_name,categories,location_id,address,city,"
    "latitude,longitude,languages,hours,min_age,eligibility,capacity,referral_methods,interpreter\n"
)


def csv_of(*rows: str, header: str = HEADER) -> str:
    return header + "".join(f"{row}\n" for row in rows)


# --- CSV -------------------------------------------------------------------------------------------


def test_csv_rows_become_organization_location_and_service_with_conditional_references() -> None:
    directory = parse_directory_csv(
        csv_of(
            "S1,Night Shelter,O1,Harbor Aid,homelessness;crisis,L1,1 Oak St,Riverbend,40.01,-100.02,"
            "en;es,24/7,18,low-income,12,phone;elec,yes",
            "S2,Day Meals,O1,Harbor Aid,food-insecurity,L1,1 Oak St,Riverbend,40.01,-100.02,en,"
            "mon-fri 11:00-13:00,,,,,",
        ),
        source="Harbor Aid 2026",
    )
    assert [o["name"] for o in directory.organizations] == ["Harbor Aid"]
    assert len(directory.locations) == 1 and len(directory.services) == 2
    org, site, shelter = directory.organizations[0], directory.locations[0], directory.services[0]
    base = "http://carebridge.example/fhir/directory/harbor-aid-2026"
    assert org["identifier"] == [{"system": f"{base}/organization", "value": "O1"}]
    assert site["position"] == {"longitude": -100.02, "latitude": 40.01}
    assert shelter["identifier"] == [{"system": f"{base}/healthcare-service", "value": "S1"}]
    assert {c["coding"][0]["code"] for c in shelter["category"]} == {"homelessness", "22"}
    assert {c["coding"][0]["code"] for c in shelter["type"]} == {"135", "307"}
    assert shelter["extension"] == [{"url": codes.CAPACITY_EXTENSION, "valueInteger": 12}]
    assert shelter["availableTime"] == [
        {"daysOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "allDay": True}
    ]
    assert [m["coding"][0]["code"] for m in shelter["referralMethod"]] == ["phone", "elec"]
    assert shelter["eligibility"][0]["extension"][0]["valueRange"]["low"]["value"] == 18
    assert shelter["eligibility"][1]["code"]["coding"][0]["code"] == "low-income"
    assert shelter["characteristic"][0]["coding"][0]["code"] == codes.INTERPRETER

    bundle = directory.bundle()
    urls = {e["fullUrl"] for e in bundle["entry"]}
    assert shelter["providedBy"]["reference"] in urls and shelter["location"][0]["reference"] in urls
    assert bundle["entry"][0]["request"] == {
        "method": "PUT",
        "url": f"Organization?identifier={quote(f'{base}/organization|O1', safe='')}",
    }
    for entry in bundle["entry"]:
        validate_resource(entry["resource"])


def test_the_same_csv_gives_the_same_bundle() -> None:
    text = csv_of("S1,Pantry,O1,Aid,food-insecurity,,,,,,,,,,,,")
    assert parse_directory_csv(text, source="a").bundle() == parse_directory_csv(text, source="a").bundle()


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ((), "service_id,service_name\n", "missing column(s) organization_id, organization_name, categories"),
        (("S1,P,O1,Aid,food-insecurity",), HEADER.replace("capacity", "slots"), "unknown column(s) slots"),
        (("S1,P,O1,Aid,hunger,,,,,,,,,,,,",), HEADER, "line 2: category 'hunger' is not one of"),
        (
            ("S1,P,O1,Aid,food-insecurity,,,,40.1,,,,,,,,",),
            HEADER,
            "line 2: give both latitude and longitude",
        ),
        (("S1,P,O1,Aid,food-insecurity,,,,,,,mon-fri 9-5,,,,,",), HEADER, "hours 'mon-fri 9-5'"),
        (("S1,P,O1,Aid,food-insecurity,,,,,,,,,vip,,,",), HEADER, "eligibility 'vip' is not one of"),
        (("S1,P,O1,Aid,food-insecurity,,,,,,,,,,-3,,",), HEADER, "capacity '-3' is not a whole number"),
        (("S1,P,O1,Aid,food-insecurity,,,,,,,,,,,pigeon,",), HEADER, "referral method 'pigeon'"),
        (
            ("S1,P,O1,Aid,food-insecurity", "S1,Q,O1,Aid,food-insecurity"),
            HEADER,
            "line 3: service_id 'S1' appears twice",
        ),
        (
            ("S1,P,O1,Aid,food-insecurity", "S2,Q,O1,Other,food-insecurity"),
            HEADER,
            "line 3: organization 'O1' has two names",
        ),
        (("S1,,O1,Aid,food-insecurity",), HEADER, "line 2: service_name is empty"),
        ((), HEADER, "no service rows"),
    ],
)
def test_csv_errors_name_the_line_and_the_problem(rows: tuple[str, ...], header: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        parse_directory_csv(csv_of(*rows, header=header), source="test")


# --- hours, identifiers, unchanged ---------------------------------------------------------------


def test_hours_accept_day_lists_ranges_and_all_day() -> None:
    assert available_time("mon,wed 09:30-12:00; sat-sun all day") == [
        {"daysOfWeek": ["mon", "wed"], "availableStartTime": "09:30:00", "availableEndTime": "12:00:00"},
        {"daysOfWeek": ["sat", "sun"], "allDay": True},
    ]
    for bad in ("fri-mon 09:00-10:00", "someday 09:00-10:00", "mon 18:00-09:00", "mon 09:00-24:00"):
        with pytest.raises(InvalidInput):
            available_time(bad)


def test_identifier_values_with_search_separators_are_escaped() -> None:
    assert conditional_url("Location", "urn:x", "a|b,c") == "Location?identifier=urn%3Ax%7Ca%5C%7Cb%5C%2Cc"
    assert unquote(conditional_url("Location", "urn:x", "a|b,c")) == r"Location?identifier=urn:x|a\|b\,c"


def test_an_update_is_unchanged_when_only_the_servers_meta_differs() -> None:
    stored = {
        "resourceType": "Location",
        "id": "1",
        "meta": {"versionId": "3", "lastUpdated": "x"},
        "name": "A",
    }
    assert same_content(stored, {"resourceType": "Location", "id": "1", "name": "A"})
    assert not same_content(stored, {"resourceType": "Location", "id": "1", "name": "B"})
    tagged = {**stored, "meta": {**stored["meta"], "tag": [{"code": "t"}]}}
    assert not same_content(tagged, {"resourceType": "Location", "id": "1", "name": "A"})


# --- the shipped directory -------------------------------------------------------------------------


def _resources(kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in shipped_bundle()["entry"] if e["resource"]["resourceType"] == kind]


def test_the_shipped_file_is_what_the_generator_builds() -> None:
    assert DIRECTORY_FILE.read_bytes() == directory_bytes()


def test_the_shipped_directory_has_200_services_and_40_organizations_some_taking_electronic_referrals() -> (
    None
):
    services, orgs = _resources("HealthcareService"), _resources("Organization")
    assert len(services) >= 200 and len(orgs) >= 40
    assert len(_resources("Endpoint")) >= 10
    assert sum("endpoint" in o for o in orgs) == len(_resources("Endpoint"))
    assert len(_resources("PractitionerRole")) >= 20


def test_the_shipped_directory_uses_every_gravity_category_with_intakes_code_system() -> None:
    assert codes.SDOHCC == intake_codes.SDOHCC_CATEGORY
    used = {
        c["code"]
        for s in _resources("HealthcareService")
        for concept in s.get("category", [])
        for c in concept["coding"]
        if c["system"] == codes.SDOHCC
    }
    assert used == set(codes.GRAVITY_CATEGORIES)
    assert set(intake_codes.SDOH_DISPLAYS) <= used  # every need intake publishes has services


def test_the_shipped_directory_has_psychiatry_therapy_sud_and_crisis_services() -> None:
    codings = {
        (c["system"], c["code"])
        for s in _resources("HealthcareService")
        for element in ("category", "type", "specialty")
        for concept in s.get(element, [])
        for c in concept["coding"]
    }
    expected = {
        (codes.SNOMED, "394587001"),  # psychiatry
        (codes.SNOMED, "394913002"),  # psychotherapy
        (codes.SERVICE_CATEGORY, "8"),  # counselling
        (codes.SERVICE_CATEGORY, "12"),  # drug/alcohol
        (codes.SERVICE_TYPE, "135"),  # mental health crisis response
    }
    assert expected <= codings


def test_every_shipped_resource_is_valid_fhir_r4() -> None:
    for entry in shipped_bundle()["entry"]:
        validate_resource(entry["resource"])


def test_every_shipped_entry_is_a_conditional_update_and_every_reference_resolves_in_the_file() -> None:
    entries = shipped_bundle()["entry"]
    urls = {e["fullUrl"] for e in entries}
    assert len(urls) == len(entries)
    for entry in entries:
        resource, request = entry["resource"], entry["request"]
        ident = resource["identifier"][0]
        assert entry["fullUrl"].startswith("urn:uuid:")
        assert request == {
            "method": "PUT",
            "url": conditional_url(resource["resourceType"], ident["system"], ident["value"]),
        }
        assert "id" not in resource
        for ref in _references(resource):
            assert ref in urls


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []


def test_shipped_services_carry_position_language_hours_capacity_and_referral_method() -> None:
    services = _resources("HealthcareService")
    assert all(
        s.get("communication") and s.get("availableTime") and s.get("referralMethod") for s in services
    )
    assert (
        sum(any(e["url"] == codes.CAPACITY_EXTENSION for e in s.get("extension", [])) for s in services) > 150
    )
    assert {c["coding"][0]["code"] for s in services for c in s["communication"]} >= {"en", "es", "vi", "zh"}
    for location in _resources("Location"):
        assert abs(location["position"]["latitude"] - 40.0) < 0.2
        assert abs(location["position"]["longitude"] + 100.0) < 0.2


def test_shipped_contact_details_are_fictional() -> None:
    for entry in shipped_bundle()["entry"]:
        for telecom in entry["resource"].get("telecom", []):
            if telecom["system"] == "phone":
                assert re.fullmatch(r"\+1 \d{3} 555 01\d\d", telecom["value"]), telecom
            else:
                assert ".example" in telecom["value"], telecom
        if entry["resource"]["resourceType"] == "Endpoint":
            assert entry["resource"]["address"].endswith(".example/r4")
