"""The closed-loop funnel (services/referral/domain/metrics.py) on hand-made timelines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.referral.domain.metrics import Timeline, funnel, referral_metrics

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HOUSING = ("http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes",
           "housing-instability", "Housing Instability")  # fmt: skip
FOOD = (HOUSING[0], "food-insecurity", "Food Insecurity")


def timeline(status: str, org: str = "a", category: tuple = HOUSING, **hours: float) -> Timeline:
    at = {f"{k}_at": T0 + timedelta(hours=v) for k, v in hours.items()}
    return Timeline(
        status=status, owner_org=org, category=category, requested_at=at.get("requested_at", T0),
        received_at=at.get("received_at"), accepted_at=at.get("accepted_at"),
        in_progress_at=at.get("in_progress_at"), completed_at=at.get("completed_at"),
    )  # fmt: skip


def test_the_funnel_counts_each_stage_reached_and_the_closed_loop_rate() -> None:
    counts = funnel([
        timeline("completed", received=1, accepted=2, in_progress=5, completed=48),
        timeline("completed", accepted=10, completed=30),  # accepted without acknowledging receipt
        timeline("in-progress", accepted=4, in_progress=6),
        timeline("rejected", received=2),
        timeline("cancelled"),
        timeline("requested"),
    ])  # fmt: skip
    assert counts == {
        "sent": 6, "received": 4, "accepted": 3, "in-progress": 3, "completed": 2,
        "rejected": 1, "cancelled": 1, "failed": 0, "closedLoopRate": 0.3333,
        "medianHoursToAccept": 4.0, "medianHoursToComplete": 39.0,
    }  # fmt: skip


def test_entered_in_error_is_not_sent_and_nothing_sent_has_no_rate() -> None:
    counts = funnel([Timeline("entered-in-error", "a", HOUSING, T0, None, None, None, None)])
    assert counts["sent"] == 0 and counts["closedLoopRate"] is None and counts["medianHoursToAccept"] is None


def test_metrics_are_grouped_by_category_and_organization_largest_first() -> None:
    body = referral_metrics([
        timeline("completed", "a", HOUSING, accepted=1, completed=2),
        timeline("requested", "b", HOUSING),
        timeline("accepted", "b", FOOD, accepted=3),
    ])  # fmt: skip
    assert body["overall"]["sent"] == 3
    assert [(g["category"]["code"], g["sent"]) for g in body["byCategory"]] == [
        ("housing-instability", 2), ("food-insecurity", 1)
    ]  # fmt: skip
    assert [(g["organization"], g["completed"]) for g in body["byOrganization"]] == [
        ("Organization/b", 0), ("Organization/a", 1)
    ]  # fmt: skip
