"""A referral on the case-management plan: one activity per ServiceRequest, following its Task.

Source: HL7 SDOH Clinical Care IG (Gravity), referral workflow: the referral is a ServiceRequest
and a Task for Referral Management whose status the receiving organization moves; the loop
closes when the Task is completed with its output (DOMAIN.md §2.4). The plan shows the same
state to the case manager:

| Task.status                                   | CarePlan.activity.detail.status |
|-----------------------------------------------|---------------------------------|
| draft, requested, received                    | not-started                     |
| accepted                                      | scheduled                       |
| in-progress                                   | in-progress                     |
| on-hold                                       | on-hold                         |
| completed                                     | completed (outcome = Task.output references) |
| rejected, cancelled, failed, entered-in-error | cancelled (statusReason = Task.statusReason) |

The activity is due 30 days after the referral was made [K: CareBridge's choice, so a referral
nobody took up shows on the worklist]; the referral service escalates non-acceptance itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final

from services.careplan.domain.followup import activity_key, parse_instant
from services.careplan.domain.plans import ACTIVITY_PRIORITY, ACTIVITY_TRIGGER

REFERRAL_DUE: Final = timedelta(days=30)
TASK_TO_ACTIVITY: Final[Mapping[str, str]] = {
    "draft": "not-started",
    "requested": "not-started",
    "received": "not-started",
    "ready": "not-started",
    "accepted": "scheduled",
    "in-progress": "in-progress",
    "on-hold": "on-hold",
    "completed": "completed",
    "rejected": "cancelled",
    "cancelled": "cancelled",
    "failed": "cancelled",
    "entered-in-error": "cancelled",
}
_PRIORITY: Final = {"routine": "routine", "urgent": "urgent", "asap": "asap", "stat": "stat"}


def referral_activity(service_request: Mapping[str, Any]) -> dict[str, Any] | None:
    """The plan activity of a referral ServiceRequest (None without an id or an authoredOn)."""
    authored = parse_instant(service_request.get("authoredOn"))
    if not service_request.get("id") or authored is None:
        return None
    code = service_request.get("code") or {}
    text = code.get("text") or next(
        (c.get("display") for c in code.get("coding") or [] if isinstance(c, dict) and c.get("display")),
        "Referral",
    )
    performer = next(
        (p.get("display") for p in service_request.get("performer") or [] if p.get("display")), None
    )
    description = f"Referral: {text}" + (f" ({performer})" if performer else "")
    detail: dict[str, Any] = {
        "kind": "ServiceRequest",
        "status": "not-started",
        "scheduledPeriod": {
            "start": authored.isoformat(timespec="seconds"),
            "end": (authored + REFERRAL_DUE).isoformat(timespec="seconds"),
        },
        "description": description,
    }
    if code:
        detail["code"] = code
    return {
        "extension": [
            {
                "url": ACTIVITY_PRIORITY,
                "valueCode": _PRIORITY.get(str(service_request.get("priority")), "routine"),
            },
            {
                "url": ACTIVITY_TRIGGER,
                "valueReference": {"reference": f"ServiceRequest/{service_request['id']}"},
            },
        ],
        "detail": detail,
    }


def follow_task(plan: dict[str, Any], task: Mapping[str, Any]) -> dict[str, Any] | None:
    """The plan with the referral activity of `task`'s focus set to the Task's state; None when
    the plan has no such activity or nothing changes."""
    focus = str((task.get("focus") or {}).get("reference") or "")
    status = TASK_TO_ACTIVITY.get(str(task.get("status")))
    if not focus.startswith("ServiceRequest/") or status is None:
        return None
    changed = False
    activities = []
    for activity in plan.get("activity") or []:
        key = activity_key(activity)
        if key is not None and key[0] == focus:
            updated = _with_task(activity, status, task)
            changed = changed or updated != activity
            activity = updated
        activities.append(activity)
    return {**plan, "activity": activities} if changed else None


def _with_task(activity: dict[str, Any], status: str, task: Mapping[str, Any]) -> dict[str, Any]:
    detail = {**activity["detail"], "status": status}
    detail.pop("statusReason", None)
    reason = (task.get("statusReason") or {}).get("text")
    if status == "cancelled":
        detail["statusReason"] = {"text": reason or f"Referral {task.get('status')}"}
    out = {**activity, "detail": detail}
    outputs = [
        o["valueReference"]
        for o in task.get("output") or []
        if isinstance(o, dict) and isinstance(o.get("valueReference"), dict)
    ]
    if status == "completed" and outputs:
        out["outcomeReference"] = outputs
    return out
