"""Screening in intake: every QuestionnaireResponse write is checked, scored and recorded.

- The response must fit its Questionnaire (domain/responses.py): an unknown Questionnaire, an
  unknown item, a wrong answer type, an answer that is not an option, a missing required item
  are refused with an OperationOutcome naming the item.
- A completed response to a known instrument (domain/instruments.py; ours or a public
  Questionnaire it recognises) is scored on the server (domain/scoring.py). A total the client
  sent is only compared: a mismatch is refused or noted, per `screening_client_total`.
- The results are stored as US Core screening Observations (domain/observations.py) with
  deterministic ids, so scoring the same response again rewrites the same resources.
- Triage (domain/triage.py): a safety signal raises a Flag and RISK_IDENTIFIED_EVENT (careplan
  adds a same-day activity); SDOH positives publish SDOH_NEEDS_EVENT for referral.
- The same response posted twice is one response: its fingerprint (the content, without id and
  meta) names the first, which is returned (200) instead of a second set of results.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from services.intake.domain.observations import screening_observations
from services.intake.domain.responses import check_response, questionnaire_reference
from services.intake.domain.scoring import (
    Score,
    answers_by_code,
    client_total,
    instrument_for,
    option_scores,
    score_response,
)
from services.intake.domain.triage import flag_for, risk_signals, sdoh_needs
from shared.errors import BusinessRuleViolation, Gone, NotFound
from shared.events import topics
from shared.fhir.events import enqueue_domain_event
from shared.fhir.patient_merge import without_meta
from shared.fhir.projections import read_projection
from shared.fhir.rest import FhirRest, Proceed, WriteHooks, Written
from shared.settings import IntakeSettings
from shared.store import Transaction

log = logging.getLogger(__name__)

#: Projection: key the fingerprint of a response's content, data the QuestionnaireResponse id.
RESPONSE_FINGERPRINTS = "questionnaire-response-fingerprints"
#: Extension on a safety Flag: the same-day action the triage rule recommends (careplan reads it).
RECOMMENDED_ACTION = "http://carebridge.example/fhir/StructureDefinition/recommended-action"
_SCORED_STATUSES = frozenset({"completed", "amended"})


class Screening(WriteHooks):
    """The QuestionnaireResponse write hooks of intake (see the module docstring)."""

    def __init__(self, settings: IntakeSettings) -> None:
        self.prorate = settings.screening_prorate_one_missing
        self.reject_client_total = settings.screening_client_total == "reject"

    async def create(
        self,
        rest: FhirRest,
        tx: Transaction,
        resource: dict[str, Any],
        proceed: Proceed,
        *,
        id_promised: bool,
    ) -> Written:
        questionnaire = await questionnaire_of(rest, tx, resource)
        check_response(questionnaire, resource)
        fingerprint = _fingerprint(resource)
        await tx.lock_conditional_key("QuestionnaireResponse", fingerprint, "same response content")
        found = await read_projection(rest.store, tx, RESPONSE_FINGERPRINTS, fingerprint)
        earlier = found[1].decode() if found is not None and found[1] else None
        if earlier is not None and not id_promised:
            try:
                stored = await tx.read("QuestionnaireResponse", earlier)
                return Written(
                    stored, 200, f"The same response is QuestionnaireResponse/{earlier}; not recorded again"
                )
            except (NotFound, Gone):
                pass
        written = await proceed(resource)
        await tx.put_projection(RESPONSE_FINGERPRINTS, fingerprint, 1, written.stored.id.encode())
        await self.record_results(rest, tx, written.stored.id, resource, questionnaire, first=True)
        return written

    async def update(
        self, rest: FhirRest, tx: Transaction, resource: dict[str, Any], proceed: Proceed
    ) -> Written:
        questionnaire = await questionnaire_of(rest, tx, resource)
        check_response(questionnaire, resource)
        written = await proceed(resource)
        await self.record_results(
            rest, tx, written.stored.id, resource, questionnaire, first=written.status == 201
        )
        return written

    async def record_results(
        self,
        rest: FhirRest,
        tx: Transaction,
        response_id: str,
        response: dict[str, Any],
        questionnaire: dict[str, Any],
        *,
        first: bool,
    ) -> Score | None:
        """Score a completed response to a known instrument and store what it shows."""
        instrument = instrument_for(questionnaire)
        patient = (response.get("subject") or {}).get("reference")
        if instrument is None or response.get("status") not in _SCORED_STATUSES:
            return None
        if not isinstance(patient, str) or not patient.startswith("Patient/"):
            raise BusinessRuleViolation(
                "A scored QuestionnaireResponse needs a Patient subject",
                expression=["QuestionnaireResponse.subject"],
            )
        answers = answers_by_code(questionnaire, response)
        score = score_response(
            instrument,
            answers,
            prorate=self.prorate,
            sex=await _gender(tx, patient),
            questionnaire_scores=option_scores(questionnaire),
        )
        sent = client_total(questionnaire, response, instrument)
        mismatch = sent is not None and score.total is not None and sent != score.total
        if mismatch and self.reject_client_total:
            raise BusinessRuleViolation(
                f"The response's total ({sent}) is not the total of its answers ({score.total}); "
                "send the answers and let the server score them",
                expression=["QuestionnaireResponse.item"],
            )
        effective = str(response.get("authored") or datetime.now(UTC).isoformat(timespec="seconds"))
        observations = screening_observations(
            score,
            response_id=response_id,
            patient_reference=patient,
            effective=effective,
            performer=[response["author"]] if isinstance(response.get("author"), dict) else None,
            encounter=response.get("encounter") if isinstance(response.get("encounter"), dict) else None,
        )
        for observation in observations:
            if mismatch:
                observation = _noted(observation, score, sent)
            await rest.update(tx, "Observation", observation["id"], observation)
        await self._triage(rest, tx, score, response_id, patient, effective, first=first)
        return score

    async def _triage(
        self,
        rest: FhirRest,
        tx: Transaction,
        score: Score,
        response_id: str,
        patient: str,
        start: str,
        *,
        first: bool,
    ) -> None:
        for signal in risk_signals(score):
            flag = flag_for(signal, patient_reference=patient, response_id=response_id, start=start)
            extensions = [e for e in flag.get("extension") or [] if e.get("url") != RECOMMENDED_ACTION]
            flag["extension"] = [*extensions, {"url": RECOMMENDED_ACTION, "valueCode": signal.action}]
            try:
                await tx.read("Flag", flag["id"])
                continue  # raised when this response was first scored
            except (NotFound, Gone):
                stored = (await rest.update(tx, "Flag", flag["id"], flag)).stored
            log.info("Safety flag %s raised (%s)", stored.id, signal.code)
            await _publish(tx, rest, topics.RISK_IDENTIFIED_EVENT, patient, orjson.loads(stored.content))
        needs = sdoh_needs(score)
        if needs and first:
            await _publish(
                tx, rest, topics.SDOH_NEEDS_EVENT, patient, needs_parameters(patient, response_id, needs)
            )


def needs_parameters(patient: str, response_id: str, needs: list[Any]) -> dict[str, Any]:
    """SDOH needs as Parameters: the Patient, the response, and one `need` per Gravity category."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": patient}},
            {
                "name": "questionnaireResponse",
                "valueReference": {"reference": f"QuestionnaireResponse/{response_id}"},
            },
            *({"name": "need", "valueCoding": need.coding()} for need in needs),
        ],
    }


async def questionnaire_of(rest: FhirRest, tx: Transaction, response: dict[str, Any]) -> dict[str, Any]:
    """The Questionnaire a response answers, by canonical URL (and version when it names one)."""
    url, version = questionnaire_reference(response)
    criteria = [("url", url)] + ([("version", version)] if version else [])
    found = await rest.searcher.matches(
        rest.store, "Questionnaire", criteria, connection=await tx.sql_connection(), limit=20
    )
    if not found:
        raise BusinessRuleViolation(
            f"Unknown Questionnaire {url}{'|' + version if version else ''}: "
            "load it first (POST /Questionnaire)",
            expression=["QuestionnaireResponse.questionnaire"],
            issue_code="not-found",
        )
    # Several versions and none named: the one stored last.
    latest = max(found, key=lambda s: s.last_updated)
    questionnaire: dict[str, Any] = orjson.loads(latest.content)
    return questionnaire


async def _gender(tx: Transaction, patient: str) -> str | None:
    try:
        gender = orjson.loads((await tx.read("Patient", patient[len("Patient/") :])).content).get("gender")
    except (NotFound, Gone):
        return None
    return gender if isinstance(gender, str) else None


def _noted(observation: dict[str, Any], score: Score, sent: int | None) -> dict[str, Any]:
    if not isinstance(observation.get("valueQuantity"), dict):
        return observation
    note = {"text": f"The response carried a total of {sent}; the total of its answers is {score.total}."}
    return {**observation, "note": [*(observation.get("note") or []), note]}


def _fingerprint(response: dict[str, Any]) -> str:
    content = {k: v for k, v in response.items() if k not in ("id", "meta", "text")}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def _publish(
    tx: Transaction, rest: FhirRest, event_type: str, patient: str, data: dict[str, Any]
) -> None:
    await enqueue_domain_event(
        tx,
        rest.settings,
        topic=topics.TRIAGE,
        event_type=event_type,
        subject=patient,
        key=patient[len("Patient/") :],
        data=data,
    )


#: The instruments' Questionnaires the project ships (domain/instruments.py is their source).
QUESTIONNAIRES_DIR = Path(__file__).parent / "questionnaires"


async def load_questionnaires(rest: FhirRest) -> list[str]:
    """Store the shipped Questionnaires (by url and version), leaving unchanged ones alone, so
    they are served by `/fhir/Questionnaire` and responses to them can be checked and scored."""
    loaded = []
    async with rest.store.transaction() as tx:
        for path in sorted(QUESTIONNAIRES_DIR.glob("*.json")):
            questionnaire = orjson.loads(path.read_bytes())
            criteria = [("url", questionnaire["url"]), ("version", questionnaire["version"])]
            found = await rest.searcher.matches(
                rest.store, "Questionnaire", criteria, connection=await tx.sql_connection(), limit=2
            )
            if found:
                stored = orjson.loads(found[0].content)
                if without_meta({**stored, "id": None}) == without_meta({**questionnaire, "id": None}):
                    continue
            written = await rest.conditional_update(tx, "Questionnaire", criteria, questionnaire)
            loaded.append(written.stored.id)
    return loaded
