"""Intake's FHIR operations on Patient (shared/fhir/operations.py lists them): thin adapters
from Parameters to the identity code in patients.py and shared/fhir/patient_merge.py.

- `$match` (R4 patient-operation-match.html): candidates with `search.score` and match-grade.
- `$merge` (R5 patient-operation-merge.html, offered on R4) and `$unmerge` (ours): audited.
- `$match-reviews`, `$resolve-match-review`: the possible duplicates a person decides.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.intake import patients
from services.intake.domain.matching import demographics
from shared.errors import BusinessRuleViolation, InvalidInput, NotFound
from shared.fhir.audit import ACTOR_HEADER, record_audit
from shared.fhir.patient_merge import merge_patients, unmerge_patients
from shared.fhir.rest import FhirRest, Operation, OperationCall, RestResponse
from shared.fhir.rest.messages import json_object
from shared.fhir.search import MAX_COUNT
from shared.fhir.validation import validate_resource
from shared.store import Transaction

#: http://hl7.org/fhir/StructureDefinition/match-grade (R4 patient-operation-match.html)
MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
#: Our extension on a $match entry: the matcher's explanation (features and outcomes, no values).
MATCH_EXPLANATION = "http://carebridge.example/fhir/StructureDefinition/match-explanation"


def operations(identity: patients.PatientIdentity) -> dict[tuple[str, str], Operation]:
    async def match(call: OperationCall) -> RestResponse:
        return await _match(call, identity)

    return {
        ("Patient", "match"): match,
        ("Patient", "merge"): _merge,
        ("Patient", "unmerge"): _unmerge,
        ("Patient", "match-reviews"): _match_reviews,
        ("Patient", "resolve-match-review"): _resolve_match_review,
    }


# --- $match ----------------------------------------------------------------------------------------


async def _match(call: OperationCall, identity: patients.PatientIdentity) -> RestResponse:
    params = _parameters(call)
    resource = _one(params, "resource", "resource")
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        raise InvalidInput(
            "$match needs a Patient in the 'resource' parameter", expression=["Parameters.parameter"]
        )
    validate_resource(resource, "Patient")
    only_certain = _one(params, "onlyCertainMatches", "valueBoolean") is True
    count = _one(params, "count", "valueInteger")
    limit = count if isinstance(count, int) and 0 < count <= MAX_COUNT else 10
    async with call.rest.store.transaction() as tx:
        ranked = await identity.rank(call.rest, tx, demographics(resource), exclude=None)
        ranked = [r for r in ranked if r.decision != "new" and (not only_certain or r.grade == "certain")]
        entries = []
        for result in ranked[:limit]:
            stored = await tx.read("Patient", result.candidate_id)
            entries.append(
                {
                    "fullUrl": f"{call.request.base}/Patient/{result.candidate_id}",
                    "resource": orjson.loads(stored.content),
                    "search": {
                        "extension": [
                            {"url": MATCH_GRADE, "valueCode": result.grade},
                            {"url": MATCH_EXPLANATION, "valueString": result.explain()},
                        ],
                        "mode": "match",
                        "score": round(result.score, 4),
                    },
                }
            )
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
    return RestResponse(200, orjson.dumps(bundle))


# --- $merge and $unmerge --------------------------------------------------------------------------


async def _merge(call: OperationCall) -> RestResponse:
    params = _parameters(call)
    if _one(params, "result-patient", "resource") is not None:
        raise BusinessRuleViolation("result-patient is not supported: update the target first, then merge")
    if _one(params, "delete-source", "valueBoolean") is True:
        raise BusinessRuleViolation("delete-source is not supported: the source is kept, inactive and linked")
    actor = _actor(call)
    async with call.rest.transaction(call.tx) as tx:
        source = await _patient_param(call.rest, tx, params, "source-patient")
        target = await _patient_param(call.rest, tx, params, "target-patient")
        if _one(params, "preview", "valueBoolean") is True:
            message = f"Preview: Patient/{source} would be merged into Patient/{target}"
            return _result(params, message, await tx.read("Patient", target))
        record, written = await merge_patients(call.rest, tx, source, target, actor=actor, origin="fhir")
        if written:
            await _audit(call.rest, tx, "merge", actor, source, target)
        target_now = await tx.read("Patient", target)
    message = f"Merged Patient/{record.source} into Patient/{record.target}; {len(written)} resources changed"
    return _result(params, message, target_now)


async def _unmerge(call: OperationCall) -> RestResponse:
    params = _parameters(call)
    actor = _actor(call)
    reason = _one(params, "reason", "valueString")
    async with call.rest.transaction(call.tx) as tx:
        source = await _patient_param(call.rest, tx, params, "source-patient")
        record, written = await unmerge_patients(
            call.rest, tx, source, actor=actor, reason=reason if isinstance(reason, str) else None
        )
        await _audit(call.rest, tx, "unmerge", actor, source, record.target)
        source_now = await tx.read("Patient", source)
    message = f"Unmerged Patient/{source} from Patient/{record.target}; {len(written)} resources changed"
    return _result(params, message, source_now)


async def _audit(rest: FhirRest, tx: Transaction, subtype: str, actor: str, source: str, target: str) -> None:
    await record_audit(
        tx,
        rest.settings,
        action="U",
        subtype=subtype,
        actor=actor,
        entities=[(f"Patient/{source}", "source"), (f"Patient/{target}", "target")],
        patient=source,
    )


async def _patient_param(rest: FhirRest, tx: Transaction, params: list[dict[str, Any]], name: str) -> str:
    """A Patient named by `<name>` (Reference) or `<name>-identifier` (Identifier)."""
    reference = _one(params, name, "valueReference")
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
        rtype, _, id_ = reference["reference"].partition("/")
        if rtype != "Patient" or not id_:
            raise InvalidInput(
                f"{name} must reference a Patient", expression=[f"Parameters.parameter('{name}')"]
            )
        return id_
    identifier = _one(params, f"{name}-identifier", "valueIdentifier")
    if isinstance(identifier, dict) and identifier.get("value"):
        system = identifier.get("system") or ""
        token = f"{system}|{identifier['value']}" if system else str(identifier["value"])
        found = await rest.searcher.matches(
            rest.store, "Patient", [("identifier", token)], connection=await tx.sql_connection(), limit=2
        )
        if len(found) != 1:
            raise BusinessRuleViolation(
                f"{name}-identifier matches {'no' if not found else 'several'} Patients",
                expression=[f"Parameters.parameter('{name}-identifier')"],
            )
        return found[0].id
    raise InvalidInput(
        f"Name the Patient in {name} or {name}-identifier", expression=["Parameters.parameter"]
    )


def _result(params: list[dict[str, Any]], message: str, patient: Any) -> RestResponse:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": message}],
    }
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "input", "resource": {"resourceType": "Parameters", "parameter": params}},
            {"name": "outcome", "resource": outcome},
            {"name": "result", "resource": orjson.loads(patient.content)},
        ],
    }
    return RestResponse(200, orjson.dumps(body))


# --- match reviews --------------------------------------------------------------------------------


async def _match_reviews(call: OperationCall) -> RestResponse:
    query = dict(call.request.params)
    status = query.get("status") or patients.OPEN
    if status not in (patients.OPEN, patients.MERGED, patients.DISTINCT, "all"):
        raise InvalidInput("status is open, merged, distinct or all", expression=["status"])
    try:
        count = min(int(query.get("_count") or 50), MAX_COUNT)
    except ValueError:
        raise InvalidInput("_count must be a number", expression=["_count"]) from None
    async with call.rest.store.transaction() as tx:
        reviews = await patients.list_reviews(tx, None if status == "all" else status, count)
    body = {"resourceType": "Parameters", "parameter": [patients.review_parameters(r) for r in reviews]}
    return RestResponse(200, orjson.dumps(body))


async def _resolve_match_review(call: OperationCall) -> RestResponse:
    """`review` (the id), `decision` merge | distinct, and for merge `target-patient` (which of
    the two survives; by default the one intake knew first)."""
    params = _parameters(call)
    review_id = _one(params, "review", "valueString")
    decision = _one(params, "decision", "valueCode")
    if decision not in ("merge", "distinct"):
        raise InvalidInput("decision is merge or distinct", expression=["Parameters.parameter('decision')"])
    actor = _actor(call)
    async with call.rest.transaction(call.tx) as tx:
        review = await patients.get_review(tx, str(review_id)) if review_id else None
        if review is None:
            raise NotFound(f"No match review {review_id!r}")
        if review.status != patients.OPEN:
            raise BusinessRuleViolation(f"Match review {review.id} is already {review.status}")
        a, b = review.patients
        if decision == "distinct":
            await patients.close_review(tx, review.id, patients.DISTINCT, actor)
            message = f"Patient/{a} and Patient/{b} are different people; not raised again"
            return _result(params, message, await tx.read("Patient", a))
        target = (
            await _patient_param(call.rest, tx, params, "target-patient")
            if _has(params, "target-patient")
            else None
        )
        target = target or await _older(tx, a, b)
        if target not in (a, b):
            raise InvalidInput("target-patient must be one of the review's two Patients")
        source = b if target == a else a
        await merge_patients(call.rest, tx, source, target, actor=actor, origin="match-review")
        await patients.close_review(tx, review.id, patients.MERGED, actor)
        await _audit(call.rest, tx, "merge", actor, source, target)
        target_now = await tx.read("Patient", target)
    return _result(params, f"Merged Patient/{source} into Patient/{target}", target_now)


async def _older(tx: Transaction, a: str, b: str) -> str:
    first_a = await tx.vread("Patient", a, 1)
    first_b = await tx.vread("Patient", b, 1)
    return a if first_a.last_updated <= first_b.last_updated else b


# --- Parameters ---------------------------------------------------------------------------------------


def _parameters(call: OperationCall) -> list[dict[str, Any]]:
    body = call.request.resource if call.request.resource is not None else json_object(call.request.body)
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidInput("An operation's input is a Parameters resource")
    params = body.get("parameter") or []
    if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
        raise InvalidInput(
            "Parameters.parameter must be a list of objects", expression=["Parameters.parameter"]
        )
    return params


def _one(params: list[dict[str, Any]], name: str, value_key: str) -> Any:
    for p in params:
        if p.get("name") == name:
            return p.get(value_key)
    return None


def _has(params: list[dict[str, Any]], name: str) -> bool:
    return any(p.get("name") in (name, f"{name}-identifier") for p in params)


def _actor(call: OperationCall) -> str:
    return call.request.headers.get(ACTOR_HEADER) or "unknown"
