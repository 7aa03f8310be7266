"""The CapabilityStatement each service serves, generated from the ownership and search tables."""

from __future__ import annotations

from typing import Any

from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest.capability import TYPE_INTERACTIONS, capability_statement
from shared.fhir.search_params import SEARCH_PARAMETERS


def resource(statement: dict[str, Any], rtype: str) -> dict[str, Any]:
    return next(r for r in statement["rest"][0]["resource"] if r["type"] == rtype)


def test_intake_declares_fhir_4_0_1_json_and_exactly_its_own_types() -> None:
    cs = capability_statement("intake", OWNED_TYPES["intake"], base_url="https://gw/fhir")
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1" and cs["kind"] == "instance" and cs["status"] == "active"
    assert "json" in cs["format"] and cs["patchFormat"] == [
        "application/json-patch+json",
        "application/merge-patch+json",
    ]
    assert cs["implementation"]["url"] == "https://gw/fhir"
    rest = cs["rest"][0]
    assert rest["mode"] == "server"
    assert [r["type"] for r in rest["resource"]] == list(OWNED_TYPES["intake"])
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system"}


def test_each_type_lists_every_routed_interaction_and_the_versioning_it_implements() -> None:
    cs = capability_statement("careplan", OWNED_TYPES["careplan"], base_url="b")
    plan = resource(cs, "CarePlan")
    assert [i["code"] for i in plan["interaction"]] == list(TYPE_INTERACTIONS)
    assert plan["versioning"] == "versioned" and plan["readHistory"] is True and plan["updateCreate"] is True
    assert plan["conditionalCreate"] is True and plan["conditionalUpdate"] is True
    assert plan["conditionalDelete"] == "single"


def test_search_params_come_from_the_search_table_with_their_spec_definitions() -> None:
    cs = capability_statement("intake", OWNED_TYPES["intake"], base_url="b")
    patient = resource(cs, "Patient")
    by_name = {p["name"]: p for p in patient["searchParam"]}
    assert set(by_name) == {"_id", "_lastUpdated"} | {p.name for p in SEARCH_PARAMETERS["Patient"]}
    assert by_name["birthdate"] == {
        "name": "birthdate",
        "definition": "http://hl7.org/fhir/SearchParameter/Patient-birthdate",
        "type": "date",
    }
    assert by_name["_id"]["definition"] == "http://hl7.org/fhir/SearchParameter/Resource-id"


def test_includes_follow_reference_params_and_revincludes_come_from_local_types_that_point_here() -> None:
    cs = capability_statement("intake", OWNED_TYPES["intake"], base_url="b")
    patient = resource(cs, "Patient")
    assert "Patient:general-practitioner" in patient["searchInclude"]
    assert "Observation:subject" in patient["searchRevInclude"]
    assert "Encounter:patient" in patient["searchRevInclude"]
    assert not any(r.startswith("CarePlan:") for r in patient["searchRevInclude"])  # careplan's
    observation = resource(cs, "Observation")
    assert "Observation:patient" in observation["searchInclude"]
