"""Care-plan domain logic. No I/O here.

`caseload_patient` is what careplan keeps of each Patient it hears about from intake: enough to
list a case manager's caseload (who, born when, which record numbers) without asking intake,
and nothing more (minimum necessary, 45 CFR 164.502(b)).
"""

from __future__ import annotations

from typing import Any

_KEPT = (
    "id",
    "identifier",
    "name",
    "birthDate",
    "gender",
    "active",
    "link",
    "deceasedBoolean",
    "deceasedDateTime",
)


def caseload_patient(patient: dict[str, Any]) -> dict[str, Any]:
    return {k: patient[k] for k in _KEPT if k in patient}


# --- the case-management plan and its same-day safety activities ----------------------------------

#: CarePlan.category of the plans careplan keeps: SNOMED CT 718347000 "Mental health care plan
#: (record artifact)", from the FHIR care-plan-category value set (valueset-care-plan-category.html).
CASE_MANAGEMENT_CATEGORY = {
    "system": "http://snomed.info/sct",
    "code": "718347000",
    "display": "Mental health care plan",
}
#: Extension on an activity: its urgency, as a request-priority code (R4 valueset-request-priority:
#: routine | urgent | asap | stat). R4 CarePlan.activity.detail has no priority element.
ACTIVITY_PRIORITY = "http://carebridge.example/fhir/StructureDefinition/activity-priority"
#: Extension on an activity: the Flag (or other resource) that asked for it, so it is added once.
ACTIVITY_TRIGGER = "http://carebridge.example/fhir/StructureDefinition/activity-trigger"
#: Extension on intake's safety Flag: the same-day action the triage rule recommends.
RECOMMENDED_ACTION = "http://carebridge.example/fhir/StructureDefinition/recommended-action"

#: What each recommended action becomes on the plan. Sources: PHQ-9 item 9 ≥1 → a structured
#: suicide risk assessment (C-SSRS) before the encounter ends; C-SSRS high → crisis workflow
#: with immediate evaluation; AHC HRSN safety positive → IPV safety planning (DOMAIN.md §1.2,
#: §1.5, §1.9). Codes: LOINC 93373-9 C-SSRS screener; SNOMED CT 715522008 "Suicide safety plan"
#: [K] (unverified), 225337009 "Suicide risk assessment" [K].
SAFETY_ACTIONS: dict[str, tuple[dict[str, str], str, str]] = {
    "cssrs": (
        {"system": "http://loinc.org", "code": "93373-9", "display": "C-SSRS screener - recent"},
        "Same-day suicide risk assessment (C-SSRS)",
        "urgent",
    ),
    "safety-plan": (
        {"system": "http://snomed.info/sct", "code": "715522008", "display": "Suicide safety plan"},
        "Same-day safety plan",
        "urgent",
    ),
    "crisis": (
        {"system": "http://snomed.info/sct", "code": "225337009", "display": "Suicide risk assessment"},
        "Crisis response: immediate evaluation and safety precautions",
        "stat",
    ),
    "ipv-safety": (
        {"system": "http://snomed.info/sct", "code": "715522008", "display": "Safety plan"},
        "Same-day interpersonal-violence safety planning",
        "urgent",
    ),
}


def recommended_action(flag: dict[str, Any]) -> str:
    for extension in flag.get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == RECOMMENDED_ACTION:
            value = extension.get("valueCode")
            if value in SAFETY_ACTIONS:
                return str(value)
    return "cssrs"  # an unknown safety flag still gets a same-day assessment


def safety_activity(flag: dict[str, Any], flag_reference: str, today: str) -> dict[str, Any]:
    """The same-day plan activity for a safety Flag raised by intake's triage: due by the end
    of `today` (a date), with the action's urgency."""
    code, description, priority = SAFETY_ACTIONS[recommended_action(flag)]
    reason = [c for c in (flag.get("code") or {}).get("coding") or [] if isinstance(c, dict)]
    detail: dict[str, Any] = {
        "kind": "Task",
        "code": {"coding": [code], "text": description},
        "status": "not-started",
        "scheduledPeriod": {"start": today, "end": today},
        "description": description,
    }
    if reason:
        detail["reasonCode"] = [{"coding": reason}]
    return {
        "extension": [
            {"url": ACTIVITY_PRIORITY, "valueCode": priority},
            {"url": ACTIVITY_TRIGGER, "valueReference": {"reference": flag_reference}},
        ],
        "detail": detail,
    }


def has_activity_for(plan: dict[str, Any], trigger_reference: str) -> bool:
    for activity in plan.get("activity") or []:
        for extension in activity.get("extension") or []:
            if (
                extension.get("url") == ACTIVITY_TRIGGER
                and (extension.get("valueReference") or {}).get("reference") == trigger_reference
            ):
                return True
    return False


def new_case_management_plan(patient_reference: str, today: str) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [CASE_MANAGEMENT_CATEGORY]}],
        "title": "Mental health case management",
        "subject": {"reference": patient_reference},
        "period": {"start": today},
        "created": today,
    }
