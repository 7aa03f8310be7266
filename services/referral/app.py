"""The referral service app: wires the store, the bus, the consumers and the routes."""

from __future__ import annotations

from fastapi import FastAPI

from services.referral import handlers
from services.referral.settings import Settings
from shared.app import create_service_app
from shared.events import topics
from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest import FhirRest
from shared.service import ConsumerSpec, ServiceRuntime


def create_app(settings: Settings) -> FastAPI:
    runtime = ServiceRuntime(settings, produces=(topics.REFERRAL,))
    # The routes and the handlers write through the same FHIR interactions; the runtime hands
    # them its store once the lifespan has opened it.
    rest = FhirRest(runtime, OWNED_TYPES["referral"])
    runtime.consumers = (
        ConsumerSpec("patients", (topics.PATIENT,), handlers.on_patient_event(rest)),
        ConsumerSpec(
            "hl7",
            (topics.HL7_TRANSLATED,),
            handlers.on_hl7_message(rest),
            accepts=topics.concerns("referral"),
        ),
    )
    return create_service_app(runtime, rest)
