"""Every topic and event type CareBridge uses. No topic string appears anywhere else.

Topic names here are logical; the name on the broker is `settings.topic(NAME)`, which adds the
deployment's prefix (tests use a unique prefix per run). Records are keyed by the patient's
logical id wherever there is a patient, so one patient's events stay in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Literal

from shared.fhir.ownership import OWNED_TYPES

# --- topics, by the service that produces them -------------------------------------------------
#: intake: Patient, RelatedPerson, Consent, Flag lifecycle (create/update/delete/merge).
PATIENT: Final = "carebridge.patient.v1"
#: intake: Encounter lifecycle (admissions, discharges, transfers).
ENCOUNTER: Final = "carebridge.encounter.v1"
#: intake: Observation, Condition, QuestionnaireResponse, RiskAssessment (screening and results).
CLINICAL: Final = "carebridge.clinical.v1"
#: careplan: CarePlan, Goal, CareTeam, Appointment.
CAREPLAN: Final = "carebridge.careplan.v1"
#: referral: ServiceRequest, Task and the directory (Organization, HealthcareService, ...).
REFERRAL: Final = "carebridge.referral.v1"
#: gateway: AuditEvent records.
AUDIT: Final = "carebridge.audit.v1"
#: intake: what screening found that others act on: risk (careplan adds a same-day safety
#: activity) and social needs (referral suggests services).
TRIAGE: Final = "carebridge.triage.v1"
#: gateway: each accepted HL7 v2 message translated to FHIR, a transaction Bundle of conditional
#: updates for intake, careplan and referral to apply (each takes the entries it owns).
HL7_TRANSLATED: Final = "carebridge.hl7.v1"

ALL_TOPICS: Final = (PATIENT, ENCOUNTER, CLINICAL, CAREPLAN, REFERRAL, AUDIT, TRIAGE, HL7_TRANSLATED)

#: Suffix of a topic's dead-letter topic: records a consumer could not process, with the error.
DLQ_SUFFIX: Final = ".dlq"


def dlq_of(topic: str) -> str:
    return topic + DLQ_SUFFIX


#: intake publishes on three topics so consumers can subscribe to what they need.
_INTAKE_TOPIC: Final[dict[str, str]] = {
    **dict.fromkeys(("Patient", "RelatedPerson", "Consent", "Flag"), PATIENT),
    "Encounter": ENCOUNTER,
    **dict.fromkeys(
        (
            "Observation",
            "DiagnosticReport",
            "Condition",
            "Questionnaire",
            "QuestionnaireResponse",
            "RiskAssessment",
        ),
        CLINICAL,
    ),
}
#: Every other service publishes all its types on its own topic.
_SERVICE_TOPIC: Final[dict[str, str]] = {"careplan": CAREPLAN, "referral": REFERRAL, "gateway": AUDIT}

#: Which topic carries the lifecycle events of each stored resource type, derived from the
#: ownership table so a type added to a service gets its topic without a second list.
TOPIC_BY_RESOURCE_TYPE: Final[dict[str, str]] = {
    rtype: _INTAKE_TOPIC[rtype] if service == "intake" else _SERVICE_TOPIC[service]
    for service, types in OWNED_TYPES.items()
    for rtype in types
}

# --- event types -------------------------------------------------------------------------------
#: On PATIENT, keyed by the source Patient: a Patient was merged into another (data: Parameters
#: source-patient, target-patient; shared/fhir/patient_merge.py). Services re-point to the target.
PATIENT_MERGED_EVENT: Final = "org.carebridge.patient.merged.v1"
#: On PATIENT: a merge was undone; services move back what they re-pointed.
PATIENT_UNMERGED_EVENT: Final = "org.carebridge.patient.unmerged.v1"
#: On PATIENT: two records may be one person; a person decides (data: Parameters with the
#: review id, both Patients, the score and its explanation).
MATCH_REVIEW_EVENT: Final = "org.carebridge.patient.match-review.v1"
#: On TRIAGE, keyed by the Patient: a screening result needs a same-day safety response (data:
#: the Flag intake raised; services/intake/domain/triage.py has the rules).
RISK_IDENTIFIED_EVENT: Final = "org.carebridge.triage.risk-identified.v1"
#: On TRIAGE: social needs a screening found (data: Parameters with the Patient and the Gravity
#: SDOH categories, each with the Observation that shows it).
SDOH_NEEDS_EVENT: Final = "org.carebridge.triage.sdoh-needs.v1"
#: On CAREPLAN, keyed by the Patient: a plan activity (a post-discharge follow-up, a safety
#: activity) is past its due date and not done (data: Parameters with the CarePlan, the activity,
#: its due date, priority and the practitioner responsible).
FOLLOW_UP_OVERDUE_EVENT: Final = "org.carebridge.careplan.follow-up-overdue.v1"
#: On CAREPLAN, keyed by the Patient: no case manager could take the patient without going over
#: a caseload limit (data: Parameters with the Patient and the programs that are full).
PROGRAM_FULL_EVENT: Final = "org.carebridge.careplan.program-full.v1"
#: On REFERRAL, keyed by the Patient: a referral's Task was not accepted within the acceptance SLA
#: of being sent (REFERRAL_ACCEPTANCE_SLA_HOURS; data: Parameters with the Task, its
#: ServiceRequest, the Patient, the owner, when it was requested, its status and the SLA hours).
REFERRAL_ACCEPTANCE_OVERDUE_EVENT: Final = "org.carebridge.referral.acceptance-overdue.v1"
#: On AUDIT: an AuditEvent a service recorded, for the gateway to keep (data: the AuditEvent).
AUDIT_RECORDED_EVENT: Final = "org.carebridge.audit.recorded.v1"
#: CloudEvents `type` of a translated HL7 v2 message (data: a transaction Bundle; subject:
#: `hl7v2/<archive id>`; key: the patient's business identifier `system|value`).
HL7_TRANSLATED_EVENT: Final = "org.carebridge.hl7v2.translated.v1"
#: Kafka header of a translated HL7 v2 message: the services owning something in its Bundle
#: (comma-separated), so the others skip the record without decoding it or opening a transaction.
OWNERS_HEADER: Final = "x-carebridge-owners"


def concerns(service: str) -> Callable[[Sequence[tuple[str, bytes]]], bool]:
    """A record filter: records without the owners header, or naming `service` in it."""
    name = service.encode()

    def accepts(headers: Sequence[tuple[str, bytes]]) -> bool:
        for key, value in headers:
            if key == OWNERS_HEADER:
                return name in value.split(b",")
        return True

    return accepts


Action = Literal["created", "updated", "deleted"]
#: CloudEvents `type` of a resource lifecycle event: org.carebridge.fhir.<Type>.<action>.v1
EVENT_TYPE_PREFIX: Final = "org.carebridge.fhir."


def resource_event_type(resource_type: str, action: Action) -> str:
    return f"{EVENT_TYPE_PREFIX}{resource_type}.{action}.v1"


def parse_resource_event_type(event_type: str) -> tuple[str, str] | None:
    """(resource_type, action) of a resource lifecycle event type, or None for other types."""
    if not event_type.startswith(EVENT_TYPE_PREFIX):
        return None
    parts = event_type[len(EVENT_TYPE_PREFIX) :].split(".")
    if len(parts) != 3:
        return None
    return parts[0], parts[1]
