"""The intake service: Patient registration, screening instruments and risk triage.

Wires the store, bus and routes; the clinical logic lives in `domain.py`.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.intake import handlers
from services.intake.settings import Settings
from shared.app import create_service_app
from shared.events import topics
from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest import FhirRest
from shared.service import ConsumerSpec, ServiceRuntime


def create_app(settings: Settings) -> FastAPI:
    runtime = ServiceRuntime(settings, produces=(topics.PATIENT, topics.ENCOUNTER, topics.CLINICAL))
    # The handler writes through the same FHIR interactions as the routes; the runtime hands
    # them its store once the lifespan has opened it.
    rest = FhirRest(runtime, OWNED_TYPES["intake"])
    runtime.consumers = (
        ConsumerSpec(
            "hl7", (topics.HL7_TRANSLATED,), handlers.on_hl7_message(rest), accepts=topics.concerns("intake")
        ),
    )
    return create_service_app(runtime, OWNED_TYPES["intake"])
