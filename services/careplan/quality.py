"""The FUH and FUM measures over what careplan holds: `Measure/fuh/$evaluate-measure` and
`Measure/fum/$evaluate-measure` (R4 measure-operation-evaluate-measure.html).

This module only gathers: stays, ED visits and follow-up visits from followup.py's tables, the
members from careplan's Patient projection; `domain/measures.py` decides and builds the
MeasureReport. The Measure resources themselves are loaded at start so `/fhir/Measure/fuh` reads.

What careplan does not know it says: hospice is not fed to CareBridge, so no hospice exclusion is
applied; enrollment is not either, so continuous enrollment is assumed (see the Measure text).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from services.careplan.domain import measures
from services.careplan.domain.measure_report import measure_report
from services.careplan.domain.valuesets import (
    ACUTE_INPATIENT,
    EMERGENCY,
    FOLLOW_UP_SETTINGS,
    NONACUTE_INPATIENT,
    VISIT_HAPPENED,
    is_intentional_self_harm,
    is_mental_health_diagnosis,
    is_mental_illness,
)
from services.careplan.encounters import care_conditions, care_diagnoses, care_encounters
from services.careplan.handlers import PATIENTS
from shared.errors import Gone, InvalidInput, NotFound
from shared.fhir.rest import FhirRest, OperationCall, RestResponse
from shared.fhir.rest.messages import json_object

#: How far around the period events are read: readmissions and follow-ups up to 31 days on.
_MARGIN = timedelta(days=62)

_PROPORTION = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring", "code": "proportion"}]
}
_INCREASE = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation", "code": "increase"}
    ]
}

MEASURES: dict[str, dict[str, Any]] = {
    "fuh": {
        "resourceType": "Measure",
        "id": "fuh",
        "url": measures.FUH_MEASURE_URL,
        "name": "FollowUpAfterHospitalizationForMentalIllness",
        "title": "Follow-Up After Hospitalization for Mental Illness (FUH), as CareBridge computes it",
        "status": "active",
        "description": (
            "Acute inpatient discharges, age 6 and older, with a principal diagnosis of mental illness "
            "or intentional self-harm, discharged from the period start to 30 days before its end; a "
            "follow-up visit within 7 and within 30 days after discharge (not on the discharge date). "
            "Source: HEDIS FUH "
            "as summarised in NCQA-based tip sheets (DOMAIN.md 2.1). Hospice and enrollment are not known to "
            "CareBridge and are not applied."
        ),
        "scoring": _PROPORTION,
        "improvementNotation": _INCREASE,
    },
    "fum": {
        "resourceType": "Measure",
        "id": "fum",
        "url": measures.FUM_MEASURE_URL,
        "name": "FollowUpAfterEmergencyDepartmentVisitForMentalIllness",
        "title": "Follow-Up After ED Visit for Mental Illness (FUM), as CareBridge computes it",
        "status": "active",
        "description": (
            "ED visits, age 6 and older, with a principal diagnosis of mental illness or intentional "
            "self-harm (with a mental-health diagnosis); the first visit in any 31 days; not followed by an "
            "inpatient admission within 30 days; a follow-up with a mental-health diagnosis within 7 days "
            "(8 total days) and 30 days (31 total days), same day counting. "
            "Source: HEDIS FUM tip sheets (DOMAIN.md 2.2)."
        ),
        "scoring": _PROPORTION,
        "improvementNotation": _INCREASE,
    },
}


async def load_measures(rest: FhirRest) -> None:
    """Store the Measure definitions under their ids (update-as-create; unchanged is no write)."""
    async with rest.store.transaction() as tx:
        for measure_id, measure in MEASURES.items():
            try:
                held = orjson.loads((await tx.read("Measure", measure_id)).content)
            except (NotFound, Gone):
                held = None
            if held is not None and {k: v for k, v in held.items() if k != "meta"} == measure:
                continue
            await rest.update(tx, "Measure", measure_id, measure)


def operations() -> dict[tuple[str, str], Any]:
    return {("Measure", "evaluate-measure"): evaluate_measure}


async def evaluate_measure(call: OperationCall) -> RestResponse:
    measure_id = call.id
    if measure_id not in MEASURES:
        raise NotFound(f"No Measure {measure_id!r}: CareBridge evaluates fuh and fum")
    query = _inputs(call)
    period_start = _date_param(query, "periodStart")
    period_end = _date_param(query, "periodEnd")
    if period_end < period_start:
        raise InvalidInput("periodEnd is before periodStart", expression=["periodEnd"])
    report_type = str(query.get("reportType") or "summary")
    if report_type not in ("summary", "subject-list"):
        raise InvalidInput("reportType must be summary or subject-list", expression=["reportType"])
    data = await gather(call.rest, period_start, period_end)
    if measure_id == "fuh":
        result = measures.evaluate_fuh(period_start, period_end, data.members, data.stays, data.visits)
    else:
        result = measures.evaluate_fum(
            period_start, period_end, data.members, data.ed_visits, data.stays, data.visits
        )
    report = measure_report(
        result,
        measure_url=str(MEASURES[measure_id]["url"]),
        period_start=period_start,
        period_end=period_end,
        report_type="subject-list" if report_type == "subject-list" else "summary",
        generated=datetime.now(UTC),
    )
    return RestResponse(200, orjson.dumps(report))


def _inputs(call: OperationCall) -> dict[str, Any]:
    """GET query parameters, or a POSTed Parameters (valueDate / valueString / valueCode)."""
    query: dict[str, Any] = dict(call.request.params)
    body = call.request.resource if call.request.resource is not None else None
    if body is None and call.request.body:
        body = json_object(call.request.body)
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for parameter in body.get("parameter") or []:
            if isinstance(parameter, dict) and parameter.get("name"):
                value = next((v for k, v in parameter.items() if k.startswith("value")), None)
                query.setdefault(str(parameter["name"]), value)
    return query


def _date_param(query: dict[str, Any], name: str) -> date:
    value = query.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    if not value:
        raise InvalidInput(f"$evaluate-measure needs {name} (a date)", expression=[name])
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise InvalidInput(f"{name} must be a date (YYYY-MM-DD), not {value!r}", expression=[name]) from None


class Gathered:
    def __init__(self) -> None:
        self.members: list[measures.Member] = []
        self.stays: list[measures.Stay] = []
        self.ed_visits: list[measures.EdVisit] = []
        self.visits: list[measures.Visit] = []


async def gather(rest: FhirRest, period_start: date, period_end: date) -> Gathered:
    start = datetime.combine(period_start, time(), UTC) - _MARGIN
    end = datetime.combine(period_end, time(), UTC) + _MARGIN
    e = care_encounters
    out = Gathered()
    async with rest.store.connect() as connection:
        rows = (
            await connection.execute(
                sa.select(e).where(
                    e.c.patient_id != "",
                    sa.or_(e.c.start_at.between(start, end), e.c.end_at.between(start, end)),
                )
            )
        ).all()
        codes = await _codes(connection, [r.ref for r in rows])
        patients = sorted({r.patient_id for r in rows})
        out.members = await _members(rest, connection, patients)
    for row in rows:
        principal = codes.get((row.ref, row.principal_condition), []) if row.principal_condition else []
        every = [c for (ref, _), cs in codes.items() if ref == row.ref for c in cs] + [
            c for c in (row.codes or "").split(",") if c
        ]
        _classify(out, row, principal, every)
    return out


def _classify(out: Gathered, row: Any, principal: list[str], every: list[str]) -> None:
    ident = row.ref.partition("/")[2]
    happened = row.status in VISIT_HAPPENED
    if row.class_code in ACUTE_INPATIENT | NONACUTE_INPATIENT and row.status == "finished" and row.end_at:
        out.stays.append(
            measures.Stay(
                id=ident,
                patient_id=row.patient_id,
                admitted=(row.start_at or row.end_at).date(),
                discharged=row.end_at.date(),
                acute=row.class_code in ACUTE_INPATIENT,
                principal_mental_health=any(is_mental_health_diagnosis(c) for c in principal),
            )
        )
    elif row.class_code in EMERGENCY and happened and row.start_at:
        out.ed_visits.append(
            measures.EdVisit(
                id=ident,
                patient_id=row.patient_id,
                on=row.start_at.date(),
                principal_mental_illness=any(is_mental_illness(c) for c in principal),
                principal_self_harm=any(is_intentional_self_harm(c) for c in principal),
                any_mental_illness=any(is_mental_illness(c) for c in every),
            )
        )
    elif row.class_code in FOLLOW_UP_SETTINGS and happened and row.start_at:
        out.visits.append(
            measures.Visit(
                id=row.ref,
                patient_id=row.patient_id,
                on=row.start_at.date(),
                qualifying_setting=True,
                mental_health_diagnosis=any(is_mental_health_diagnosis(c) for c in every),
                mental_health_provider=False,
            )
        )


async def _codes(connection: Any, refs: list[str]) -> dict[tuple[str, str], list[str]]:
    """ICD-10 codes by (encounter ref, condition id)."""
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    d, c = care_diagnoses, care_conditions
    for chunk in _chunks(refs, 500):
        rows = await connection.execute(
            sa.select(d.c.encounter_ref, d.c.condition_id, c.c.codes)
            .join(c, c.c.condition_id == d.c.condition_id)
            .where(d.c.encounter_ref.in_(chunk))
        )
        for row in rows:
            out[(row.encounter_ref, row.condition_id)].extend(x for x in row.codes.split(",") if x)
    return out


async def _members(rest: FhirRest, connection: Any, patient_ids: list[str]) -> list[measures.Member]:
    p = rest.store.tables.projections
    members = []
    for chunk in _chunks(patient_ids, 500):
        rows = await connection.execute(
            sa.select(p.c.key, p.c.data).where(p.c.name == PATIENTS, p.c.key.in_(chunk))
        )
        for row in rows:
            patient = orjson.loads(row.data)
            members.append(
                measures.Member(
                    patient_id=row.key,
                    birth_date=_date(patient.get("birthDate")),
                    died_on=_death(patient),
                )
            )
    return members


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None  # a birth year or month alone cannot show an age on a given day
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _death(patient: dict[str, Any]) -> date | None:
    """deceasedDateTime's date; deceasedBoolean true without a date counts as a death before
    any period end (date.min), so the member is excluded rather than counted as missed."""
    if (when := _date(patient.get("deceasedDateTime"))) is not None:
        return when
    return date.min if patient.get("deceasedBoolean") is True else None


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
