"""Which service owns (stores and serves) each FHIR resource type: DESIGN.md, "Services and what
each owns". The gateway routes `/fhir/{type}` by this table; each service serves its own row."""

from __future__ import annotations

from typing import Final

OWNED_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "gateway": ("AuditEvent",),
    "intake": (
        "Patient",
        "RelatedPerson",
        "Encounter",
        "Condition",
        "Observation",
        # Not in DESIGN.md's table: results from ORU^R01 (OBR) need an owner, and intake owns
        # the Observations a report groups (issue 4; noted as a departure).
        "DiagnosticReport",
        "Questionnaire",
        "QuestionnaireResponse",
        "RiskAssessment",
        "Flag",
        "Consent",
    ),
    # Measure and MeasureReport are not in DESIGN.md's table: the quality measures careplan
    # computes (issue 6, FUH/FUM) need an owner to route Measure/[id]/$evaluate-measure to.
    "careplan": ("CarePlan", "Goal", "CareTeam", "Appointment", "Measure", "MeasureReport"),
    "referral": (
        "ServiceRequest",
        "Task",
        "Organization",
        "HealthcareService",
        "Location",
        "Practitioner",
        "PractitionerRole",
        "Endpoint",
        "Subscription",
    ),
}

OWNER_OF: Final[dict[str, str]] = {rtype: svc for svc, types in OWNED_TYPES.items() for rtype in types}
