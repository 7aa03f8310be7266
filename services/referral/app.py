"""The referral service app: wires the store, the bus, the consumers and the routes."""

from __future__ import annotations

from fastapi import FastAPI

from services.referral import handlers
from services.referral.settings import Settings
from shared.app import create_service_app
from shared.events import topics
from shared.fhir.ownership import OWNED_TYPES
from shared.service import ConsumerSpec, ServiceRuntime


def create_app(settings: Settings) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        produces=(topics.REFERRAL,),
        consumers=(ConsumerSpec("patients", (topics.PATIENT,), handlers.on_patient_event),),
    )
    return create_service_app(runtime, OWNED_TYPES["referral"])
