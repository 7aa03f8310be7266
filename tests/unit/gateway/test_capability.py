"""The merged CapabilityStatement and the OpenAPI description of the `/fhir` routes (no HTTP)."""

from __future__ import annotations

from services.gateway.capability import merge, remote_revincludes
from services.gateway.openapi import add_fhir_routes, fhir_openapi_paths
from shared.fhir.ownership import OWNER_OF
from shared.fhir.rest import capability_statement

BASE = "https://carebridge.example/fhir"


def statements() -> dict[str, dict]:  # type: ignore[type-arg]
    return {
        service: capability_statement(service, [t for t, s in OWNER_OF.items() if s == service], base_url="x")
        for service in ("intake", "careplan", "referral")
    }


def test_every_service_resource_appears_once_as_its_service_declared_it() -> None:
    parts = statements()
    merged = merge(parts, BASE, [])
    resources = merged["rest"][0]["resource"]
    types = [r["type"] for r in resources]
    assert len(types) == len(set(types)) and set(types) == {t for t, s in OWNER_OF.items() if s != "gateway"}
    careplan = next(r for r in resources if r["type"] == "CarePlan")
    declared = next(r for r in parts["careplan"]["rest"][0]["resource"] if r["type"] == "CarePlan")
    assert careplan["searchParam"] == declared["searchParam"]
    assert careplan["interaction"] == declared["interaction"]


def test_the_gateway_declares_its_own_interactions_operation_and_security() -> None:
    merged = merge(statements(), BASE, [])
    rest = merged["rest"][0]
    assert merged["implementation"]["url"] == BASE and merged["fhirVersion"] == "4.0.1"
    assert rest["interaction"] == [{"code": "batch"}, {"code": "transaction"}]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert [o["name"] for o in patient["operation"]] == ["everything"]
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


def test_revincludes_the_gateway_resolves_across_services_are_declared() -> None:
    assert "CarePlan:subject" in remote_revincludes("Patient")
    assert "Task:focus" in remote_revincludes("CarePlan")
    assert "Condition:subject" not in remote_revincludes("Patient")  # intake declares its own


def test_openapi_lists_every_fhir_route_with_its_search_parameters() -> None:
    paths = fhir_openapi_paths()
    for rtype in OWNER_OF:
        assert {"get", "post"} <= set(paths[f"/fhir/{rtype}"])
        assert {"get", "put", "patch", "delete"} <= set(paths[f"/fhir/{rtype}/{{id}}"])
    names = {p["name"] for p in paths["/fhir/Patient"]["get"]["parameters"]}
    assert {"identifier", "name", "birthdate", "_count", "_include"} <= names
    assert paths["/fhir/metadata"]["get"]["security"] == []
    assert "/fhir/Patient/{id}/$everything" in paths and "/fhir" in paths


def test_openapi_document_declares_bearer_authentication() -> None:
    schema = add_fhir_routes({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}})
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert schema["security"] == [{"bearerAuth": []}]
