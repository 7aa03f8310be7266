"""`HealthcareService/$match` as data: reading its Parameters, writing its searchset, and reading
intake's SDOH needs events (services/referral/domain/match_parameters.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.intake.domain.instrument_model import Coding
from services.intake.domain.triage import Need as IntakeNeed
from services.intake.screening import needs_parameters
from services.referral.domain import directory_codes as codes
from services.referral.domain.directory_index import Position
from services.referral.domain.match_parameters import (
    MATCH_DISTANCE,
    MATCH_REASON,
    MatchQuery,
    match_bundle,
    needs_from_record,
    needs_record,
    parse_match_parameters,
)
from services.referral.domain.matching import MatchOptions, Need, Seeker, rank
from shared.errors import InvalidInput, PoisonMessage
from tests.unit.referral.directory_fixture import index_of, location, service


def params(*parameters: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parameters)}


def test_every_parameter_is_read() -> None:
    query = parse_match_parameters(
        params(
            {"name": "patient", "valueReference": {"reference": "Patient/p-1"}},
            {"name": "need", "valueCoding": {"system": codes.SDOHCC, "code": "homelessness"}},
            {
                "name": "need",
                "valueCodeableConcept": {"coding": [{"system": codes.SERVICE_CATEGORY, "code": "22"}]},
            },
            {"name": "need", "valueCode": "food-insecurity"},
            {"name": "language", "valueCode": "es"},
            {"name": "latitude", "valueDecimal": 40.01},
            {"name": "longitude", "valueDecimal": -100},
            {"name": "eligibility", "valueCode": "veteran"},
            {"name": "count", "valueInteger": 3},
            {"name": "now", "valueDateTime": "2026-11-18T09:00:00"},
            {"name": "within-days", "valueInteger": 7},
            {"name": "include-unavailable", "valueBoolean": True},
        )
    )
    assert query == MatchQuery(
        patient="p-1",
        needs=(
            Need(codes.SDOHCC, "homelessness"),
            Need(codes.SERVICE_CATEGORY, "22"),
            Need(codes.SDOHCC, "food-insecurity"),
        ),
        languages=("es",),
        position=Position(40.01, -100.0),
        qualifications=frozenset({"veteran"}),
        count=3,
        now=datetime(2026, 11, 18, 9, 0, tzinfo=UTC),
        within_days=7,
        include_unavailable=True,
    )


def test_nothing_given_is_an_empty_query_with_defaults() -> None:
    assert parse_match_parameters(params()) == MatchQuery()


@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        ({"name": "radius", "valueDecimal": 5}, "$match has no parameter 'radius'"),
        ({"name": "need", "valueString": "housing"}, "Parameter 'need' needs valueCoding"),
        ({"name": "need", "valueCoding": {"code": "housing"}}, "need 'housing': give its system"),
        (
            {"name": "need", "valueCoding": {"system": codes.SDOHCC, "code": "housing"}},
            "not a Gravity SDOH category",
        ),
        ({"name": "patient", "valueReference": {"reference": "Group/1"}}, "patient must reference a Patient"),
        ({"name": "latitude", "valueDecimal": 40}, "Give latitude and longitude together"),
        ({"name": "count", "valueInteger": 0}, "count must be a whole number from 1 to 100"),
        ({"name": "eligibility", "valueCode": "vip"}, "eligibility must be one of veteran"),
        ({"name": "now", "valueDateTime": "soon"}, "now must be a dateTime"),
    ],
)
def test_bad_parameters_are_400s_naming_the_parameter(parameter: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        parse_match_parameters(params(parameter))


def test_a_single_valued_parameter_given_twice_is_refused() -> None:
    twice = params({"name": "count", "valueInteger": 1}, {"name": "count", "valueInteger": 2})
    with pytest.raises(InvalidInput, match="'count' may appear once"):
        parse_match_parameters(twice)
    with pytest.raises(InvalidInput, match="takes a Parameters resource"):
        parse_match_parameters({"resourceType": "Patient"})


def test_the_answer_is_a_searchset_with_scores_reasons_distance_and_the_sites() -> None:
    sites = [location("here", 40.0, -100.0), location("far", 40.2, -100.0)]
    index = index_of(service("near", site="here"), service("far", site="far"), sites=sites)
    matches = rank(
        index,
        [Need(codes.SDOHCC, "homelessness")],
        Seeker(position=Position(40.0, -100.0)),
        MatchOptions(now=datetime(2026, 11, 18, 15, tzinfo=UTC)),
    )
    stored = {s: orjson.dumps({"resourceType": "HealthcareService", "id": s}) for s in ("near", "far")}
    places = {s["id"]: orjson.dumps(s) for s in sites}
    bundle = orjson.loads(match_bundle(matches, base="http://x/fhir", services=stored, locations=places))
    assert bundle["type"] == "searchset" and bundle["total"] == 2
    first, second, *included = bundle["entry"]
    assert first["fullUrl"] == "http://x/fhir/HealthcareService/near"
    assert first["search"]["mode"] == "match" and first["search"]["score"] > second["search"]["score"]
    reasons = [e for e in first["search"]["extension"] if e["url"] == MATCH_REASON]
    assert [r["extension"][0]["valueCode"] for r in reasons] == [
        "category", "distance", "language", "hours", "eligibility", "capacity",
    ]  # fmt: skip
    assert {x["url"] for x in reasons[0]["extension"]} == {"factor", "code", "text", "points"}
    distance = next(e for e in second["search"]["extension"] if e["url"] == MATCH_DISTANCE)
    assert distance["valueQuantity"]["code"] == "km" and distance["valueQuantity"]["value"] > 20
    assert [(e["resource"]["id"], e["search"]["mode"]) for e in included] == [
        ("here", "include"),
        ("far", "include"),
    ]


def test_no_matches_is_an_empty_searchset() -> None:
    assert orjson.loads(match_bundle([], base="b", services={}, locations={})) == {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 0,
    }


# --- intake's SDOH needs events ------------------------------------------------------------------


def test_intakes_needs_event_is_read_into_the_needs_referral_keeps() -> None:
    needs = [
        IntakeNeed(Coding(codes.SDOHCC, "homelessness", "Homelessness"), ("71802-3",)),
        IntakeNeed(Coding(codes.SDOHCC, "food-insecurity", "Food Insecurity"), ("88122-7",)),
    ]
    patient, record = needs_record(needs_parameters("Patient/p-9", "qr-1", needs))
    assert patient == "p-9"
    assert record["source"] == {"reference": "QuestionnaireResponse/qr-1"}
    assert needs_from_record(record) == [
        Need(codes.SDOHCC, "homelessness", "Homelessness"),
        Need(codes.SDOHCC, "food-insecurity", "Food Insecurity"),
    ]


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"resourceType": "Bundle"},
        params({"name": "need", "valueCoding": {"code": "homelessness"}}),
        params({"name": "patient", "valueReference": {"reference": "Patient/1"}}),
        params(
            {"name": "patient", "valueReference": {"reference": "Group/1"}},
            {"name": "need", "valueCoding": {"code": "x"}},
        ),
    ],
)
def test_a_needs_event_of_another_shape_is_poison(data: Any) -> None:
    with pytest.raises(PoisonMessage):
        needs_record(data)
