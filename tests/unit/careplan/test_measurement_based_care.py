"""PHQ-9 goals (CMS159 remission, NQF 1885 response) and re-administration every 4 months
(CMS160) at their boundaries (DOMAIN.md §1.2, §4). Synthetic data only."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.goal import Goal

from services.careplan.domain import measurement_based_care as mbc
from services.careplan.domain.measurement_based_care import Score
from services.careplan.domain.plans import ACTIVITY_TRIGGER, has_activity_for, new_case_management_plan
from shared.fhir.validation import validate_resource

PATIENT = "Patient/synthetic-1"
PLAN = "CarePlan/plan-1"
TODAY = date(2026, 2, 10)


def phq9_observation(**overrides: Any) -> dict[str, Any]:
    """A PHQ-9 total as intake writes it (services/intake/domain/observations.py)."""
    return {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": PATIENT},
        "effectiveDateTime": "2026-01-05T22:30:00-05:00",
        "derivedFrom": [{"reference": "QuestionnaireResponse/qr-1"}],
        "valueQuantity": {
            "value": 14,
            "unit": "{score}",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        },
        "interpretation": [{"coding": [{"system": "http://loinc.org", "code": "LA6710-3"}]}],
        **overrides,
    }


def series(*values: int, start: date = date(2026, 1, 5)) -> list[Score]:
    """One score a month, ids s0, s1, ..."""
    return [Score(f"s{i}", mbc.plus_months(start, i), v) for i, v in enumerate(values)]


# --- reading the Observation ---------------------------------------------------------------------


def test_a_final_phq9_total_from_intake_is_read_on_the_day_it_was_recorded() -> None:
    assert mbc.phq9_total(phq9_observation()) == Score("obs-1", date(2026, 1, 5), 14)
    assert mbc.phq9_total(phq9_observation(status="amended", valueQuantity={"value": 0.0})) is not None


@pytest.mark.parametrize(
    "overrides",
    [{"status": "preliminary"}, {"status": "entered-in-error"},
     {"code": {"coding": [{"system": "http://loinc.org", "code": "70274-6"}]}},
     {"valueQuantity": {"value": 28}}, {"valueQuantity": {"value": 12.5}}, {"valueQuantity": {"value": True}},
     {"valueQuantity": {"value": float("nan")}},
     {"valueQuantity": None, "dataAbsentReason": {"text": "not asked"}},
     {"effectiveDateTime": "2026-01"}, {"effectiveDateTime": None}, {"id": None}],
)  # fmt: skip
def test_anything_but_a_resulted_whole_phq9_total_with_a_day_is_not_a_score(
    overrides: dict[str, Any],
) -> None:
    assert mbc.phq9_total(phq9_observation(**overrides)) is None


# --- baseline and evaluation ---------------------------------------------------------------------


def test_a_baseline_of_9_gives_no_goal_and_no_evaluation() -> None:
    scores = series(9, 4)
    assert mbc.baseline(scores) is None
    assert mbc.evaluate_goal("remission", scores) is None and mbc.evaluate_goal("response", scores) is None
    with pytest.raises(ValueError, match="above 9"):
        mbc.phq9_goal("remission", PATIENT, PLAN, scores[0], TODAY)


def test_the_baseline_is_the_first_score_of_10_or_more() -> None:
    assert mbc.baseline(series(7, 10, 16)) == Score("s1", date(2026, 2, 5), 10)


def test_a_first_score_alone_is_in_progress() -> None:
    evaluation = mbc.evaluate_goal("remission", series(10))
    assert evaluation is not None and evaluation.status == "in-progress" and evaluation.previous is None


@pytest.mark.parametrize(("latest", "status"), [(5, "achieved"), (6, "improving")])
def test_response_needs_a_50_percent_reduction_10_to_5_achieves_and_10_to_6_does_not(
    latest: int, status: str
) -> None:
    evaluation = mbc.evaluate_goal("response", series(10, latest))
    assert evaluation is not None and evaluation.status == status and evaluation.met is (status == "achieved")


@pytest.mark.parametrize(("latest", "status"), [(4, "achieved"), (5, "improving")])
def test_remission_needs_a_score_below_5(latest: int, status: str) -> None:
    evaluation = mbc.evaluate_goal("remission", series(14, latest))
    assert evaluation is not None and evaluation.status == status


@pytest.mark.parametrize(
    ("values", "status"),
    [((18, 12, 9), "improving"), ((18, 9, 12), "worsening"), ((18, 12, 12), "no-change")],
)
def test_an_unmet_target_is_improving_worsening_or_no_change_against_the_previous_score(
    values: tuple[int, ...], status: str
) -> None:
    evaluation = mbc.evaluate_goal("remission", series(*values))
    assert evaluation is not None and evaluation.status == status
    assert evaluation.previous is not None and evaluation.previous.value == values[-2]


def test_a_target_met_at_the_previous_score_too_is_sustaining() -> None:
    evaluation = mbc.evaluate_goal("response", series(16, 8, 6))
    assert evaluation is not None and evaluation.status == "sustaining" and evaluation.met


def test_losing_a_met_target_is_worsening() -> None:
    evaluation = mbc.evaluate_goal("remission", series(16, 3, 7))
    assert evaluation is not None and evaluation.status == "worsening"


def test_an_elevated_score_after_a_remission_starts_a_new_episode_with_a_new_baseline() -> None:
    evaluation = mbc.evaluate_goal("remission", series(12, 3, 15))
    assert evaluation is not None and evaluation.baseline == Score("s2", date(2026, 3, 5), 15)
    assert evaluation.status == "in-progress"


def test_an_elevated_score_without_a_remission_keeps_the_first_baseline() -> None:
    evaluation = mbc.evaluate_goal("response", series(12, 8, 15))
    assert evaluation is not None and evaluation.baseline.value == 12 and evaluation.status == "worsening"


def test_scores_are_read_in_date_order_whatever_order_they_arrive_in() -> None:
    evaluation = mbc.evaluate_goal("remission", list(reversed(series(14, 10, 4))))
    assert evaluation is not None and evaluation.status == "achieved" and evaluation.baseline.value == 14


# --- Goal resources ------------------------------------------------------------------------------


def test_a_baseline_of_10_gives_a_valid_remission_goal_below_5_due_in_12_months() -> None:
    base = Score("obs-1", date(2026, 1, 5), 10)
    goal = mbc.phq9_goal("remission", PATIENT, PLAN, base, TODAY)
    validate_resource(goal, "Goal")
    Goal.model_validate(goal)
    target = goal["target"][0]
    assert target["measure"]["coding"][0]["code"] == "44261-6"
    assert target["detailRange"]["high"] == {
        "value": 4, "unit": "{score}", "system": "http://unitsofmeasure.org", "code": "{score}"
    }  # fmt: skip
    assert target["dueDate"] == "2027-01-05"
    assert goal["lifecycleStatus"] == "active" and goal["category"][0]["coding"][0]["code"] == "behavioral"
    assert goal["addresses"] == [{"reference": "Observation/obs-1"}]
    assert goal["extension"][0]["valueReference"] == {"reference": PLAN}
    assert goal["id"] == mbc.phq9_goal_id("remission", "obs-1") != mbc.phq9_goal_id("response", "obs-1")


def test_a_response_goal_targets_half_the_baseline_or_less() -> None:
    goal = mbc.phq9_goal("response", PATIENT, None, Score("obs-1", date(2026, 1, 5), 11), TODAY)
    validate_resource(goal, "Goal")
    quantity = goal["target"][0]["detailQuantity"]
    assert quantity["comparator"] == "<=" and quantity["value"] == 5 and quantity["code"] == "{score}"
    assert "extension" not in goal


def test_an_evaluation_sets_the_achievement_status_and_the_outcome_once() -> None:
    scores = series(14, 4)
    goal = mbc.phq9_goal("remission", PATIENT, PLAN, scores[0], TODAY)
    evaluation = mbc.evaluate_goal("remission", scores)
    assert evaluation is not None
    updated = mbc.apply_evaluation(goal, evaluation)
    assert updated is not None
    validate_resource(updated, "Goal")
    assert updated["achievementStatus"]["coding"] == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/goal-achievement",
            "code": "achieved",
            "display": "Achieved",
        }
    ]
    assert updated["outcomeReference"] == [{"reference": "Observation/s1"}]
    assert updated["lifecycleStatus"] == "active"
    assert mbc.apply_evaluation(updated, evaluation) is None


def test_a_new_score_appends_its_observation_to_the_outcomes() -> None:
    scores = series(14, 4, 3)
    goal = mbc.phq9_goal("remission", PATIENT, PLAN, scores[0], TODAY)
    first, second = mbc.evaluate_goal("remission", scores[:2]), mbc.evaluate_goal("remission", scores)
    assert first is not None and second is not None
    once = mbc.apply_evaluation(goal, first)
    assert once is not None
    twice = mbc.apply_evaluation(once, second)
    assert twice is not None and twice["achievementStatus"]["coding"][0]["code"] == "sustaining"
    assert [o["reference"] for o in twice["outcomeReference"]] == ["Observation/s1", "Observation/s2"]


def test_a_goal_a_person_completed_is_not_re_scored() -> None:
    scores = series(14, 9)
    goal = {**mbc.phq9_goal("remission", PATIENT, PLAN, scores[0], TODAY), "lifecycleStatus": "completed"}
    evaluation = mbc.evaluate_goal("remission", scores)
    assert evaluation is not None and mbc.apply_evaluation(goal, evaluation) is None


def test_an_evaluation_of_another_kind_or_baseline_is_refused() -> None:
    scores = series(14, 6)
    goal = mbc.phq9_goal("remission", PATIENT, PLAN, scores[0], TODAY)
    response = mbc.evaluate_goal("response", scores)
    assert response is not None
    with pytest.raises(ValueError, match="not the response goal"):
        mbc.apply_evaluation(goal, response)


# --- re-administration (CMS160) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "due"),
    [(date(2026, 1, 15), date(2026, 5, 15)), (date(2025, 10, 31), date(2026, 2, 28)),
     (date(2027, 10, 31), date(2028, 2, 29)), (date(2026, 9, 30), date(2027, 1, 30)),
     (date(2026, 6, 30), date(2026, 10, 30))],
)  # fmt: skip
def test_the_next_phq9_is_due_4_calendar_months_after_the_last_clipped_to_the_month_end(
    last: date, due: date
) -> None:
    assert mbc.phq9_due(last, depression_since=date(2025, 1, 1)) == due


def test_with_no_phq9_yet_or_only_an_old_one_the_phq9_is_due_on_the_diagnosis_date() -> None:
    diagnosed = date(2026, 3, 2)
    assert mbc.phq9_due(None, diagnosed) == diagnosed
    assert mbc.phq9_due(date(2025, 6, 1), diagnosed) == diagnosed


def test_the_readministration_activity_is_a_valid_not_started_phq9_task_due_on_the_date() -> None:
    due = date(2026, 5, 5)
    activity = mbc.phq9_readministration_activity(due, mbc.readministration_trigger(due), start=TODAY)
    plan = {**new_case_management_plan(PATIENT, TODAY.isoformat()), "activity": [activity]}
    validate_resource(plan, "CarePlan")
    CarePlan.model_validate(plan)
    detail = activity["detail"]
    assert detail["kind"] == "Task" and detail["status"] == "not-started"
    assert detail["code"]["coding"][0] == {
        "system": "http://loinc.org", "code": "44249-1",
        "display": "PHQ-9 quick depression assessment panel [Reported.PHQ]",
    }  # fmt: skip
    assert detail["scheduledPeriod"] == {"start": "2026-02-10", "end": "2026-05-05"}
    assert has_activity_for(plan, "phq9-due/2026-05-05")


def plan_with(*activities: dict[str, Any]) -> dict[str, Any]:
    return {**new_case_management_plan(PATIENT, TODAY.isoformat()), "activity": list(activities)}


def test_refreshing_a_plan_without_the_activity_adds_it_once() -> None:
    due = date(2026, 5, 5)
    plan = mbc.refresh_readministration(new_case_management_plan(PATIENT, TODAY.isoformat()), due, TODAY)
    assert plan is not None and len(plan["activity"]) == 1
    validate_resource(plan, "CarePlan")
    assert mbc.refresh_readministration(plan, due, TODAY) is None


def test_a_newer_phq9_completes_the_open_activity_and_adds_one_for_the_new_due_date() -> None:
    old = mbc.phq9_readministration_activity(date(2026, 5, 5), "phq9-due/2026-05-05", start=TODAY)
    plan = mbc.refresh_readministration(
        plan_with(old), date(2026, 8, 20), date(2026, 4, 20), taken="Observation/o2"
    )
    assert plan is not None
    validate_resource(plan, "CarePlan")
    done, new = plan["activity"]
    assert done["detail"]["status"] == "completed" and done["outcomeReference"] == [
        {"reference": "Observation/o2"}
    ]
    assert new["detail"]["status"] == "not-started"
    assert new["detail"]["scheduledPeriod"] == {"start": "2026-04-20", "end": "2026-08-20"}
    assert mbc.refresh_readministration(plan, date(2026, 8, 20), date(2026, 4, 21)) is None


def test_an_earlier_due_date_moves_the_open_activity_back() -> None:
    later = mbc.phq9_readministration_activity(
        date(2026, 8, 20), "phq9-due/2026-08-20", start=date(2026, 4, 20)
    )
    plan = mbc.refresh_readministration(plan_with(later), date(2026, 5, 5), date(2026, 4, 25))
    assert plan is not None and len(plan["activity"]) == 1
    moved = plan["activity"][0]
    assert moved["detail"]["scheduledPeriod"] == {"start": "2026-04-20", "end": "2026-05-05"}
    assert moved["detail"]["status"] == "not-started"
    triggers = [e["valueReference"]["reference"] for e in moved["extension"] if e["url"] == ACTIVITY_TRIGGER]
    assert triggers == ["phq9-due/2026-05-05"]


def test_a_done_activity_for_the_due_date_is_not_re_opened() -> None:
    due = date(2026, 5, 5)
    done = mbc.phq9_readministration_activity(due, mbc.readministration_trigger(due))
    done = {**done, "detail": {**done["detail"], "status": "completed"}}
    assert mbc.refresh_readministration(plan_with(done), due, TODAY) is None


def test_activities_a_person_added_are_left_alone() -> None:
    own = {"detail": {"kind": "Task", "status": "not-started", "description": "Call about housing"}}
    plan = mbc.refresh_readministration(plan_with(own), date(2026, 5, 5), TODAY)
    assert plan is not None and plan["activity"][0] == own and len(plan["activity"]) == 2
