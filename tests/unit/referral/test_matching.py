"""Ranking directory services for needs (services/referral/domain/matching.py): each factor's
reason and its effect on the order, the hard misfits, and the shipped directory end to end."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from services.referral.domain import directory_codes as codes
from services.referral.domain.directory_index import Position
from services.referral.domain.matching import (
    WEIGHTS,
    Match,
    MatchOptions,
    Need,
    Seeker,
    age_on,
    haversine_km,
    rank,
)
from services.referral.domain.opening_hours import next_opening
from services.referral.domain.seeker import seeker_from_patient
from tests.unit.referral.directory_fixture import (
    CENTER,
    ZONE,
    index_of,
    location,
    service,
    shipped_index,
)

#: Wednesday 18 November 2026, 09:00 in Chicago (15:00 UTC).
NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
HOMELESSNESS = Need(codes.SDOHCC, "homelessness")
HERE = Position(*CENTER)


def options(**overrides: Any) -> MatchOptions:
    return MatchOptions(**{"now": NOW, "default_zone": ZONE, **overrides})


def ranked(*services: dict[str, Any], needs: tuple[Need, ...] = (HOMELESSNESS,), seeker: Seeker | None = None,
           sites: list[dict[str, Any]] | None = None, **opts: Any) -> list[Match]:  # fmt: skip
    return rank(index_of(*services, sites=sites), needs, seeker or Seeker(position=HERE), options(**opts))


def ids(matches: list[Match]) -> list[str]:
    return [m.service.id for m in matches]


def reason(match: Match, factor: str) -> tuple[str, str]:
    found = next(r for r in match.reasons if r.factor == factor)
    return found.code, found.text


# --- category --------------------------------------------------------------------------------------


def test_only_services_serving_the_need_or_a_related_one_are_matches() -> None:
    matches = ranked(
        service("exact", "homelessness"),
        service("related", "housing-instability"),
        service("food", "food-insecurity"),
    )
    assert ids(matches) == ["exact", "related"]
    assert reason(matches[0], "category") == ("category-exact", "Serves Homelessness (1 of 1 needs)")
    code, text = reason(matches[1], "category")
    assert code == "category-related" and "related to Homelessness" in text
    assert matches[0].reasons[0].points == pytest.approx(WEIGHTS["category"])


def test_a_service_serving_more_of_the_needs_ranks_higher() -> None:
    needs = (HOMELESSNESS, Need(codes.SDOHCC, "food-insecurity"))
    matches = ranked(
        service("one", "homelessness"), service("both", "homelessness", "food-insecurity"), needs=needs
    )
    assert ids(matches) == ["both", "one"]
    assert "(2 of 2 needs)" in reason(matches[0], "category")[1]


def test_a_behavioural_health_need_given_as_a_service_category_matches_those_services() -> None:
    mental_health = service("mh", extra={"category": [codes.service_category("22")]})
    matches = ranked(
        mental_health, service("shelter", "homelessness"), needs=(Need(codes.SERVICE_CATEGORY, "22"),)
    )
    assert ids(matches) == ["mh"]


def test_stress_is_served_in_part_by_counselling_services() -> None:
    counselling = service("counselling", extra={"category": [codes.service_category("8")]})
    [match] = ranked(counselling, needs=(Need(codes.SDOHCC, "stress"),))
    assert reason(match, "category")[0] == "category-related"


def test_score_is_the_sum_of_the_reasons_points_and_every_factor_has_a_reason() -> None:
    [match] = ranked(service("a", "homelessness"))
    assert [r.factor for r in match.reasons] == list(WEIGHTS)
    assert match.score == pytest.approx(sum(r.points for r in match.reasons), abs=1e-4)
    assert match.score == pytest.approx(1.0)  # exact, on site, English, open now, no rules, room


# --- language --------------------------------------------------------------------------------------


def test_preferred_language_then_another_of_theirs_then_an_interpreter_then_none() -> None:
    interpreter = {"characteristic": [codes.concept(codes.CHARACTERISTIC, codes.INTERPRETER)]}
    matches = ranked(
        service("none", langs=("en",)),
        service("interpreter", langs=("en",), extra=interpreter),
        service("secondary", langs=("en", "vi")),
        service("preferred", langs=("es-MX",)),
        seeker=Seeker(languages=("es", "vi"), position=HERE),
    )
    assert ids(matches) == ["preferred", "secondary", "interpreter", "none"]
    assert [reason(m, "language")[0] for m in matches] == [
        "language-match",
        "language-secondary",
        "language-interpreter",
        "language-mismatch",
    ]


def test_without_a_language_on_record_english_is_assumed_and_said() -> None:
    [match] = ranked(service("a", langs=()), seeker=Seeker(position=HERE))
    code, text = reason(match, "language")
    assert code == "language-match"
    assert "English assumed: no language on record" in text and "none listed" in text


# --- distance --------------------------------------------------------------------------------------


def test_nearer_services_rank_first_and_say_how_far() -> None:
    matches = ranked(service("far", site="far"), service("near", site="here"))
    assert ids(matches) == ["near", "far"]
    assert matches[1].distance_km == pytest.approx(22.24, abs=0.05)
    assert reason(matches[1], "distance") == ("distance", "22.2 km to Site far")


def test_a_remote_service_needs_no_travel_and_an_unknown_position_scores_the_middle() -> None:
    remote = {"characteristic": [codes.concept(codes.CHARACTERISTIC, codes.REMOTE)]}
    [match] = ranked(service("line", site=None, extra=remote))
    assert reason(match, "distance")[0] == "remote" and match.distance_km is None
    [unknown] = ranked(service("a"), seeker=Seeker())
    assert reason(unknown, "distance") == ("distance-unknown", "The person's position is not known")
    assert unknown.reasons[1].points == pytest.approx(0.5 * WEIGHTS["distance"])


def test_haversine_of_a_tenth_of_a_degree_of_latitude_is_about_11_km() -> None:
    assert haversine_km(Position(40.0, -100.0), Position(40.1, -100.0)) == pytest.approx(11.12, abs=0.01)


# --- hours -----------------------------------------------------------------------------------------


def test_open_now_then_opening_soon_then_later_then_not_in_the_next_days() -> None:
    matches = ranked(
        service("closed", hours="sun 10:00-11:00"),  # 4 days away: beyond the 3-day look-ahead
        service("later", hours="fri 10:00-12:00"),  # in 49 hours
        service("soon", hours="wed 10:00-12:00"),  # in an hour
        service("open", hours="mon-fri 08:00-17:00"),  # 09:00 in Chicago: open
    )
    assert ids(matches) == ["open", "soon", "later", "closed"]
    assert [reason(m, "hours") for m in matches] == [
        ("open-now", "Open now"),
        ("opens-soon", "Opens Wed 10:00 (in 1 h)"),
        ("opens-later", "Opens Fri 10:00 (in 2.0 days)"),
        ("closed", "Not open in the next 3 days"),
    ]


def test_hours_are_read_in_the_services_time_zone() -> None:
    # 09:00-10:00 in Chicago is 15:00-16:00 UTC: open at NOW, whatever the default zone.
    [match] = ranked(service("a", hours="wed 09:00-10:00"), default_zone="Asia/Tokyo")
    assert reason(match, "hours")[0] == "open-now"


def test_a_closure_moves_the_next_opening_past_it() -> None:
    closed_today = {
        "notAvailable": [
            {"description": "Staff training", "during": {"start": "2026-11-18", "end": "2026-11-18"}}
        ]
    }
    entry = index_of(service("a", hours="24/7", extra=closed_today)).by_id["a"]
    opens = next_opening(entry.openings, entry.closures, ZONE, NOW, 3)
    assert opens is not None and opens.isoformat() == "2026-11-19T00:00:00-06:00"


def test_unpublished_hours_score_the_middle() -> None:
    [match] = ranked(service("a", hours=""))
    assert reason(match, "hours") == ("hours-unknown", "Opening hours not published")


# --- eligibility and capacity: the hard misfits ------------------------------------------------------


def test_a_service_for_other_ages_is_left_out_or_ranked_last_with_the_reason() -> None:
    person = Seeker(position=HERE, birth_date=date(1990, 6, 1))  # 36 at NOW
    seniors = service("seniors", min_age=60)
    assert ids(ranked(seniors, service("any", site="far"), seeker=person)) == ["any"]
    matches = ranked(seniors, service("any", site="far"), seeker=person, include_unavailable=True)
    assert ids(matches) == ["any", "seniors"]
    assert not matches[1].available
    assert reason(matches[1], "eligibility") == ("ineligible-age", "Serves ages 60+; the person is 36")


def test_a_full_service_is_left_out_or_ranked_after_every_available_one() -> None:
    full, open_far = service("full", capacity=0), service("open-far", site="far", capacity=2)
    assert ids(ranked(full, open_far)) == ["open-far"]
    matches = ranked(full, open_far, include_unavailable=True)
    assert ids(matches) == ["open-far", "full"]  # even though "full" is nearer
    assert reason(matches[1], "capacity") == ("capacity-full", "No open slots")
    assert reason(matches[0], "capacity") == ("capacity-open", "2 open slots")


def test_unreported_capacity_and_unconfirmed_rules_cost_half_their_points() -> None:
    [match] = ranked(service("a", capacity=None, requires=("low-income",)))
    assert reason(match, "capacity")[0] == "capacity-unknown"
    code, text = reason(match, "eligibility")
    assert code == "eligibility-unverified" and "Low income" in text
    assert match.available
    assert match.score == pytest.approx(1.0 - 0.5 * WEIGHTS["capacity"] - 0.5 * WEIGHTS["eligibility"])


def test_confirmed_rules_and_a_veteran_status_need_meet_eligibility() -> None:
    vets = service("vets", "veteran-status", requires=("veteran",))
    [given] = ranked(vets, needs=(Need(codes.SDOHCC, "veteran-status"),))
    assert reason(given, "eligibility") == ("eligible", "Eligible: Veterans (and their families where noted)")
    [confirmed] = ranked(
        service("lowinc", requires=("low-income",)),
        seeker=Seeker(position=HERE, qualifications=frozenset({"low-income"})),
    )
    assert reason(confirmed, "eligibility")[0] == "eligible"


def test_inactive_services_are_never_matches() -> None:
    assert ranked(service("gone", extra={"active": False}), include_unavailable=True) == []


def test_no_needs_no_matches_and_the_limit_is_kept() -> None:
    assert ranked(service("a"), needs=()) == []
    many = [service(f"s{i}") for i in range(5)]
    assert len(ranked(*many, limit=3)) == 3


def test_ties_break_on_distance_then_name() -> None:
    sites = [location("here", *CENTER), location("there", 40.001, -100.0)]
    matches = ranked(
        service("b", site="here"), service("a", site="here"), service("c", site="there"), sites=sites
    )
    assert ids(matches) == ["a", "b", "c"]


# --- the person ------------------------------------------------------------------------------------


def test_a_patient_gives_preferred_language_first_home_position_and_age() -> None:
    patient = {
        "birthDate": "1961-02",
        "communication": [
            {"language": {"coding": [{"system": codes.BCP47, "code": "en"}]}},
            {"language": {"coding": [{"system": codes.BCP47, "code": "vi-VN"}]}, "preferred": True},
        ],
        "address": [
            {"use": "work", "extension": [_geo(41.0, -99.0)]},
            {"use": "home", "extension": [_geo(40.05, -100.02)]},
        ],
    }
    seeker = seeker_from_patient(patient)
    assert seeker.languages == ("vi", "en")
    assert seeker.position == Position(40.05, -100.02)
    assert seeker.birth_date is not None and age_on(seeker.birth_date, NOW.date()) == 65
    overridden = seeker_from_patient(patient, languages=("es",), position=HERE, qualifications=("veteran",))
    assert overridden.languages == ("es",) and overridden.position == HERE
    assert overridden.qualifications == frozenset({"veteran"})


def _geo(lat: float, lon: float) -> dict[str, Any]:
    return {
        "url": codes.GEOLOCATION_EXTENSION,
        "extension": [{"url": "latitude", "valueDecimal": lat}, {"url": "longitude", "valueDecimal": lon}],
    }


# --- the shipped directory -------------------------------------------------------------------------


def test_homelessness_over_the_shipped_directory_ranks_housing_services_best_first_with_reasons() -> None:
    seeker = Seeker(languages=("es",), position=HERE)
    matches = rank(shipped_index(), [HOMELESSNESS], seeker, options())
    assert len(matches) == 10
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    for match in matches:
        assert match.available
        assert match.service.gravity & {"homelessness", "housing-instability", "inadequate-housing"}
        assert len(match.reasons) == 6
    assert reason(matches[0], "category")[0] == "category-exact"
    assert reason(matches[0], "language")[0] == "language-match"


@pytest.mark.parametrize("category", sorted(codes.GRAVITY_CATEGORIES))
def test_every_gravity_category_finds_an_exact_match_in_the_shipped_directory(category: str) -> None:
    matches = rank(shipped_index(), [Need(codes.SDOHCC, category)], Seeker(position=HERE), options(limit=3))
    assert matches, category
    assert reason(matches[0], "category")[0] == "category-exact"


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (codes.SNOMED, "394587001"),
        (codes.SERVICE_CATEGORY, "12"),
        (codes.SERVICE_TYPE, "135"),
        (codes.SNOMED, "394913002"),
    ],
)
def test_behavioural_health_needs_find_psychiatry_sud_crisis_and_therapy(system: str, code: str) -> None:
    matches = rank(shipped_index(), [Need(system, code)], Seeker(position=HERE), options(limit=5))
    assert matches and all((system, code) in m.service.codings for m in matches)


def test_a_young_adult_is_not_offered_senior_only_services() -> None:
    young = Seeker(position=HERE, birth_date=date(2004, 1, 1))
    matches = rank(shipped_index(), [Need(codes.SDOHCC, "elder-abuse")], young, options(limit=50))
    assert all(m.service.min_age is None or m.service.min_age <= 22 for m in matches)
