"""The intake service: Patient registration and matching, screening instruments and risk triage.

Wires the store, bus, hooks and operations; the clinical logic lives in `domain/`.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.intake import api, handlers, patients, screening
from services.intake.settings import Settings
from shared.app import create_service_app
from shared.events import topics
from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest import FhirRest
from shared.service import ConsumerSpec, ServiceRuntime


def create_app(settings: Settings) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        produces=(topics.PATIENT, topics.ENCOUNTER, topics.CLINICAL, topics.TRIAGE, topics.AUDIT),
        extra_migrations=patients.MIGRATIONS,
    )
    identity = patients.PatientIdentity(settings)
    # The routes and the handlers write through the same FHIR interactions (with the same
    # hooks); the runtime hands them its store once the lifespan has opened it.
    rest = FhirRest(
        runtime,
        OWNED_TYPES["intake"],
        hooks={"Patient": identity, "QuestionnaireResponse": screening.Screening(settings)},
        operations=api.operations(identity),
    )
    runtime.on_start = (lambda _runtime: _load_questionnaires(rest),)
    runtime.consumers = (
        ConsumerSpec(
            "hl7", (topics.HL7_TRANSLATED,), handlers.on_hl7_message(rest), accepts=topics.concerns("intake")
        ),
    )
    return create_service_app(runtime, rest)


async def _load_questionnaires(rest: FhirRest) -> None:
    await screening.load_questionnaires(rest)
