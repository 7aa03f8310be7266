"""Each search parameter type, modifier and prefix against a real store, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.store import Store
from tests.integration.shared.test_search_support import id_set, ids

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def patient(id_: str, family: str, given: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id_, "name": [{"family": family, "given": [given]}], **extra}


def observation(id_: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "subject": {"reference": subject},
        **extra,
    }


def risk(id_: str, subject: str, probability: float) -> dict[str, Any]:
    prediction = [{"probabilityDecimal": probability}]
    return {"resourceType": "RiskAssessment", "id": id_, "status": "final", "subject": {"reference": subject},
            "prediction": prediction}  # fmt: skip


def questionnaire(id_: str, url: str) -> dict[str, Any]:
    return {"resourceType": "Questionnaire", "id": id_, "status": "active", "url": url}


RESOURCES: list[dict[str, Any]] = [
    patient(
        "ana", "García", "Ana", gender="female", birthDate="1980-05-12", active=True,
        identifier=[{"system": "urn:mrn", "value": "M1", "type": {"text": "Medical record number"}}],
        telecom=[{"system": "email", "value": "ana@example.org"}],
    ),
    patient(
        "jose", "Garcia", "José", gender="male", birthDate="1975",
        identifier=[{"system": "urn:mrn", "value": "M2"}, {"value": "LOCAL-9"}],
        telecom=[{"system": "phone", "value": "555-0100"}],
    ),
    patient("wei", "Li", "Wei", gender="other", birthDate="1990-01"),
    patient("zed", "Garcia", "Zed", gender="male", birthDate="1980-05-12"),  # deleted below
    observation(
        "phq", "Patient/ana", effectiveDateTime="2024-03-01T10:00:00Z",
        code={"coding": [{"system": LOINC, "code": "44249-1", "display": "PHQ-9 total score"}]},
        valueQuantity={"value": 12, "system": UCUM, "code": "{score}"},
    ),
    observation(
        "bp", "Patient/jose", status="preliminary",
        effectivePeriod={"start": "2024-03-01", "end": "2024-03-05"},
        code={"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
        valueQuantity={"value": 120, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
    ),
    observation(
        "note", "https://other.example.org/fhir/Patient/ana/_history/2", code={"text": "Mood note"},
        valueQuantity={"value": 120.4, "unit": "mmHg"},
    ),
    risk("low", "Patient/ana", 0.2),
    risk("high", "Patient/jose", 0.75),
    questionnaire("phq9", "http://example.org/Questionnaire/phq-9"),
    questionnaire("gad7", "http://example.org/Questionnaire/gad-7"),
    {"resourceType": "Encounter", "id": "enc", "status": "finished", "class": {"code": "IMP"},
     "subject": {"reference": "Patient/ana"}},
    {"resourceType": "Condition", "id": "dep", "subject": {"reference": "Patient/ana"},
     "encounter": {"reference": "Encounter/enc"}, "code": {"text": "Depression"}},
]  # fmt: skip


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await Store.open(database_url)
    async with store.transaction() as tx:
        for resource in RESOURCES:
            await tx.create(resource)
        await tx.delete("Patient", "zed")
    yield store
    await store.close()


async def test_token_matches_system_and_code_in_every_form(store: Store) -> None:
    assert await id_set(store, "Patient", "identifier=urn:mrn|M1") == {"ana"}
    assert await id_set(store, "Patient", "identifier=M2") == {"jose"}
    assert await id_set(store, "Patient", "identifier=|LOCAL-9") == {"jose"}
    assert await id_set(store, "Patient", "identifier=|M2") == set()  # M2 has a system
    assert await id_set(store, "Patient", "identifier=urn:mrn|") == {"ana", "jose"}
    assert await id_set(store, "Patient", "gender=female,other") == {"ana", "wei"}
    assert await id_set(store, "Patient", "active=true") == {"ana"}
    assert await id_set(store, "Observation", f"code={LOINC}|8480-6") == {"bp"}


async def test_token_not_returns_resources_without_a_matching_code_including_those_without_any(
    store: Store,
) -> None:
    assert await id_set(store, "Patient", "gender:not=male") == {"ana", "wei"}
    assert await id_set(store, "Patient", "identifier:not=urn:mrn|M1") == {"jose", "wei"}


async def test_token_text_searches_displays_concept_text_and_identifier_type_text(store: Store) -> None:
    assert await id_set(store, "Observation", "code:text=pressure") == {"bp"}
    assert await id_set(store, "Observation", "code:text=SYSTOLIC blood") == {"bp"}
    assert await id_set(store, "Observation", "code:text=mood") == {"note"}
    assert await id_set(store, "Patient", "identifier:text=medical record") == {"ana"}


async def test_string_is_starts_with_case_and_accent_insensitive_and_never_finds_deleted(
    store: Store,
) -> None:
    assert await id_set(store, "Patient", "name=garc") == {"ana", "jose"}
    assert await id_set(store, "Patient", "given=JOSÉ") == {"jose"}
    assert await id_set(store, "Patient", "family=arcia") == set()
    assert await id_set(store, "Patient", "name=zed") == set()


async def test_string_exact_and_contains(store: Store) -> None:
    assert await id_set(store, "Patient", "family:exact=García") == {"ana"}
    assert await id_set(store, "Patient", "family:exact=garcía") == set()
    assert await id_set(store, "Patient", "family:exact=Garc") == set()
    assert await id_set(store, "Patient", "name:contains=RCI") == {"ana", "jose"}
    assert await id_set(store, "Patient", "name:contains=e%") == set()  # % is a character, not a wildcard


async def test_missing_true_and_false_on_each_type(store: Store) -> None:
    assert await id_set(store, "Patient", "identifier:missing=true") == {"wei"}
    assert await id_set(store, "Patient", "email:missing=false") == {"ana"}
    assert await id_set(store, "Observation", "date:missing=true") == {"note"}
    assert await id_set(store, "Observation", "value-quantity:missing=false") == {"phq", "bp", "note"}
    assert await id_set(store, "Condition", "encounter:missing=false") == {"dep"}
    assert await id_set(store, "RiskAssessment", "probability:missing=true") == set()
    assert await id_set(store, "Questionnaire", "url:missing=true") == set()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("birthdate=1980", {"ana"}),
        ("birthdate=1980-05", {"ana"}),
        ("birthdate=1980-05-12", {"ana"}),
        ("birthdate=eq1975-06", set()),  # 1975 is wider than June 1975
        ("birthdate=ne1980", {"jose", "wei"}),
        ("birthdate=gt1980-05-12", {"wei"}),
        ("birthdate=lt1980", {"jose"}),
        ("birthdate=ge1980-05-12", {"ana", "wei"}),
        ("birthdate=le1980-05-12", {"ana", "jose"}),
        ("birthdate=sa1980-12-31", {"wei"}),
        ("birthdate=eb1980-05-12", {"jose"}),
        ("birthdate=ge1975-06", {"jose", "ana", "wei"}),  # 1975 ends after June 1975
        ("birthdate=ap1990-02-01", {"wei"}),  # ±10% of the ~36 years to now
        ("birthdate=ge1976&birthdate=lt1985", {"ana"}),
        ("birthdate=1975,1990", {"jose", "wei"}),
    ],
)
async def test_date_prefixes_on_partial_dates(store: Store, query: str, expected: set[str]) -> None:
    assert await id_set(store, "Patient", query) == expected


async def test_dates_against_periods_and_instants(store: Store) -> None:
    assert await id_set(store, "Observation", "date=2024-03-01") == {"phq"}  # the period is wider
    assert await id_set(store, "Observation", "date=2024-03") == {"phq", "bp"}
    assert await id_set(store, "Observation", "date=gt2024-03-02") == {"bp"}
    assert await id_set(store, "Observation", "date=lt2024-03-01T10:00:00Z") == {"bp"}
    assert await id_set(store, "Observation", "date=sa2024-02-29") == {"phq", "bp"}
    assert await id_set(store, "Observation", "date=eb2024-03-06") == {"phq", "bp"}
    assert await id_set(store, "Observation", "date=ge2024-03-01T10:00:00Z") == {"phq", "bp"}


async def test_number_precision_and_prefixes(store: Store) -> None:
    assert await id_set(store, "RiskAssessment", "probability=0.2") == {"low"}
    assert await id_set(store, "RiskAssessment", "probability=0.20") == {"low"}
    assert await id_set(store, "RiskAssessment", "probability=0.8") == {"high"}  # [0.75, 0.85)
    assert await id_set(store, "RiskAssessment", "probability=0.80") == set()
    assert await id_set(store, "RiskAssessment", "probability=gt0.5") == {"high"}
    assert await id_set(store, "RiskAssessment", "probability=le0.2") == {"low"}
    assert await id_set(store, "RiskAssessment", "probability=ne0.2") == {"high"}
    assert await id_set(store, "RiskAssessment", "probability=ap0.7") == {"high"}  # 0.63 - 0.77
    assert await id_set(store, "RiskAssessment", "probability=sa0.7") == {"high"}
    assert await id_set(store, "RiskAssessment", "probability=eb0.7") == {"low"}


async def test_quantity_by_value_system_code_and_unit(store: Store) -> None:
    assert await id_set(store, "Observation", f"value-quantity=120|{UCUM}|mm[Hg]") == {"bp"}
    assert await id_set(store, "Observation", "value-quantity=120||mm[Hg]") == {"bp"}
    assert await id_set(store, "Observation", "value-quantity=120||mmHg") == {"note"}  # by unit
    assert await id_set(store, "Observation", "value-quantity=120") == {"bp", "note"}  # [119.5, 120.5)
    assert await id_set(store, "Observation", "value-quantity=120.0") == {"bp"}
    assert await id_set(store, "Observation", f"value-quantity=gt100|{UCUM}|") == {"bp"}  # any unit of UCUM
    assert await id_set(store, "Observation", "value-quantity=lt50") == {"phq"}
    assert await id_set(store, "Observation", "value-quantity=ge12,gt120") == {"phq", "bp", "note"}


async def test_reference_forms_and_type_modifier(store: Store) -> None:
    assert await id_set(store, "Observation", "subject=Patient/ana") == {"phq", "note"}
    assert await id_set(store, "Observation", "patient=ana") == {"phq", "note"}
    assert await id_set(store, "Observation", "subject:Patient=jose") == {"bp"}
    assert await id_set(store, "Observation", "subject=https://cb.example.org/fhir/Patient/jose") == {"bp"}
    assert await id_set(store, "Observation", "subject=Patient/ana,Patient/jose") == {"phq", "note", "bp"}
    assert await id_set(store, "Condition", "encounter=Encounter/enc") == {"dep"}


async def test_chained_reference_parameters(store: Store) -> None:
    assert await id_set(store, "Observation", "subject:Patient.name=jos") == {"bp"}
    assert await id_set(store, "Observation", "patient.identifier=urn:mrn|M1") == {"phq", "note"}
    assert await id_set(store, "Observation", "patient.birthdate=lt1980") == {"bp"}
    assert await id_set(store, "Condition", "encounter.class=IMP") == {"dep"}
    assert await id_set(store, "Observation", "patient.name=zed") == set()  # deleted target


async def test_uri_exact_below_and_above(store: Store) -> None:
    base = "http://example.org/Questionnaire"
    assert await id_set(store, "Questionnaire", f"url={base}/phq-9") == {"phq9"}
    assert await id_set(store, "Questionnaire", f"url={base}/phq") == set()
    assert await id_set(store, "Questionnaire", f"url:below={base}/") == {"phq9", "gad7"}
    assert await id_set(store, "Questionnaire", f"url:above={base}/gad-7/version/2") == {"gad7"}


async def test_id_and_last_updated(store: Store) -> None:
    assert await id_set(store, "Patient", "_id=ana,wei,zed") == {"ana", "wei"}
    assert await id_set(store, "Patient", "_lastUpdated=gt2000-01-01") == {"ana", "jose", "wei"}
    assert await id_set(store, "Patient", "_lastUpdated=lt2000-01-01") == set()


async def test_sort_by_several_keys_in_both_directions_with_missing_values_last(store: Store) -> None:
    assert await ids(store, "Patient", "_sort=family,-birthdate") == ["ana", "jose", "wei"]
    assert await ids(store, "Patient", "_sort=-family,birthdate") == ["wei", "jose", "ana"]
    assert await ids(store, "Patient", "_sort=birthdate") == ["jose", "ana", "wei"]
    assert await ids(store, "Patient", "_sort=-_id") == ["wei", "jose", "ana"]
    assert await ids(store, "Patient", "_sort=email") == ["ana", "jose", "wei"]  # no email: last, by id
    # Ties are broken by id in the direction of the last key.
    assert await ids(store, "Patient", "_sort=-email") == ["ana", "wei", "jose"]
    assert await ids(store, "Observation", "_sort=-value-quantity") == ["note", "bp", "phq"]
    assert await ids(store, "Observation", "_sort=date,_id") == ["bp", "phq", "note"]
    last_updated = await ids(store, "Patient", "_sort=-_lastUpdated")
    assert last_updated == ["wei", "jose", "ana"]
