"""The closed-loop referral funnel (pure): how many referrals reached each stage, the closed-loop
rate, and the median time to accept and to complete, overall, by service category and by
receiving organization.

Definitions (DOMAIN.md §2.4, "Closed-loop rate (define it internally)"):
- sent: Tasks that left draft (requested_at is set) and are not entered-in-error;
- received / accepted / in progress / completed: sent Tasks that reached that stage or a later
  one of the path requested -> received -> accepted -> in-progress -> completed (a clinic may
  accept without acknowledging receipt first, and complete without marking in-progress);
- rejected / cancelled / failed: sent Tasks whose current status is that;
- closed-loop rate = completed / sent (None when nothing was sent);
- time to accept = accepted_at - requested_at, time to complete = completed_at - requested_at,
  medians in hours over the Tasks that got there.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

PATH: Final = ("received", "accepted", "in_progress", "completed")
ENDINGS: Final = ("rejected", "cancelled", "failed")


@dataclass(frozen=True, slots=True)
class Timeline:
    status: str
    owner_org: str | None
    category: tuple[str | None, str | None, str | None]  # system, code, display
    requested_at: datetime | None
    received_at: datetime | None
    accepted_at: datetime | None
    in_progress_at: datetime | None
    completed_at: datetime | None

    @property
    def sent(self) -> bool:
        return self.requested_at is not None and self.status != "entered-in-error"

    def reached(self, stage: str) -> bool:
        """This stage or a later one on the path."""
        later = PATH[PATH.index(stage) :]
        return any(getattr(self, f"{s}_at") is not None for s in later)


def _median_hours(spans: Iterable[float]) -> float | None:
    values = list(spans)
    return round(statistics.median(values) / 3600, 2) if values else None


def funnel(timelines: Sequence[Timeline]) -> dict[str, Any]:
    sent = [t for t in timelines if t.sent]
    counts: dict[str, Any] = {"sent": len(sent)}
    for stage in PATH:
        counts[stage.replace("_", "-")] = sum(t.reached(stage) for t in sent)
    for ending in ENDINGS:
        counts[ending] = sum(t.status == ending for t in sent)
    counts["closedLoopRate"] = round(counts["completed"] / len(sent), 4) if sent else None
    counts["medianHoursToAccept"] = _median_hours(
        (t.accepted_at - t.requested_at).total_seconds() for t in sent if t.accepted_at and t.requested_at
    )
    counts["medianHoursToComplete"] = _median_hours(
        (t.completed_at - t.requested_at).total_seconds() for t in sent if t.completed_at and t.requested_at
    )
    return counts


def _grouped(timelines: Sequence[Timeline], key: Callable[[Timeline], Any]) -> dict[Any, list[Timeline]]:
    groups: dict[Any, list[Timeline]] = defaultdict(list)
    for timeline in timelines:
        groups[key(timeline)].append(timeline)
    return groups


def referral_metrics(timelines: Sequence[Timeline]) -> dict[str, Any]:
    """The funnel overall, by category (the ServiceRequest's first category coding) and by
    receiving organization, largest groups first."""
    by_category = [
        {"category": _category(key), **funnel(group)}
        for key, group in _grouped(timelines, lambda t: t.category).items()
    ]
    by_organization = [
        {"organization": f"Organization/{key}" if key else None, **funnel(group)}
        for key, group in _grouped(timelines, lambda t: t.owner_org).items()
    ]
    return {
        "overall": funnel(timelines),
        "byCategory": sorted(by_category, key=lambda g: (-g["sent"], str(g["category"]))),
        "byOrganization": sorted(by_organization, key=lambda g: (-g["sent"], str(g["organization"]))),
    }


def _category(key: tuple[str | None, str | None, str | None]) -> dict[str, str] | None:
    system, code, display = key
    if not code:
        return None
    out = {"code": code}
    if system:
        out["system"] = system
    if display:
        out["display"] = display
    return out
