"""HEDIS FUH and FUM at their boundaries (DOMAIN.md §2.1, §2.2), and the FHIR MeasureReport."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.measurereport import MeasureReport

from services.careplan.domain.measure_report import measure_report
from services.careplan.domain.measures import (
    FUH_MEASURE_URL,
    FUM_MEASURE_URL,
    EdVisit,
    EventDecision,
    Exclusion,
    MeasureResult,
    Member,
    Stay,
    Visit,
    age_on,
    evaluate_fuh,
    evaluate_fum,
)
from shared.fhir.validation import validate_resource

START, END = date(2025, 1, 1), date(2025, 12, 31)
DISCHARGE = date(2025, 3, 10)
ADULT = Member("p1", date(1980, 5, 5))


def stay(
    discharged: date = DISCHARGE, *, id: str = "s1", patient: str = "p1", admitted: date | None = None,
    acute: bool = True, mental_health: bool = True,
) -> Stay:  # fmt: skip
    return Stay(id, patient, admitted or discharged - timedelta(days=3), discharged, acute, mental_health)


def visit(
    on: date, *, id: str = "v1", patient: str = "p1", setting: bool = True, diagnosis: bool = True,
    provider: bool = False,
) -> Visit:  # fmt: skip
    return Visit(id, patient, on, setting, diagnosis, provider)


def ed(
    on: date, *, id: str = "e1", patient: str = "p1", mental_illness: bool = True, self_harm: bool = False,
    any_mental_illness: bool | None = None,
) -> EdVisit:  # fmt: skip
    any_mi = mental_illness if any_mental_illness is None else any_mental_illness
    return EdVisit(id, patient, on, mental_illness, self_harm, any_mi)


def fuh(
    stays: Sequence[Stay], visits: Sequence[Visit] = (), members: Sequence[Member] = (ADULT,)
) -> MeasureResult:
    return evaluate_fuh(START, END, members, stays, visits)


def fum(
    eds: Sequence[EdVisit], visits: Sequence[Visit] = (), stays: Sequence[Stay] = (),
    members: Sequence[Member] = (ADULT,),
) -> MeasureResult:  # fmt: skip
    return evaluate_fum(START, END, members, eds, stays, visits)


def decision(result: MeasureResult, event_id: str) -> EventDecision:
    (found,) = [e for e in result.events if e.event_id == event_id]
    return found


def days(n: int) -> date:
    return DISCHARGE + timedelta(days=n)


# --- FUH numerator -------------------------------------------------------------------------------


def test_fuh_visit_on_the_discharge_day_does_not_count() -> None:
    result = fuh([stay()], [visit(DISCHARGE)])
    assert (result.denominator, result.numerator_7, result.numerator_30) == (1, 0, 0)


@pytest.mark.parametrize(
    ("day", "met_7", "met_30"),
    [(1, True, True), (7, True, True), (8, False, True), (30, False, True), (31, False, False)],
)
def test_fuh_visit_day_after_discharge_decides_the_7_and_30_day_rates(
    day: int, met_7: bool, met_30: bool
) -> None:
    result = fuh([stay()], [visit(days(day))])
    assert (decision(result, "s1").met_7, decision(result, "s1").met_30) == (met_7, met_30)


def test_fuh_visit_before_the_discharge_does_not_count() -> None:
    assert fuh([stay()], [visit(days(-1))]).numerator_30 == 0


@pytest.mark.parametrize(
    ("setting", "diagnosis", "provider", "counts"),
    [
        (True, True, False, True),
        (True, False, True, True),
        (True, False, False, False),
        (False, True, True, False),
    ],
)
def test_fuh_follow_up_needs_a_qualifying_setting_and_a_mental_health_provider_or_diagnosis(
    setting: bool, diagnosis: bool, provider: bool, counts: bool
) -> None:
    result = fuh([stay()], [visit(days(3), setting=setting, diagnosis=diagnosis, provider=provider)])
    assert decision(result, "s1").met_7 is counts


def test_fuh_first_qualifying_visit_is_named_as_the_follow_up() -> None:
    visits = [visit(days(12), id="late"), visit(days(0), id="same-day"), visit(days(9), id="first")]
    assert decision(fuh([stay()], visits), "s1").follow_up_visit == "first"


def test_fuh_visits_of_another_patient_do_not_count() -> None:
    assert fuh([stay()], [visit(days(2), patient="p2")]).numerator_30 == 0


# --- FUH denominator -----------------------------------------------------------------------------


def test_fuh_member_aged_5_on_the_discharge_date_is_not_in_the_population() -> None:
    child = Member("p1", date(2019, 3, 11))  # sixth birthday the day after the discharge
    result = fuh([stay()], members=[child])
    assert decision(result, "s1").exclusion is Exclusion.UNDER_MINIMUM_AGE
    assert result.initial_population == 0


def test_fuh_member_turning_6_on_the_discharge_date_is_counted() -> None:
    child = Member("p1", date(2019, 3, 10))
    assert decision(fuh([stay()], members=[child]), "s1").in_denominator


def test_age_of_a_29_february_birthday_is_reached_on_1_march() -> None:
    assert age_on(date(2016, 2, 29), date(2022, 2, 28)) == 5
    assert age_on(date(2016, 2, 29), date(2022, 3, 1)) == 6


@pytest.mark.parametrize("members", [[], [Member("p1", None)]], ids=["unknown member", "no birth date"])
def test_fuh_member_of_unknown_age_is_left_out(members: list[Member]) -> None:
    assert decision(fuh([stay()], members=members), "s1").exclusion is Exclusion.AGE_UNKNOWN


def test_fuh_discharge_on_dec_1_is_in_and_on_dec_2_is_out() -> None:
    result = fuh(
        [stay(date(2025, 12, 1), id="dec-1"), stay(date(2025, 12, 2), id="dec-2", patient="p2")],
        members=[ADULT, Member("p2", date(1970, 1, 1))],
    )
    assert decision(result, "dec-1").in_denominator
    assert decision(result, "dec-2").exclusion is Exclusion.AFTER_INTAKE_PERIOD
    assert not decision(result, "dec-2").in_initial_population


def test_fuh_discharge_in_the_previous_year_is_not_an_event() -> None:
    assert fuh([stay(date(2024, 12, 31))]).events == ()


def test_fuh_stay_without_a_mental_health_principal_diagnosis_is_not_in_the_population() -> None:
    result = fuh([stay(mental_health=False)], [visit(days(2))])
    assert decision(result, "s1").exclusion is Exclusion.NOT_MENTAL_HEALTH
    assert (result.initial_population, result.numerator_30) == (0, 0)


def test_fuh_nonacute_stay_is_not_in_the_population() -> None:
    assert decision(fuh([stay(acute=False)]), "s1").exclusion is Exclusion.NONACUTE_STAY


def test_fuh_member_with_two_discharges_contributes_two_events() -> None:
    result = fuh([stay(days(0), id="a"), stay(days(60), id="b")], [visit(days(3))])
    assert (result.denominator, result.numerator_7) == (2, 1)


# --- FUH readmissions and transfers ----------------------------------------------------------------


def test_fuh_acute_mental_health_readmission_on_day_20_counts_only_the_last_discharge() -> None:
    first, last = stay(days(0), id="first"), stay(days(25), id="last", admitted=days(20))
    result = fuh([first, last], [visit(days(3)), visit(days(27), id="v2")])
    assert decision(result, "first").exclusion is Exclusion.READMITTED
    assert decision(result, "last").in_denominator and decision(result, "last").met_7
    assert (result.denominator, result.numerator_7) == (1, 1)


def test_fuh_direct_transfer_on_the_discharge_day_joins_the_chain() -> None:
    result = fuh([stay(days(0), id="first"), stay(days(5), id="transfer", admitted=days(0))])
    assert decision(result, "first").exclusion is Exclusion.READMITTED
    assert decision(result, "transfer").in_denominator


def test_fuh_readmission_on_day_31_leaves_both_discharges_counted() -> None:
    result = fuh([stay(days(0), id="first"), stay(days(35), id="later", admitted=days(31))])
    assert result.denominator == 2


def test_fuh_readmission_chain_whose_last_discharge_is_after_dec_1_excludes_both() -> None:
    first = stay(date(2025, 11, 20), id="first")
    last = stay(date(2025, 12, 5), id="last", admitted=date(2025, 11, 28))
    result = fuh([first, last])
    assert decision(result, "first").exclusion is Exclusion.READMITTED
    assert decision(result, "last").exclusion is Exclusion.AFTER_INTAKE_PERIOD
    assert result.initial_population == 0


def test_fuh_nonacute_readmission_within_30_days_excludes_the_discharge() -> None:
    result = fuh([stay(days(0), id="index"), stay(days(40), id="rehab", admitted=days(30), acute=False)])
    assert decision(result, "index").exclusion is Exclusion.NONACUTE_READMISSION
    assert decision(result, "rehab").exclusion is Exclusion.NONACUTE_STAY


def test_fuh_nonacute_readmission_for_another_diagnosis_also_excludes_the_discharge() -> None:
    nursing = stay(days(20), id="snf", admitted=days(4), acute=False, mental_health=False)
    assert decision(fuh([stay(days(0), id="index"), nursing]), "index").exclusion is (
        Exclusion.NONACUTE_READMISSION
    )


def test_fuh_acute_readmission_for_another_diagnosis_excludes_the_original_and_is_not_counted() -> None:
    # HEDIS MY2025 FUH: "If the readmission/direct transfer to the acute inpatient care setting
    # was for any other principal diagnosis ... exclude both the original and the
    # readmission/direct transfer discharge." The chain is not merged: nothing is counted.
    medical = stay(days(12), id="medical", admitted=days(6), mental_health=False)
    result = fuh([stay(days(0), id="index"), medical], [visit(days(14))])
    assert decision(result, "index").exclusion is Exclusion.READMITTED_OTHER_DIAGNOSIS
    assert decision(result, "medical").exclusion is Exclusion.NOT_MENTAL_HEALTH
    assert (result.initial_population, result.numerator_30) == (0, 0)


def test_fuh_cancelled_readmission_is_simply_not_passed_in() -> None:
    # The caller drops a cancelled discharge (ADT A13); the index discharge then counts.
    assert decision(fuh([stay(days(0), id="index")]), "index").in_denominator


# --- FUH required exclusions -----------------------------------------------------------------------


def test_fuh_death_during_the_year_is_a_denominator_exclusion() -> None:
    result = fuh([stay()], [visit(days(2))], [Member("p1", date(1980, 1, 1), died_on=date(2025, 11, 3))])
    assert decision(result, "s1").exclusion is Exclusion.DIED
    assert (result.initial_population, result.denominator_exclusions, result.denominator) == (1, 1, 0)
    assert result.numerator_7 == 0


def test_fuh_death_after_the_year_does_not_exclude() -> None:
    member = Member("p1", date(1980, 1, 1), died_on=date(2026, 1, 3))
    assert decision(fuh([stay()], members=[member]), "s1").in_denominator


def test_fuh_hospice_during_the_year_is_a_denominator_exclusion() -> None:
    member = Member("p1", date(1950, 1, 1), hospice_on=date(2025, 12, 20))
    result = fuh([stay()], members=[member])
    assert decision(result, "s1").exclusion is Exclusion.HOSPICE
    assert result.denominator_exclusions == 1


def test_fuh_hospice_begun_before_the_year_excludes_and_hospice_after_it_does_not() -> None:
    before = fuh([stay()], members=[Member("p1", date(1950, 1, 1), hospice_on=date(2024, 6, 1))])
    after = fuh([stay()], members=[Member("p1", date(1950, 1, 1), hospice_on=date(2026, 1, 2))])
    assert decision(before, "s1").exclusion is Exclusion.HOSPICE
    assert decision(after, "s1").in_denominator


def test_fuh_counts_and_rates() -> None:
    members = [Member(f"p{i}", date(1990, 1, 1)) for i in range(4)]
    stays = [stay(id=f"s{i}", patient=f"p{i}") for i in range(4)]
    visits = [visit(days(2), id="a", patient="p0"), visit(days(20), id="b", patient="p1")]
    result = fuh(stays, visits, members)
    assert (result.denominator, result.numerator_7, result.numerator_30) == (4, 1, 2)
    assert (result.rate_7, result.rate_30) == (0.25, 0.5)


def test_rates_are_none_when_the_denominator_is_empty() -> None:
    result = fuh([])
    assert (result.rate_7, result.rate_30) == (None, None)


def test_period_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="before its start"):
        evaluate_fuh(END, START, [], [], [])


def test_duplicate_stay_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        fuh([stay(days(0)), stay(days(50))])


# --- input built from codes ----------------------------------------------------------------------


def test_stay_from_codes_reads_the_class_and_the_principal_diagnosis() -> None:
    acute = Stay.from_codes("s", "p", days(-2), days(0), "IMP", ["F32.2", "E11.9"])
    nonacute = Stay.from_codes("s", "p", days(-2), days(0), "NONAC", ["E11.9", "F32.2"])
    self_harm = Stay.from_codes("s", "p", days(-2), days(0), "ACUTE", ["T39.012A"])
    assert (acute.acute, acute.principal_mental_health) == (True, True)
    assert (nonacute.acute, nonacute.principal_mental_health) == (False, False)
    assert self_harm.principal_mental_health
    with pytest.raises(ValueError, match="not an inpatient stay"):
        Stay.from_codes("s", "p", days(0), days(0), "EMER", ["F32.2"])


def test_ed_visit_from_codes_reads_the_self_harm_rule() -> None:
    assert EdVisit.from_codes("e", "p", days(0), ["T14.91XA", "F32.9"]) == EdVisit(
        "e", "p", days(0), principal_mental_illness=False, principal_self_harm=True, any_mental_illness=True
    )
    assert not EdVisit.from_codes("e", "p", days(0), []).principal_mental_illness


def test_visit_from_codes_reads_the_setting_and_any_mental_illness_diagnosis() -> None:
    seen = Visit.from_codes("v", "p", days(1), "VR", ["Z00.00", "F41.1"], mental_health_provider=False)
    assert (seen.qualifying_setting, seen.mental_health_diagnosis) == (True, True)
    assert not Visit.from_codes("v", "p", days(1), "EMER", ["F41.1"], True).qualifying_setting


# --- FUM -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "met_7", "met_30"),
    [
        (-1, False, False),
        (0, True, True),
        (7, True, True),
        (8, False, True),
        (30, False, True),
        (31, False, False),
    ],
)
def test_fum_follow_up_counts_from_the_ed_day_through_day_7_and_day_30(
    day: int, met_7: bool, met_30: bool
) -> None:
    result = fum([ed(DISCHARGE)], [visit(days(day))])
    assert (decision(result, "e1").met_7, decision(result, "e1").met_30) == (met_7, met_30)


def test_fum_follow_up_needs_a_mental_health_diagnosis_not_a_mental_health_provider() -> None:
    result = fum([ed(DISCHARGE)], [visit(days(2), diagnosis=False, provider=True)])
    assert result.numerator_30 == 0


def test_fum_only_the_first_ed_visit_of_a_31_day_period_counts() -> None:
    # The HEDIS example: a visit on Jan 1 counts, Jan 2 - Jan 31 do not, Feb 1 starts anew.
    eds = [
        ed(date(2025, 1, 1), id="jan-1"),
        ed(date(2025, 1, 31), id="jan-31"),
        ed(date(2025, 2, 1), id="feb-1"),
    ]
    result = fum(eds)
    assert decision(result, "jan-1").in_denominator
    assert decision(result, "jan-31").exclusion is Exclusion.REPEAT_ED_VISIT
    assert decision(result, "feb-1").in_denominator


def test_fum_31_day_period_runs_from_the_counted_visit_not_from_a_repeat() -> None:
    eds = [ed(date(2025, 1, 1), id="a"), ed(date(2025, 1, 20), id="b"), ed(date(2025, 2, 5), id="c")]
    result = fum(eds)
    assert [e.event_id for e in result.events if e.in_denominator] == ["a", "c"]


def test_fum_ed_visit_that_is_not_eligible_does_not_open_a_31_day_period() -> None:
    eds = [ed(date(2025, 1, 1), id="medical", mental_illness=False), ed(date(2025, 1, 10), id="mh")]
    assert decision(fum(eds), "mh").in_denominator


@pytest.mark.parametrize(("day", "acute"), [(0, True), (30, False), (12, True)])
def test_fum_ed_visit_followed_by_an_inpatient_admission_within_30_days_is_excluded(
    day: int, acute: bool
) -> None:
    admission = stay(days(day + 4), admitted=days(day), acute=acute, mental_health=False)
    assert decision(fum([ed(DISCHARGE)], stays=[admission]), "e1").exclusion is Exclusion.ADMITTED


def test_fum_admission_on_day_31_does_not_exclude() -> None:
    admission = stay(days(35), admitted=days(31))
    assert decision(fum([ed(DISCHARGE)], stays=[admission]), "e1").in_denominator


def test_fum_excluded_first_visit_still_takes_the_31_day_period() -> None:
    # HEDIS lists "Multiple visits in a 31-day period" before "ED visits followed by inpatient
    # admission", so the first visit takes the period even when an admission then excludes it.
    eds = [ed(days(0), id="first"), ed(days(10), id="second")]
    result = fum(eds, stays=[stay(days(5), admitted=days(1))])
    assert decision(result, "first").exclusion is Exclusion.ADMITTED
    assert decision(result, "second").exclusion is Exclusion.REPEAT_ED_VISIT


def test_fum_self_harm_principal_diagnosis_needs_a_mental_illness_diagnosis() -> None:
    eds = [
        ed(days(0), id="alone", patient="p1", mental_illness=False, self_harm=True, any_mental_illness=False),
        ed(
            days(0), id="with-mi", patient="p2", mental_illness=False, self_harm=True, any_mental_illness=True
        ),
    ]
    result = fum(eds, members=[ADULT, Member("p2", date(1990, 1, 1))])
    assert decision(result, "alone").exclusion is Exclusion.SELF_HARM_WITHOUT_MENTAL_ILLNESS
    assert decision(result, "with-mi").in_denominator


def test_fum_ed_visit_without_a_mental_health_principal_diagnosis_is_not_in_the_population() -> None:
    assert decision(fum([ed(days(0), any_mental_illness=True, mental_illness=False)]), "e1").exclusion is (
        Exclusion.NOT_MENTAL_HEALTH
    )


def test_fum_age_5_and_6_on_the_ed_date() -> None:
    members = [Member("p1", date(2019, 3, 11)), Member("p2", date(2019, 3, 10))]
    result = fum([ed(DISCHARGE, id="five"), ed(DISCHARGE, id="six", patient="p2")], members=members)
    assert decision(result, "five").exclusion is Exclusion.UNDER_MINIMUM_AGE
    assert decision(result, "six").in_denominator


def test_fum_ed_visit_on_dec_1_is_in_and_on_dec_2_is_out() -> None:
    result = fum([ed(date(2025, 12, 1), id="in"), ed(date(2025, 12, 2), id="out", patient="p2")])
    assert decision(result, "in").in_denominator
    assert decision(result, "out").exclusion is Exclusion.AFTER_INTAKE_PERIOD


def test_fum_hospice_and_death_are_denominator_exclusions() -> None:
    members = [
        Member("p1", date(1950, 1, 1), hospice_on=date(2025, 2, 1)),
        Member("p2", date(1950, 1, 1), died_on=date(2025, 7, 1)),
    ]
    result = fum([ed(DISCHARGE, id="h"), ed(DISCHARGE, id="d", patient="p2")], members=members)
    assert (decision(result, "h").exclusion, decision(result, "d").exclusion) == (
        Exclusion.HOSPICE,
        Exclusion.DIED,
    )
    assert (result.initial_population, result.denominator_exclusions, result.denominator) == (2, 2, 0)


# --- MeasureReport -------------------------------------------------------------------------------

GENERATED = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)


def sample_fuh() -> MeasureResult:
    members = [
        Member("a", date(1990, 1, 1)),
        Member("b", date(1990, 1, 1)),
        Member("c", date(1990, 1, 1), died_on=date(2025, 9, 9)),
    ]
    stays = [stay(id="a1", patient="a"), stay(days(90), id="a2", patient="a"), stay(id="b1", patient="b")]
    stays.append(stay(id="c1", patient="c"))
    visits = [visit(days(5), id="v1", patient="a"), visit(days(100), id="v2", patient="a")]
    return fuh(stays, visits, members)


def population(group: dict[str, Any], code: str) -> dict[str, Any]:
    (found,) = [p for p in group["population"] if p["code"]["coding"][0]["code"] == code]
    return found


def test_summary_report_is_valid_fhir_with_the_counts_and_rates() -> None:
    result = sample_fuh()
    report = measure_report(
        result, measure_url=FUH_MEASURE_URL, period_start=START, period_end=END, generated=GENERATED
    )
    validate_resource(report, "MeasureReport")
    MeasureReport.model_validate(report)
    assert (report["status"], report["type"], report["measure"]) == ("complete", "summary", FUH_MEASURE_URL)
    assert report["period"] == {"start": "2025-01-01", "end": "2025-12-31"}
    assert report["date"] == "2026-02-01T09:30:00+00:00"
    assert report["improvementNotation"]["coding"][0]["code"] == "increase"
    seven, thirty = report["group"]
    assert (seven["id"], thirty["id"]) == ("fuh-7", "fuh-30")
    counts = {code: population(seven, code)["count"] for code in ("initial-population", "denominator")}
    assert counts == {"initial-population": 4, "denominator": 4}
    assert population(seven, "denominator-exclusion")["count"] == 1
    assert population(seven, "numerator")["count"] == 1
    assert population(thirty, "numerator")["count"] == 2
    assert seven["measureScore"] == {"value": 0.3333}
    assert thirty["measureScore"] == {"value": 0.6667}
    assert "contained" not in report


def test_subject_list_report_lists_each_counted_event_in_a_contained_list() -> None:
    report = measure_report(sample_fuh(), report_type="subject-list", generated=GENERATED)
    validate_resource(report, "MeasureReport")
    MeasureReport.model_validate(report)
    assert report["type"] == "subject-list"
    contained = {c["id"]: c for c in report["contained"]}
    for group in report["group"]:
        for pop in group["population"]:
            listed = contained[pop["subjectResults"]["reference"].removeprefix("#")]
            assert listed["resourceType"] == "List"
            assert len(listed.get("entry", [])) == pop["count"]
    thirty = report["group"][1]
    numerator = contained[population(thirty, "numerator")["subjectResults"]["reference"][1:]]
    assert [e["item"]["reference"] for e in numerator["entry"]] == ["Patient/a", "Patient/a"]
    exclusions = contained[population(thirty, "denominator-exclusion")["subjectResults"]["reference"][1:]]
    assert [e["item"]["reference"] for e in exclusions["entry"]] == ["Patient/c"]


def test_fum_report_uses_the_fum_url_and_group_ids() -> None:
    report = measure_report(fum([ed(DISCHARGE)], [visit(days(0))]), generated=GENERATED)
    validate_resource(report, "MeasureReport")
    assert report["measure"] == FUM_MEASURE_URL
    assert [g["id"] for g in report["group"]] == ["fum-7", "fum-30"]
    assert [g["measureScore"]["value"] for g in report["group"]] == [1.0, 1.0]


@pytest.mark.parametrize("report_type", ["summary", "subject-list"])
def test_report_with_an_empty_denominator_has_no_measure_score(report_type: Any) -> None:
    result = fuh([stay()], members=[Member("p1", date(1950, 1, 1), hospice_on=date(2025, 1, 1))])
    report = measure_report(result, report_type=report_type, generated=GENERATED)
    validate_resource(report, "MeasureReport")
    assert all("measureScore" not in group for group in report["group"])
    assert population(report["group"][0], "denominator-exclusion")["count"] == 1


def test_report_refuses_a_time_without_zone_and_a_different_period() -> None:
    result = fuh([])
    with pytest.raises(ValueError, match="time zone"):
        measure_report(result, generated=datetime(2026, 1, 1, 12, 0))
    with pytest.raises(ValueError, match="differs"):
        measure_report(result, period_start=date(2024, 1, 1), generated=GENERATED)
    with pytest.raises(ValueError, match="report type"):
        measure_report(result, report_type="individual", generated=GENERATED)  # type: ignore[arg-type]
