"""Validation on write: what fhir.resources checks, and what it lets through that we refuse."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import InvalidInput
from shared.fhir.validation import validate_resource

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "active": True,
    "gender": "female",
    "birthDate": "1980-02-03",
    "name": [{"family": "Testperson", "given": ["Alex"]}],
    "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-1"}],
}


def test_a_valid_patient_passes_unchanged() -> None:
    assert validate_resource(dict(PATIENT), "Patient") == PATIENT


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        ({"active": "yes"}, "Patient.active", "JSON boolean"),
        ({"gender": "femal"}, "Patient.gender", "required value set"),
        ({"birthDate": "1980-13-01"}, "Patient.birthDate", "Date"),
        ({"name": {"family": "X"}}, "Patient.name", "JSON array"),
        ({"multipleBirthInteger": True}, "Patient.multipleBirthInteger", "JSON integer"),
        ({"contact": [{"gender": "x"}]}, "Patient.contact[0].gender", "required value set"),
        ({"favouriteColour": "blue"}, "Patient.favouriteColour", "Extra inputs"),
    ],
)
def test_invalid_patient_is_refused_with_the_location_of_the_problem(
    change: dict[str, Any], where: str, says: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_resource({**PATIENT, **change}, "Patient")
    assert caught.value.expression and where in caught.value.expression
    assert says in caught.value.diagnostics


def test_resource_type_must_match_the_endpoint() -> None:
    with pytest.raises(InvalidInput, match="does not match"):
        validate_resource({"resourceType": "Observation"}, "Patient")


def test_unknown_resource_type_is_refused() -> None:
    with pytest.raises(InvalidInput, match="Unknown resourceType"):
        validate_resource({"resourceType": "Patientt"})


def test_numbers_in_strings_are_refused_in_nested_datatypes() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "PHQ-9 total"},
        "valueQuantity": {"value": "12"},
    }
    with pytest.raises(InvalidInput, match=r"Observation\.valueQuantity\.value: must be a JSON number"):
        validate_resource(obs)


def test_contained_resources_are_checked_too() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "contained": [{"resourceType": "Patient", "id": "p", "gender": "nope"}],
    }
    with pytest.raises(InvalidInput, match=r"contained\[0\]"):
        validate_resource(obs)
