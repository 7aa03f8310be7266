"""The closed loop of a referral: the ServiceRequest and its Gravity SDOHCC Task for Referral
Management, as rules over plain data (no I/O).

Sources: HL7 SDOH Clinical Care IG (fhir-sdoh-clinicalcare, STU 2.x/3.0 CI):
StructureDefinition-SDOHCC-TaskForReferralManagement (profile and its intro page: "Status
Management", who sets each status), `ReferralTaskStateDiagram` (the transitions), and
checking_task_status.html; DOMAIN.md §2.4 and §7 (3.1) summarise them.

Roles. The *requester* is whoever asked for the service (Task.requester's side: a case manager, an
EHR, the HL7 feed); the *owner* is the receiving organization (Task.owner). Who may set a status:

| status           | set by                  | from                                               |
|------------------|-------------------------|----------------------------------------------------|
| draft            | requester               | (creation)                                         |
| requested        | requester               | (creation), draft                                  |
| received         | owner                   | requested                                          |
| accepted         | owner                   | requested, received                                |
| rejected         | owner                   | requested, received                                |
| in-progress      | owner                   | accepted, on-hold                                  |
| on-hold          | owner                   | accepted, in-progress                              |
| completed        | owner                   | accepted, in-progress, on-hold                     |
| failed           | owner                   | accepted, in-progress, on-hold                     |
| cancelled        | requester or owner      | draft*, requested, received, accepted, in-progress, on-hold |
| entered-in-error | requester               | any status but entered-in-error                    |

Decisions where the IG leaves room (documented here, tested in tests/unit/referral):
- `received` is not in Gravity's value set (it drops `ready` and `received`) but CareBridge
  keeps it for BSeR's harmonized state machine (DOMAIN.md §7 3.2, "2.0 Created -> received"):
  the receiving organization may acknowledge receipt before deciding. `ready` stays out.
- rejected, cancelled, failed and completed are final: no way out but entered-in-error (the
  diagram's arrows between in-progress and cancelled are read as in-progress -> cancelled; a
  cancelled referral that is wanted again is a new referral). *A draft may be cancelled by the
  requester (the FHIR Task state machine allows it; the diagram is silent).
- Creating a Task is the requester's act (draft or requested); the owner starts acting on it.
- An update that keeps the status is allowed to either side (notes, an output added after
  completion), except on entered-in-error, which is final.
- Gravity says statusReason.text "should be included" for rejected, cancelled, on-hold and
  failed; CareBridge requires it (the referrer needs the reason to act). Completion requires an
  output saying what was delivered: the IG's PerformedActivityReference (type
  `resulting-activity`, valueReference to the Procedure) or PerformedActivityCode
  (valueCodeableConcept); a valueString describing the service is accepted too.
- Task.owner is required (no "open" Tasks for any organization to claim) and may change only
  by the requester, and only while the Task is draft or requested. intent, code, focus, for,
  requester and authoredOn never change: another referral is another Task.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal

from shared.errors import BusinessRuleViolation, Forbidden, InvalidInput

Role = Literal["requester", "owner"]
REQUESTER: Final[Role] = "requester"
OWNER: Final[Role] = "owner"
_ROLE_NAMES: Final = {REQUESTER: "requester", OWNER: "receiving organization (Task.owner)"}

#: http://hl7.org/fhir/R4/codesystem-task-code.html: the Gravity profile fixes Task.code to fulfill.
TASK_CODE_SYSTEM: Final = "http://hl7.org/fhir/CodeSystem/task-code"
FULFILL: Final = {"system": TASK_CODE_SYSTEM, "code": "fulfill", "display": "Fulfill the focal request"}
#: SDOHCC temporary codes: the type of a Task output naming what was done.
SDOHCC_TEMPORARY_CODES: Final = (
    "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes"
)
RESULTING_ACTIVITY: Final = {
    "system": SDOHCC_TEMPORARY_CODES,
    "code": "resulting-activity",
    "display": "Resulting Activity",
}

_BOTH: Final = frozenset({REQUESTER, OWNER})
_REQ: Final = frozenset({REQUESTER})
_OWN: Final = frozenset({OWNER})

#: Who may set each status (the IG's "Set By" column, plus `received` for BSeR).
SET_BY: Final[Mapping[str, frozenset[Role]]] = {
    "draft": _REQ,
    "requested": _REQ,
    "received": _OWN,
    "accepted": _OWN,
    "rejected": _OWN,
    "in-progress": _OWN,
    "on-hold": _OWN,
    "completed": _OWN,
    "failed": _OWN,
    "cancelled": _BOTH,
    "entered-in-error": _REQ,
}
STATUSES: Final = frozenset(SET_BY)

_ERROR = "entered-in-error"
#: The statuses each status may move to; None is the creation of the Task.
NEXT: Final[Mapping[str | None, frozenset[str]]] = {
    None: frozenset({"draft", "requested"}),
    "draft": frozenset({"requested", "cancelled", _ERROR}),
    "requested": frozenset({"received", "accepted", "rejected", "cancelled", _ERROR}),
    "received": frozenset({"accepted", "rejected", "cancelled", _ERROR}),
    "accepted": frozenset({"in-progress", "on-hold", "completed", "failed", "cancelled", _ERROR}),
    "in-progress": frozenset({"on-hold", "completed", "failed", "cancelled", _ERROR}),
    "on-hold": frozenset({"in-progress", "completed", "failed", "cancelled", _ERROR}),
    "rejected": frozenset({_ERROR}),
    "cancelled": frozenset({_ERROR}),
    "failed": frozenset({_ERROR}),
    "completed": frozenset({_ERROR}),
    _ERROR: frozenset(),
}
#: Sent and waiting for the receiving organization to accept (the acceptance SLA runs).
AWAITING_ACCEPTANCE: Final = frozenset({"requested", "received"})
#: Not yet ended: the referral's Task is still the one to update.
OPEN: Final = frozenset({"draft", "requested", "received", "accepted", "in-progress", "on-hold"})
#: Statuses that need statusReason.text.
NEEDS_REASON: Final = frozenset({"rejected", "cancelled", "on-hold", "failed"})
#: Elements fixed once the Task exists.
_FIXED: Final = ("intent", "code", "focus", "for", "requester", "authoredOn")
#: Statuses in which the requester may still send the referral somewhere else.
_REASSIGNABLE: Final = frozenset({"draft", "requested"})
_PROFILE: Final = "Gravity SDOHCC Task for Referral Management"


# --- references --------------------------------------------------------------------------------


def reference_id(value: Any, resource_type: str) -> str | None:
    """The id of a relative reference `{"reference": "Type/id"}` (or `Type/id/_history/n`)."""
    reference = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(reference, str):
        return None
    parts = reference.split("/")
    if len(parts) == 4 and parts[2] == "_history":
        parts = parts[:2]
    if len(parts) != 2 or parts[0] != resource_type or not parts[1]:
        return None
    return parts[1]


def owner_organization(task: Mapping[str, Any]) -> str | None:
    """The id of the Organization that owns the Task (None when the owner is no Organization)."""
    return reference_id(task.get("owner"), "Organization")


def _reference(value: Mapping[str, Any]) -> dict[str, Any]:
    """A reference kept to what identifies it (reference, type, display)."""
    return {k: value[k] for k in ("reference", "type", "display") if k in value}


# --- roles ----------------------------------------------------------------------------------------


def role_of(task: Mapping[str, Any], organization: str | None) -> Role:
    """The caller's role on `task` (for an update: the stored version).

    A caller with no organization (a user/ or system/ token, the service itself) acts for the
    requester. A clinic's token (its organization claim) is the owner when Task.owner is its
    Organization, and may do nothing to a Task addressed to anyone else (the gateway hides such
    Tasks from it already; this is the second line).
    """
    if organization is None:
        return REQUESTER
    if owner_organization(task) == organization:
        return OWNER
    raise Forbidden(
        f"This Task is not addressed to Organization/{organization}: only its requester and its owner "
        "(Task.owner) may change it",
        expression=["Task.owner"],
    )


# --- the profile ---------------------------------------------------------------------------------


def check_referral_task(task: Mapping[str, Any]) -> None:
    """The elements the Gravity profile requires (InvalidInput, 400, naming the element)."""
    status = task.get("status")
    if status not in STATUSES:
        raise InvalidInput(
            f"Task.status {status!r} is not a referral Task status (SDOHCC ReferralTaskStatus, plus "
            f"received): use one of {', '.join(sorted(STATUSES))}",
            expression=["Task.status"],
        )
    if task.get("intent") != "order":
        raise InvalidInput(f"Task.intent must be 'order' ({_PROFILE})", expression=["Task.intent"])
    codings = (task.get("code") or {}).get("coding") if isinstance(task.get("code"), dict) else None
    if not any(
        isinstance(c, dict) and c.get("system") == TASK_CODE_SYSTEM and c.get("code") == "fulfill"
        for c in codings or []
    ):
        raise InvalidInput(
            f"Task.code must be fulfill ({TASK_CODE_SYSTEM}) ({_PROFILE})", expression=["Task.code"]
        )
    if reference_id(task.get("focus"), "ServiceRequest") is None:
        raise InvalidInput(
            "Task.focus must reference the ServiceRequest the Task fulfils (ServiceRequest/[id])",
            expression=["Task.focus"],
        )
    if reference_id(task.get("for"), "Patient") is None:
        raise InvalidInput(
            "Task.for must reference the Patient the referral is for (Patient/[id])", expression=["Task.for"]
        )
    if not isinstance(task.get("authoredOn"), str) or not task["authoredOn"]:
        raise InvalidInput(f"Task.authoredOn is required ({_PROFILE})", expression=["Task.authoredOn"])
    for element in ("requester", "owner"):
        value = task.get(element)
        if not (isinstance(value, dict) and isinstance(value.get("reference"), str) and value["reference"]):
            raise InvalidInput(
                f"Task.{element} must be a reference"
                + (
                    " to the receiving organization (CareBridge has no open Tasks)"
                    if element == "owner"
                    else ""
                ),
                expression=[f"Task.{element}"],
            )


# --- transitions ---------------------------------------------------------------------------------


def check_transition(before: str | None, after: str, role: Role) -> None:
    """Whether `role` may take a Task from status `before` (None: creating it) to `after`.

    Forbidden (403) when the status is not the role's to set; BusinessRuleViolation (422) when
    the state machine has no such edge.
    """
    if after not in STATUSES:
        raise InvalidInput(f"Task.status {after!r} is not a referral Task status", expression=["Task.status"])
    if before == after:
        if before == _ERROR:
            raise BusinessRuleViolation(
                "The Task is entered-in-error; it can no longer change", expression=["Task.status"]
            )
        return
    if role not in SET_BY[after]:
        setters = " or ".join(_ROLE_NAMES[r] for r in sorted(SET_BY[after]))
        raise Forbidden(
            f"Task.status {after} is set by the {setters}, not by the {_ROLE_NAMES[role]} ({_PROFILE})",
            expression=["Task.status"],
        )
    allowed = NEXT.get(before, frozenset())
    if after not in allowed:
        where = "A new referral Task" if before is None else f"A referral Task that is {before}"
        options = ", ".join(sorted(allowed)) or "nothing (it is final)"
        raise BusinessRuleViolation(
            f"{where} cannot become {after}; it may become: {options}", expression=["Task.status"]
        )


def delivered(task: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The outputs that say what was delivered: a reference (the Procedure), a code or a text."""
    out = []
    for output in task.get("output") or []:
        if not isinstance(output, dict):
            continue
        reference = output.get("valueReference")
        concept = output.get("valueCodeableConcept")
        text = output.get("valueString")
        if (
            (isinstance(reference, dict) and reference.get("reference"))
            or (isinstance(concept, dict) and (concept.get("coding") or concept.get("text")))
            or (isinstance(text, str) and text.strip())
        ):
            out.append(output)
    return out


def check_status_requirements(task: Mapping[str, Any]) -> None:
    """What the current status needs: a reason, or (completed) what was delivered (422)."""
    status = task.get("status")
    if status in NEEDS_REASON:
        reason = task.get("statusReason")
        text = reason.get("text") if isinstance(reason, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise BusinessRuleViolation(
                f"Task.statusReason.text is required when a referral Task is {status}: say why ({_PROFILE})",
                expression=["Task.statusReason.text"],
            )
    if status == "completed" and not delivered(task):
        raise BusinessRuleViolation(
            "Task.output is required to complete a referral Task: what was delivered (type "
            "resulting-activity with a valueReference to the Procedure, or a valueCodeableConcept or "
            "valueString naming the service)",
            expression=["Task.output"],
        )


def _essence(element: str, value: Any) -> Any:
    """What must not change of a fixed element (displays may be added or corrected)."""
    if isinstance(value, dict) and "reference" in value:
        return value.get("reference")
    if element == "code" and isinstance(value, dict):
        return sorted(
            (str(c.get("system")), str(c.get("code")))
            for c in value.get("coding") or []
            if isinstance(c, dict)
        )
    return value


def check_unchanged(before: Mapping[str, Any], after: Mapping[str, Any], role: Role) -> None:
    """An update keeps the referral it is about; only the requester reassigns, and only early."""
    for element in _FIXED:
        if _essence(element, before.get(element)) != _essence(element, after.get(element)):
            raise BusinessRuleViolation(
                f"Task.{element} cannot change once the Task exists (another referral is another Task)",
                expression=[f"Task.{element}"],
            )
    if _essence("owner", before.get("owner")) == _essence("owner", after.get("owner")):
        return
    if role != REQUESTER:
        raise Forbidden(
            "Only the requester may send a referral Task to another organization (Task.owner)",
            expression=["Task.owner"],
        )
    if before.get("status") not in _REASSIGNABLE:
        raise BusinessRuleViolation(
            f"Task.owner can change only while the Task is draft or requested, not {before.get('status')}",
            expression=["Task.owner"],
        )


def check_task_write(before: Mapping[str, Any] | None, after: Mapping[str, Any], role: Role) -> None:
    """Every rule a create (`before` None) or update of a referral Task must meet, in the order a
    client fixes them: the profile (400), the role and the transition (403, 422), what the
    status needs (422)."""
    check_referral_task(after)
    check_transition(None if before is None else before.get("status"), after["status"], role)
    if before is not None:
        check_unchanged(before, after, role)
    check_status_requirements(after)


# --- the referral and its Task ---------------------------------------------------------------------


def is_referral(service_request: Mapping[str, Any]) -> bool:
    """A ServiceRequest that asks someone to act now: active, an order, with a performer."""
    return (
        service_request.get("status") == "active"
        and service_request.get("intent") == "order"
        and bool(service_request.get("performer"))
    )


def referral_owner(service_request: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first performer that is an Organization: the receiving organization."""
    for performer in service_request.get("performer") or []:
        if reference_id(performer, "Organization") is not None:
            return _reference(performer)
    return None


def new_referral_task(
    service_request: Mapping[str, Any], now: datetime, owner: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The Task for Referral Management of a referral ServiceRequest: requested, owned by the
    receiving organization (`owner`, else the SR's first Organization performer), requested by
    the SR's requester, for its subject, authored `now`."""
    request_id = service_request.get("id")
    if not isinstance(request_id, str):
        raise ValueError("the ServiceRequest must be stored (have an id) before its Task is made")
    owner = owner if owner is not None else referral_owner(service_request)
    if owner is None:
        raise BusinessRuleViolation(
            "ServiceRequest.performer names no Organization to receive the referral",
            expression=["ServiceRequest.performer"],
        )
    requester = service_request.get("requester")
    if not (isinstance(requester, dict) and requester.get("reference")):
        raise BusinessRuleViolation(
            "ServiceRequest.requester is required for a referral: it becomes Task.requester, whom the "
            f"receiving organization answers ({_PROFILE})",
            expression=["ServiceRequest.requester"],
        )
    subject = service_request.get("subject")
    if reference_id(subject, "Patient") is None:
        raise BusinessRuleViolation(
            "ServiceRequest.subject must be the Patient referred (Patient/[id])",
            expression=["ServiceRequest.subject"],
        )
    assert isinstance(subject, dict)
    task: dict[str, Any] = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [dict(FULFILL)]},
        "focus": {"reference": f"ServiceRequest/{request_id}"},
        "for": _reference(subject),
        "authoredOn": now.isoformat(timespec="seconds"),
        "requester": _reference(requester),
        "owner": _reference(owner),
    }
    if service_request.get("priority"):
        task["priority"] = service_request["priority"]  # both are RequestPriority
    return task


def cancelled(task: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """The next version of `task`, cancelled with `reason` (e.g. its ServiceRequest was revoked)."""
    return {**task, "status": "cancelled", "statusReason": {"text": reason}}
