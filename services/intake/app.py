"""The intake service: Patient registration, screening instruments and risk triage.

Wires the store, bus and routes; the clinical logic lives in `domain.py`.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.intake.settings import Settings
from shared.app import create_service_app
from shared.events import topics
from shared.fhir.ownership import OWNED_TYPES
from shared.service import ServiceRuntime


def create_app(settings: Settings) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        produces=(topics.PATIENT, topics.ENCOUNTER, topics.CLINICAL),
    )
    return create_service_app(runtime, OWNED_TYPES["intake"])
