"""Opening hours: HealthcareService.availableTime from a short text, and when a service is next
open (now, later, or not within the look-ahead), in the service's time zone. No I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.errors import InvalidInput

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ALL_DAY: Final = ("24/7", "24x7", "always")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


@dataclass(frozen=True, slots=True)
class Opening:
    """Days of the week (0 = Monday) and local times; no times means all day."""

    days: frozenset[int]
    start: time | None
    end: time | None


# --- availableTime from text ----------------------------------------------------------------------


def available_time(spec: str) -> list[dict[str, Any]]:
    """HealthcareService.availableTime from '24/7' or 'mon-fri 09:00-17:00; sat 10:00-14:00'.

    Times are local to the service (the Location's timezone). A span ends after it starts, by
    23:59 at the latest: an overnight service is '24/7' or two spans."""
    text = spec.strip().lower()
    if not text:
        return []
    if text in _ALL_DAY:
        return [{"daysOfWeek": list(DAYS), "allDay": True}]
    result = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        days_text, _, span = part.partition(" ")
        days = parse_days(days_text)
        span = span.strip()
        if span in ("all day", "allday", "24h"):
            result.append({"daysOfWeek": days, "allDay": True})
            continue
        start_text, sep, end_text = span.partition("-")
        start, end = _time(start_text.strip()), _time(end_text.strip()) if sep else None
        if start is None or end is None or end <= start:
            raise InvalidInput(f"hours {part!r}: give a span like 09:00-17:00 (ending after it starts)")
        result.append({"daysOfWeek": days, "availableStartTime": start, "availableEndTime": end})
    return result


def parse_days(text: str) -> list[str]:
    """'mon-fri', 'mon,wed,fri' or 'sat' as R4 days-of-week codes, in week order."""
    chosen: set[str] = set()
    for item in (i.strip() for i in text.split(",")):
        first, sep, last = item.partition("-")
        if first not in DAYS or (sep and last not in DAYS):
            raise InvalidInput(f"hours: {item!r} is not a day or a day range (mon ... sun)")
        lo, hi = DAYS.index(first), DAYS.index(last) if sep else DAYS.index(first)
        if hi < lo:
            raise InvalidInput(f"hours: the range {item!r} runs backwards")
        chosen.update(DAYS[lo : hi + 1])
    return [d for d in DAYS if d in chosen]


def _time(text: str) -> str | None:
    match = _TIME.match(text)
    if not match or int(match[1]) > 23 or int(match[2]) > 59:  # FHIR time: 00:00 to 23:59
        return None
    return f"{int(match[1]):02d}:{match[2]}:00"


# --- when a service is open -----------------------------------------------------------------------


def weekly_timetable(openings: Iterable[Opening]) -> tuple[tuple[int, int], ...]:
    spans = sorted(
        (day * 1440 + _minutes(o.start, 0), day * 1440 + _minutes(o.end, 1440))
        for o in openings
        for day in o.days
    )
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _minutes(moment: time | None, default: int) -> int:
    return default if moment is None else moment.hour * 60 + moment.minute


@functools.cache
def zone_info(name: str) -> ZoneInfo:
    """The IANA zone, UTC for an unknown name (a directory's typo must not fail matching)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def next_opening(
    openings: Sequence[Opening],
    closures: Sequence[tuple[str | None, str | None]],
    zone_name: str,
    now: datetime,
    within_days: int,
) -> datetime | None:
    """When a service is next open, within `within_days` days: `now` when it is open now, else
    the start of its next opening (in its zone); None when it does not open in that time.
    `closures` are notAvailable periods as given (ISO dates or dateTimes)."""
    zone = zone_info(zone_name)
    local = now.astimezone(zone)
    closed = list(_closures(closures, zone))
    for offset in range(within_days + 1):
        day = local.date() + timedelta(days=offset)
        spans = []
        for opening in openings:
            if day.weekday() not in opening.days:
                continue
            if opening.start is None or opening.end is None:
                start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
                spans.append((start, start + timedelta(days=1)))
            else:
                spans.append(
                    (
                        datetime.combine(day, opening.start, tzinfo=zone),
                        datetime.combine(day, opening.end, tzinfo=zone),
                    )
                )
        for start, end in sorted(spans):
            if end <= local:
                continue
            moment = max(start, local)
            if any(lo <= moment < hi for lo, hi in closed):
                continue
            if moment - local > timedelta(days=within_days):
                return None
            return moment
    return None


def _closures(
    closures: Sequence[tuple[str | None, str | None]], zone: ZoneInfo
) -> Iterable[tuple[datetime, datetime]]:
    for start, end in closures:
        lo, hi = _instant(start, zone, end_of_day=False), _instant(end, zone, end_of_day=True)
        yield (lo or datetime.min.replace(tzinfo=UTC), hi or datetime.max.replace(tzinfo=UTC))


def _instant(text: str | None, zone: ZoneInfo, *, end_of_day: bool) -> datetime | None:
    if not text:
        return None
    try:
        if len(text) == 10:  # a date: the whole day, in the service's zone
            day = date.fromisoformat(text) + timedelta(days=1 if end_of_day else 0)
            return datetime.combine(day, datetime.min.time(), tzinfo=zone)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def weekly_opening(week: Sequence[tuple[int, int]], local: datetime, within_days: int) -> datetime | None:
    """next_opening over a weekly timetable (minutes from Monday 00:00, local time) when there
    are no closures: the same answer, without building every day's spans. A daylight-saving
    change within the look-ahead shifts a future opening by its hour (it says "opens ~")."""
    minute = local.weekday() * 1440 + local.hour * 60 + local.minute
    horizon = within_days * 1440
    for shift in (0, 7 * 1440):
        for start, end in week:
            if end + shift > minute:
                wait = max(0, start + shift - minute)
                if wait > horizon:
                    return None
                return (
                    local if wait == 0 else local.replace(second=0, microsecond=0) + timedelta(minutes=wait)
                )
    return None
