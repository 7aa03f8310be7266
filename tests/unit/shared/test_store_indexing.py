"""Search-index extraction: what each FHIR data type contributes to the index tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.fhir.search_params import SEARCH_PARAMETERS, SearchParam
from shared.store.indexing import (
    DATE_MAX,
    DATE_MIN,
    MAX_INDEXED_CHARS,
    date_ranges,
    extract_index_rows,
    normalize_string,
    parse_date_range,
    reference_targets,
    string_values,
    token_values,
    values_at,
)

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [
        {"system": "urn:oid:1.2.3", "value": "MRN-1"},
        {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"},
    ],
    "active": True,
    "name": [{"family": "García", "given": ["José", "María"], "prefix": ["Dr."]}, {"text": "Pepe García"}],
    "gender": "male",
    "birthDate": "1980-04-02",
    "telecom": [
        {"system": "phone", "value": "+1 555 0100", "use": "home"},
        {"system": "email", "value": "jose@example.org"},
    ],
    "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": "12345"}],
}


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def test_patient_rows_cover_every_declared_parameter() -> None:
    rows = extract_index_rows(PATIENT, SEARCH_PARAMETERS["Patient"])

    assert ("identifier", "urn:oid:1.2.3", "MRN-1") in rows.token
    assert ("identifier", "http://hl7.org/fhir/sid/us-ssn", "123-45-6789") in rows.token
    assert ("gender", None, "male") in rows.token
    assert ("active", None, "true") in rows.token
    assert ("phone", "phone", "+1 555 0100") in rows.token
    assert ("email", "email", "jose@example.org") in rows.token
    assert {v for p, v in rows.string if p == "name"} == {"garcia", "jose", "maria", "dr.", "pepe garcia"}
    assert {v for p, v in rows.string if p == "given"} == {"jose", "maria"}
    assert ("family", "garcia") in rows.string
    assert ("address-postalcode", "12345") in rows.string
    assert rows.date == [("birthdate", utc(1980, 4, 2), utc(1980, 4, 3))]


def test_phone_and_email_parameters_keep_only_their_own_telecom_entries() -> None:
    rows = extract_index_rows(PATIENT, SEARCH_PARAMETERS["Patient"])

    assert [r for r in rows.token if r[0] == "phone"] == [("phone", "phone", "+1 555 0100")]
    assert [r for r in rows.token if r[0] == "email"] == [("email", "email", "jose@example.org")]


def test_a_telecom_parameter_keeps_every_contact_point() -> None:
    assert set(token_values({"system": "fax", "value": "1"}, "telecom")) == {("fax", "1")}
    assert list(token_values({"system": "fax", "value": "1"}, "phone")) == []


def test_rows_are_unique_even_when_values_repeat() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Smith"}, {"family": "SMITH"}]}

    rows = extract_index_rows(patient, (SearchParam("family", "string", ("name.family",)),))

    assert rows.string == [("family", "smith")]


def test_a_resource_without_the_elements_yields_no_rows() -> None:
    rows = extract_index_rows({"resourceType": "Patient"}, SEARCH_PARAMETERS["Patient"])

    assert (rows.token, rows.string, rows.date, rows.reference) == ([], [], [], [])


def test_codeable_concept_yields_every_coding() -> None:
    concept = {
        "coding": [{"system": "http://snomed.info/sct", "code": "35489007"}, {"code": "local"}],
        "text": "Depression",
    }

    assert list(token_values(concept)) == [("http://snomed.info/sct", "35489007"), (None, "local")]


def test_coding_identifier_and_plain_values_as_tokens() -> None:
    assert list(token_values({"system": "http://loinc.org", "code": "44249-1"})) == [
        ("http://loinc.org", "44249-1")
    ]
    assert list(token_values({"system": "urn:mrn", "value": "7"})) == [("urn:mrn", "7")]
    assert list(token_values({"value": "7"})) == [(None, "7")]
    assert list(token_values("final")) == [(None, "final")]
    assert list(token_values(False)) == [(None, "false")]
    assert list(token_values({"system": "urn:mrn"})) == []


def test_human_name_and_address_parts_are_indexed_normalized() -> None:
    name = {"family": "O'Brien", "given": ["Zoë"], "suffix": ["Jr"], "text": "Zoë O'Brien"}
    address = {
        "line": ["Straße 1", "Hof"],
        "city": "Köln",
        "district": "Innenstadt",
        "state": "NRW",
        "postalCode": "50667",
        "country": "DE",
        "text": "Straße 1, Köln",
    }

    assert set(string_values(name)) == {"o'brien", "zoe", "jr", "zoe o'brien"}
    assert set(string_values(address)) == {
        "strasse 1",
        "hof",
        "koln",
        "innenstadt",
        "nrw",
        "50667",
        "de",
        "strasse 1, koln",
    }


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("José", "jose"),
        ("JOSÉ", "jose"),
        ("Jose\u0301", "jose"),  # already decomposed
        ("Ångström", "angstrom"),
        ("ﬁne", "fine"),  # compatibility ligature
        ("  Mary   Ann ", "mary ann"),
        ("Straße", "strasse"),
    ],
)
def test_normalize_string_is_case_and_accent_insensitive(raw: str, normalized: str) -> None:
    assert normalize_string(raw) == normalized


def test_long_values_are_capped_so_index_entries_stay_small() -> None:
    assert len(normalize_string("a" * 5000)) == MAX_INDEXED_CHARS
    assert list(token_values("x" * 5000)) == [(None, "x" * MAX_INDEXED_CHARS)]


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("1980", utc(1980, 1, 1), utc(1981, 1, 1)),
        ("1980-02", utc(1980, 2, 1), utc(1980, 3, 1)),
        ("1980-12", utc(1980, 12, 1), utc(1981, 1, 1)),
        ("1980-02-29", utc(1980, 2, 29), utc(1980, 3, 1)),
        ("2024-05-01T10:30", utc(2024, 5, 1, 10, 30), utc(2024, 5, 1, 10, 31)),
        ("2024-05-01T10:30:15Z", utc(2024, 5, 1, 10, 30, 15), utc(2024, 5, 1, 10, 30, 16)),
        (
            "2024-05-01T10:30:15.250Z",
            utc(2024, 5, 1, 10, 30, 15, 250000),
            utc(2024, 5, 1, 10, 30, 15, 251000),
        ),
        ("2024-05-01T10:30:15+02:00", utc(2024, 5, 1, 8, 30, 15), utc(2024, 5, 1, 8, 30, 16)),
        ("2024-05-01T23:30:00-05:00", utc(2024, 5, 2, 4, 30), utc(2024, 5, 2, 4, 30, 1)),
        ("9999", utc(9999, 1, 1), DATE_MAX),
    ],
)
def test_dates_cover_their_precision_with_an_exclusive_high(
    value: str, low: datetime, high: datetime
) -> None:
    assert parse_date_range(value) == (low, high)


@pytest.mark.parametrize("value", ["", "80", "1980-13", "1980-02-30", "2024-05-01T25:00", "yesterday"])
def test_invalid_dates_are_not_indexed(value: str) -> None:
    assert parse_date_range(value) is None
    assert list(date_ranges(value)) == []


def test_an_offset_that_leaves_the_calendar_is_clamped() -> None:
    low, high = parse_date_range("0001-01-01T00:00:00+05:00") or (None, None)

    assert low == DATE_MIN
    assert high is not None and high - low == timedelta(seconds=1)


def test_period_spans_start_low_to_end_high_and_open_ends_are_unbounded() -> None:
    assert list(date_ranges({"start": "2024-01-01", "end": "2024-01-31"})) == [
        (utc(2024, 1, 1), utc(2024, 2, 1))
    ]
    assert list(date_ranges({"start": "2024-01-01"})) == [(utc(2024, 1, 1), DATE_MAX)]
    assert list(date_ranges({"end": "2024"})) == [(DATE_MIN, utc(2025, 1, 1))]


def test_date_ranges_are_utc_aware() -> None:
    low, high = next(date_ranges("2024-05-01T10:30:15+02:00"))

    assert low.tzinfo is not None and low.utcoffset() == timedelta(0)
    assert high > low


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ({"reference": "Patient/123"}, [("Patient", "123")]),
        ({"reference": "Patient/123/_history/4"}, [("Patient", "123")]),
        ({"reference": "https://fhir.example.org/fhir/Patient/123"}, [("Patient", "123")]),
        ({"reference": "#contained-1"}, []),
        ({"reference": "urn:uuid:0b4e3c1e-5f0c-4d1a-9b8e-1f2a3b4c5d6e"}, []),
        ({"identifier": {"value": "x"}}, []),
        ({"reference": "Patient/"}, []),
    ],
)
def test_references_yield_target_type_and_id(
    reference: dict[str, object], expected: list[tuple[str, str]]
) -> None:
    assert list(reference_targets(reference)) == expected


def test_paths_fan_out_over_lists_and_match_choice_elements() -> None:
    observation = {
        "component": [{"code": {"text": "a"}}, {"code": {"text": "b"}}],
        "effectivePeriod": {"start": "2024"},
        "effective": "not a choice element",
        "effectively": "lowercase continuation is another element",
    }

    assert [v["text"] for v in values_at(observation, "component.code")] == ["a", "b"]
    assert list(values_at(observation, "effective[x]")) == [{"start": "2024"}]
    assert list(values_at(observation, "missing.path")) == []


def test_observation_with_reference_and_date_parameters() -> None:
    params = (
        SearchParam("subject", "reference", ("subject",), targets=("Patient",)),
        SearchParam("date", "date", ("effective[x]",)),
        SearchParam("code", "token", ("code",)),
        SearchParam("value-quantity", "quantity", ("valueQuantity",)),
    )
    observation = {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-05-01T10:30:00Z",
        "code": {"coding": [{"system": "http://loinc.org", "code": "44249-1"}]},
        "valueQuantity": {"value": 12},
    }

    rows = extract_index_rows(observation, params)

    assert rows.reference == [("subject", "Patient", "p1")]
    assert rows.date == [("date", utc(2024, 5, 1, 10, 30), utc(2024, 5, 1, 10, 30, 1))]
    assert rows.token == [("code", "http://loinc.org", "44249-1")]


def test_a_reference_parameter_with_targets_indexes_only_references_to_those_types() -> None:
    params = (
        SearchParam("patient", "reference", ("subject",), targets=("Patient",)),
        SearchParam("subject", "reference", ("subject",)),
    )

    for_patient = extract_index_rows({"subject": {"reference": "Patient/p1"}}, params)
    for_group = extract_index_rows({"subject": {"reference": "Group/g1"}}, params)

    assert for_patient.reference == [("patient", "Patient", "p1"), ("subject", "Patient", "p1")]
    assert for_group.reference == [("subject", "Group", "g1")]


def test_uri_parameters_are_indexed_as_tokens_without_a_system() -> None:
    params = (SearchParam("url", "uri", ("url",)),)

    rows = extract_index_rows({"url": "http://example.org/Questionnaire/phq-9"}, params)

    assert rows.token == [("url", None, "http://example.org/Questionnaire/phq-9")]


def test_timing_yields_each_event_and_its_bounds() -> None:
    timing = {"event": ["2024-05-01", "2024-05-08"], "repeat": {"boundsPeriod": {"start": "2024-05-01"}}}

    assert list(date_ranges(timing)) == [
        (utc(2024, 5, 1), utc(2024, 5, 2)),
        (utc(2024, 5, 8), utc(2024, 5, 9)),
        (utc(2024, 5, 1), DATE_MAX),
    ]


def test_every_declared_parameter_of_every_owned_type_extracts_without_error() -> None:
    # A smoke test over the real declarations: odd shapes must be skipped, never raise.
    odd = {
        "resourceType": "X",
        "identifier": "not-a-list",
        "name": [None, 3, {"family": ["not", "a", "string"]}],
        "subject": {"reference": 42},
        "period": {"start": "garbage"},
        "status": {"unexpected": "object"},
    }
    for params in SEARCH_PARAMETERS.values():
        extract_index_rows(odd, params)
