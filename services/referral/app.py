"""The referral service app: wires the store, the bus, the consumers and the routes."""

from __future__ import annotations

from fastapi import FastAPI

from services.referral import (
    directory,
    handlers,
    matching,
    metrics,
    referrals,
    sla,
    subscription_delivery,
    subscription_operations,
    subscriptions,
)
from services.referral.domain.subscription_endpoints import parse_allowlist
from services.referral.settings import Settings
from shared.app import create_service_app
from shared.events import topics
from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest import FhirRest
from shared.service import ConsumerSpec, ServiceRuntime


def create_app(settings: Settings) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        produces=(topics.REFERRAL,),
        extra_migrations=(*referrals.MIGRATIONS, *sla.MIGRATIONS, *subscriptions.MIGRATIONS),
    )
    # The routes and the handlers write through the same FHIR interactions (with the same hooks:
    # a referral ServiceRequest gets its Task, every Task write follows the closed-loop state
    # machine); the runtime hands them its store once the lifespan has opened it.
    # Subscriptions (Backport IG, rest-hook): their writes are checked against the endpoint
    # allowlist; $status and $events answer from the notification outbox.
    subscription_hooks = subscriptions.SubscriptionHooks(
        parse_allowlist(settings.subscription_endpoint_allowlist)
    )
    rest = FhirRest(
        runtime,
        OWNED_TYPES["referral"],
        hooks={**directory.hooks(), **referrals.hooks(), "Subscription": subscription_hooks},
        operations={
            **subscription_operations.operations(),
            **matching.operations(directory.DirectoryCache()),
        },
    )
    runtime.consumers = (
        ConsumerSpec("patients", (topics.PATIENT,), handlers.on_patient_event(rest)),
        ConsumerSpec(
            "hl7",
            (topics.HL7_TRANSLATED,),
            handlers.on_hl7_message(rest),
            accepts=topics.concerns("referral"),
        ),
        # Task and ServiceRequest events matched to Subscriptions: numbered notifications.
        ConsumerSpec("subscriptions", (topics.REFERRAL,), subscriptions.on_referral_event()),
        # intake's SDOH needs, kept per patient for HealthcareService/$match.
        ConsumerSpec("needs", (topics.TRIAGE,), matching.on_triage_event()),
    )
    runtime.background = (
        sla.acceptance_sla_scheduler(rest, settings.acceptance_sla_hours, settings.sla_scan_seconds),
        subscription_delivery.delivery_worker(rest, settings),
    )
    return create_service_app(runtime, rest, routers=(metrics.build_router(rest),))
