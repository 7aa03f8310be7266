"""The post-discharge follow-up rules (services/careplan/domain/followup.py) and the value sets
they read, one boundary at a time. Synthetic data only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.careplan import CarePlan

from services.careplan.domain import followup as rules
from services.careplan.domain.plans import new_case_management_plan
from services.careplan.domain.valuesets import (
    is_depression,
    is_intentional_self_harm,
    is_mental_health_diagnosis,
)

DISCHARGED = datetime(2026, 11, 8, 14, 0, tzinfo=UTC)


def encounter(**overrides: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": "stay",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/p"},
        "period": {"start": "2026-11-01T08:30:00+00:00", "end": "2026-11-08T14:00:00+00:00"},
        "diagnosis": [
            {"condition": {"reference": "Condition/other"}, "rank": 2},
            {"condition": {"reference": "Condition/principal"}, "rank": 1},
        ],
        **overrides,
    }


@pytest.mark.parametrize(
    ("code", "expected"),
    [("F01.50", True), ("F32.2", True), ("F322", True), ("F99", True), ("F00", False), ("G30.9", False),
     ("X71.0XXA", True), ("X83.8XXA", True), ("X84", False), ("T14.91XA", True),
     ("T39.012A", True), ("T42.4X2A", True), ("T39.011A", False), ("T66", False)],
)  # fmt: skip
def test_mental_illness_and_intentional_self_harm_codes_follow_icd10cm(code: str, expected: bool) -> None:
    assert is_mental_health_diagnosis(code) is expected


def test_self_harm_is_not_mental_illness_and_depression_is_f32_f33_f34_1() -> None:
    assert is_intentional_self_harm("X78.9XXA") and not is_intentional_self_harm("F32.2")
    assert is_depression("F33.1") and is_depression("F34.1") and not is_depression("F34.0")


def test_the_principal_diagnosis_is_the_one_ranked_1_not_the_first_listed() -> None:
    facts = rules.encounter_facts(encounter())
    assert facts is not None and facts.principal_condition == "principal"


def test_a_finished_acute_stay_with_a_mental_health_principal_diagnosis_is_a_psychiatric_discharge() -> None:
    facts = rules.encounter_facts(encounter())
    assert facts is not None
    assert rules.is_psychiatric_discharge(facts, {"principal": ["F32.2"], "other": ["E11.9"]})
    assert not rules.is_psychiatric_discharge(facts, {"principal": ["E11.9"], "other": ["F32.2"]})
    assert not rules.is_psychiatric_discharge(facts, {})  # its Conditions have not arrived yet


@pytest.mark.parametrize(
    "overrides",
    [{"status": "in-progress"}, {"period": {"start": "2026-11-01"}},
     {"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}}],
)  # fmt: skip
def test_an_open_stay_or_an_emergency_visit_is_not_a_discharge(overrides: dict[str, Any]) -> None:
    facts = rules.encounter_facts(encounter(**overrides))
    assert facts is not None and not rules.is_psychiatric_discharge(facts, {"principal": ["F32.2"]})


def test_an_outpatient_visit_counts_with_a_mental_health_diagnosis_or_provider() -> None:
    visit = encounter(
        status="in-progress",
        **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
        period={"start": "2026-11-13T10:00:00+00:00"},
        diagnosis=[{"condition": {"reference": "Condition/d"}, "rank": 1}],
    )
    facts = rules.encounter_facts(visit)
    assert facts is not None
    assert rules.is_follow_up_visit(facts, {"d": ["F32.2"]})
    assert not rules.is_follow_up_visit(facts, {"d": ["J06.9"]})
    assert rules.is_follow_up_visit(facts, {"d": ["J06.9"]}, mental_health_provider=True)
    cancelled = rules.encounter_facts({**visit, "status": "cancelled"})
    assert cancelled is not None and not rules.is_follow_up_visit(cancelled, {"d": ["F32.2"]})


@pytest.mark.parametrize(
    ("kind", "days_after", "expected"),
    [("follow-up-7", 0, False), ("follow-up-7", 1, True), ("follow-up-7", 7, True), ("follow-up-7", 8, False),
     ("follow-up-30", 0, False), ("follow-up-30", 8, True), ("follow-up-30", 30, True),
     ("follow-up-30", 31, False), ("medication-reconciliation", 3, False)],
)  # fmt: skip
def test_a_visit_meets_the_fuh_windows_by_calendar_day_and_never_on_the_discharge_day(
    kind: str, days_after: int, expected: bool
) -> None:
    visit = DISCHARGED.replace(hour=9) + timedelta(days=days_after)
    assert rules.visit_completes(kind, DISCHARGED, visit) is expected


def test_a_caring_contact_counts_from_discharge_to_72_hours_after() -> None:
    assert rules.visit_completes("caring-contact", DISCHARGED, DISCHARGED + timedelta(hours=2))
    assert rules.visit_completes("caring-contact", DISCHARGED, DISCHARGED + timedelta(hours=72))
    assert not rules.visit_completes("caring-contact", DISCHARGED, DISCHARGED + timedelta(hours=73))
    assert not rules.visit_completes("caring-contact", DISCHARGED, DISCHARGED - timedelta(hours=1))


def test_discharge_activities_are_due_72_hours_day_7_and_day_30_and_make_a_valid_careplan() -> None:
    activities = rules.discharge_activities("stay", DISCHARGED)
    windows = {rules.activity_key(a)[1]: a["detail"]["scheduledPeriod"] for a in activities}  # type: ignore[index]
    assert windows["caring-contact"] == {
        "start": "2026-11-08T14:00:00+00:00",
        "end": "2026-11-11T14:00:00+00:00",
    }
    assert windows["follow-up-7"] == {
        "start": "2026-11-09T00:00:00+00:00",
        "end": "2026-11-15T23:59:59+00:00",
    }
    assert windows["follow-up-30"]["end"] == "2026-12-08T23:59:59+00:00"
    assert windows["medication-reconciliation"]["end"] == "2026-11-15T23:59:59+00:00"
    plan = {**new_case_management_plan("Patient/p", "2026-11-08"), "activity": activities}
    CarePlan.model_validate(plan)


def test_completing_and_cancelling_keep_the_activity_valid_and_record_why() -> None:
    activity = rules.discharge_activity("stay", DISCHARGED, "follow-up-7")
    done = rules.completed(activity, "Encounter/visit")
    assert done["detail"]["status"] == "completed" and done["outcomeReference"] == [
        {"reference": "Encounter/visit"}
    ]
    assert rules.completed(done, "Encounter/visit")["outcomeReference"] == done["outcomeReference"]
    gone = rules.cancelled(activity, "Discharge cancelled (ADT A13)")
    assert gone["detail"]["statusReason"] == {"text": "Discharge cancelled (ADT A13)"}
    plan = {**new_case_management_plan("Patient/p", "2026-11-08"), "activity": [done, gone]}
    CarePlan.model_validate(plan)
