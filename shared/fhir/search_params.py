"""Search parameters each owned resource type supports, declared once.

The store fills its index tables from these definitions on every write; the FHIR REST layer
parses queries against them and the CapabilityStatement lists them, so what is declared here is
exactly what works. Names, types and paths follow the FHIR R4 search parameter registry
(http://hl7.org/fhir/R4/searchparameter-registry.html), restricted to what a care-coordination
client uses; ServiceRequest and Task include what the Gravity SDOH Clinical Care IG's
referral-management flows query (owner, requester, focus, status, code, _lastUpdated).

Paths are dotted paths over the resource JSON; a list anywhere on the path fans out. Choice
elements (`effective[x]`) are listed by their concrete names. A reference parameter with
`targets` only indexes references to those types (R4 `patient` = `subject.where(resolve() is
Patient)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ParamType = Literal["token", "string", "date", "reference", "number", "quantity", "uri"]


@dataclass(frozen=True, slots=True)
class SearchParam:
    name: str
    type: ParamType
    #: Dotted paths into the resource JSON, e.g. "name.family". For `string` params on a
    #: HumanName or Address the value of every string part is indexed.
    paths: tuple[str, ...]
    #: For reference params: the resource types the reference may point at (empty: any).
    targets: tuple[str, ...] = ()


def _p(name: str, type_: ParamType, *paths: str, targets: tuple[str, ...] = ()) -> SearchParam:
    return SearchParam(name, type_, paths, targets)


def _ref(name: str, *paths: str, to: tuple[str, ...] = ()) -> SearchParam:
    return SearchParam(name, "reference", paths, to)


_PATIENT = ("Patient",)
_WHO = ("Practitioner", "PractitionerRole", "Organization", "Patient", "RelatedPerson", "CareTeam")


def _subject_params(path: str = "subject", subject_targets: tuple[str, ...] = ()) -> tuple[SearchParam, ...]:
    """`patient` (the subject when it is a Patient) and `subject` (any subject)."""
    return (_ref("patient", path, to=_PATIENT), _ref("subject", path, to=subject_targets))


_PERIOD_OR_DATETIME = ("DateTime", "Period", "Instant")


def _choice(element: str, *types: str) -> tuple[str, ...]:
    return tuple(f"{element}{t}" for t in types)


_ADDRESS = (
    _p("address", "string", "address"),
    _p("address-city", "string", "address.city"),
    _p("address-state", "string", "address.state"),
    _p("address-postalcode", "string", "address.postalCode"),
)
_TELECOM = (
    _p("telecom", "token", "telecom"),
    _p("phone", "token", "telecom"),
    _p("email", "token", "telecom"),
)

SEARCH_PARAMETERS: dict[str, tuple[SearchParam, ...]] = {
    # --- intake -----------------------------------------------------------------------------
    "Patient": (
        _p("identifier", "token", "identifier"),
        _p("name", "string", "name"),
        _p("family", "string", "name.family"),
        _p("given", "string", "name.given"),
        _p("birthdate", "date", "birthDate"),
        _p("gender", "token", "gender"),
        _p("active", "token", "active"),
        *_TELECOM,
        *_ADDRESS,
        _ref(
            "general-practitioner",
            "generalPractitioner",
            to=("Practitioner", "PractitionerRole", "Organization"),
        ),
        _ref("organization", "managingOrganization", to=("Organization",)),
        _ref("link", "link.other", to=("Patient", "RelatedPerson")),
    ),
    "RelatedPerson": (
        _p("identifier", "token", "identifier"),
        _ref("patient", "patient", to=_PATIENT),
        _p("name", "string", "name"),
        _p("relationship", "token", "relationship"),
        _p("active", "token", "active"),
        *_TELECOM,
    ),
    "Encounter": (
        _p("identifier", "token", "identifier"),
        *_subject_params(subject_targets=("Patient", "Group")),
        _p("status", "token", "status"),
        _p("class", "token", "class"),
        _p("type", "token", "type"),
        _p("date", "date", "period"),
        _p("reason-code", "token", "reasonCode"),
        _ref("location", "location.location", to=("Location",)),
        _ref("service-provider", "serviceProvider", to=("Organization",)),
        _ref(
            "participant", "participant.individual", to=("Practitioner", "PractitionerRole", "RelatedPerson")
        ),
    ),
    "Condition": (
        _p("identifier", "token", "identifier"),
        *_subject_params(subject_targets=("Patient", "Group")),
        _p("clinical-status", "token", "clinicalStatus"),
        _p("verification-status", "token", "verificationStatus"),
        _p("category", "token", "category"),
        _p("code", "token", "code"),
        _p("onset-date", "date", "onsetDateTime", "onsetPeriod"),
        _p("recorded-date", "date", "recordedDate"),
        _ref("encounter", "encounter", to=("Encounter",)),
    ),
    "Observation": (
        _p("identifier", "token", "identifier"),
        *_subject_params(),
        _p("status", "token", "status"),
        _p("category", "token", "category"),
        _p("code", "token", "code"),
        _p("date", "date", *_choice("effective", *_PERIOD_OR_DATETIME)),
        _p("value-quantity", "quantity", "valueQuantity"),
        _p("value-concept", "token", "valueCodeableConcept"),
        _ref("encounter", "encounter", to=("Encounter",)),
        _ref("derived-from", "derivedFrom"),
        _ref("has-member", "hasMember", to=("Observation", "QuestionnaireResponse")),
        _ref("performer", "performer", to=_WHO),
    ),
    "DiagnosticReport": (
        _p("identifier", "token", "identifier"),
        *_subject_params(),
        _p("status", "token", "status"),
        _p("category", "token", "category"),
        _p("code", "token", "code"),
        _p("date", "date", *_choice("effective", *_PERIOD_OR_DATETIME)),
        _p("issued", "date", "issued"),
        _ref("encounter", "encounter", to=("Encounter",)),
        _ref("based-on", "basedOn"),
        _ref("result", "result", to=("Observation",)),
        _ref("performer", "performer", to=_WHO),
    ),
    "Questionnaire": (
        _p("identifier", "token", "identifier"),
        _p("url", "uri", "url"),
        _p("name", "string", "name"),
        _p("title", "string", "title"),
        _p("status", "token", "status"),
        _p("version", "token", "version"),
        _p("code", "token", "item.code"),
        _p("date", "date", "date"),
    ),
    "QuestionnaireResponse": (
        _p("identifier", "token", "identifier"),
        *_subject_params(),
        _p("status", "token", "status"),
        _p("questionnaire", "uri", "questionnaire"),
        _p("authored", "date", "authored"),
        _ref("author", "author", to=_WHO),
        _ref("encounter", "encounter", to=("Encounter",)),
    ),
    "RiskAssessment": (
        _p("identifier", "token", "identifier"),
        *_subject_params(subject_targets=("Patient", "Group")),
        _p("date", "date", "occurrenceDateTime"),
        _p("method", "token", "method"),
        _p("risk", "token", "prediction.qualitativeRisk"),
        _p("probability", "number", "prediction.probabilityDecimal"),
        _ref("condition", "condition", to=("Condition",)),
        _ref("encounter", "encounter", to=("Encounter",)),
    ),
    "Flag": (
        _p("identifier", "token", "identifier"),
        *_subject_params(),
        _p("date", "date", "period"),
        _ref("author", "author", to=_WHO),
        _ref("encounter", "encounter", to=("Encounter",)),
    ),
    "Consent": (
        _p("identifier", "token", "identifier"),
        _ref("patient", "patient", to=_PATIENT),
        _p("status", "token", "status"),
        _p("category", "token", "category"),
        _p("scope", "token", "scope"),
        _p("action", "token", "provision.action"),
        _p("purpose", "token", "provision.purpose"),
        _p("security-label", "token", "provision.securityLabel"),
        _p("date", "date", "dateTime"),
        _p("period", "date", "provision.period"),
        _ref("organization", "organization", to=("Organization",)),
        _ref("actor", "provision.actor.reference"),
    ),
    # --- careplan ---------------------------------------------------------------------------
    "CarePlan": (
        _p("identifier", "token", "identifier"),
        *_subject_params(subject_targets=("Patient", "Group")),
        _p("status", "token", "status"),
        _p("intent", "token", "intent"),
        _p("category", "token", "category"),
        _p("date", "date", "period"),
        _ref("care-team", "careTeam", to=("CareTeam",)),
        _ref("goal", "goal", to=("Goal",)),
        _ref("condition", "addresses", to=("Condition",)),
        _ref("encounter", "encounter", to=("Encounter",)),
        _ref("based-on", "basedOn", to=("CarePlan",)),
        _ref("part-of", "partOf", to=("CarePlan",)),
        _p("activity-date", "date", *_choice("activity.detail.scheduled", "Timing", "Period", "String")),
        _p("activity-code", "token", "activity.detail.code"),
        _ref("activity-reference", "activity.reference"),
        _ref("performer", "activity.detail.performer", to=_WHO),
    ),
    "Goal": (
        _p("identifier", "token", "identifier"),
        *_subject_params(subject_targets=("Patient", "Group", "Organization")),
        _p("lifecycle-status", "token", "lifecycleStatus"),
        _p("achievement-status", "token", "achievementStatus"),
        _p("category", "token", "category"),
        _p("start-date", "date", "startDate"),
        _p("target-date", "date", "target.dueDate"),
    ),
    "CareTeam": (
        _p("identifier", "token", "identifier"),
        *_subject_params(subject_targets=("Patient", "Group")),
        _p("status", "token", "status"),
        _p("category", "token", "category"),
        _p("date", "date", "period"),
        _ref("participant", "participant.member", to=_WHO),
        _ref("encounter", "encounter", to=("Encounter",)),
    ),
    "Appointment": (
        _p("identifier", "token", "identifier"),
        _ref("patient", "participant.actor", to=_PATIENT),
        _ref("actor", "participant.actor"),
        _ref("practitioner", "participant.actor", to=("Practitioner",)),
        _ref("location", "participant.actor", to=("Location",)),
        _p("status", "token", "status"),
        _p("date", "date", "start"),
        _p("appointment-type", "token", "appointmentType"),
        _p("service-type", "token", "serviceType"),
        _p("specialty", "token", "specialty"),
        _p("reason-code", "token", "reasonCode"),
        _p("part-status", "token", "participant.status"),
        _ref("based-on", "basedOn", to=("ServiceRequest",)),
    ),
    # --- referral ---------------------------------------------------------------------------
    "ServiceRequest": (
        _p("identifier", "token", "identifier"),
        *_subject_params(subject_targets=("Patient", "Group", "Location", "Device")),
        _p("status", "token", "status"),
        _p("intent", "token", "intent"),
        _p("category", "token", "category"),
        _p("code", "token", "code"),
        _p("priority", "token", "priority"),
        _p("authored", "date", "authoredOn"),
        _p("occurrence", "date", *_choice("occurrence", "DateTime", "Period")),
        _p("requisition", "token", "requisition"),
        _ref("requester", "requester", to=_WHO),
        _ref("performer", "performer", to=(*_WHO, "HealthcareService")),
        _ref("based-on", "basedOn", to=("CarePlan", "ServiceRequest")),
        _ref("encounter", "encounter", to=("Encounter",)),
        _ref("reason-reference", "reasonReference", to=("Condition", "Observation")),
    ),
    "Task": (
        _p("identifier", "token", "identifier"),
        _ref("patient", "for", to=_PATIENT),
        _ref("subject", "for"),
        _p("status", "token", "status"),
        _p("intent", "token", "intent"),
        _p("code", "token", "code"),
        _p("business-status", "token", "businessStatus"),
        _p("priority", "token", "priority"),
        _p("performer", "token", "performerType"),
        _p("group-identifier", "token", "groupIdentifier"),
        _p("authored-on", "date", "authoredOn"),
        _p("modified", "date", "lastModified"),
        _p("period", "date", "executionPeriod"),
        _ref("owner", "owner", to=(*_WHO, "HealthcareService")),
        _ref("requester", "requester", to=_WHO),
        _ref("focus", "focus"),
        _ref("based-on", "basedOn"),
        _ref("part-of", "partOf", to=("Task",)),
        _ref("encounter", "encounter", to=("Encounter",)),
    ),
    "Organization": (
        _p("identifier", "token", "identifier"),
        _p("name", "string", "name", "alias"),
        _p("active", "token", "active"),
        _p("type", "token", "type"),
        *_ADDRESS,
        _ref("partof", "partOf", to=("Organization",)),
        _ref("endpoint", "endpoint", to=("Endpoint",)),
    ),
    "HealthcareService": (
        _p("identifier", "token", "identifier"),
        _p("name", "string", "name"),
        _p("active", "token", "active"),
        _p("service-category", "token", "category"),
        _p("service-type", "token", "type"),
        _p("specialty", "token", "specialty"),
        _p("characteristic", "token", "characteristic"),
        _p("program", "token", "program"),
        _ref("organization", "providedBy", to=("Organization",)),
        _ref("location", "location", to=("Location",)),
        _ref("coverage-area", "coverageArea", to=("Location",)),
        _ref("endpoint", "endpoint", to=("Endpoint",)),
    ),
    "Location": (
        _p("identifier", "token", "identifier"),
        _p("name", "string", "name", "alias"),
        _p("status", "token", "status"),
        _p("operational-status", "token", "operationalStatus"),
        _p("type", "token", "type"),
        *_ADDRESS,
        _ref("organization", "managingOrganization", to=("Organization",)),
        _ref("partof", "partOf", to=("Location",)),
        _ref("endpoint", "endpoint", to=("Endpoint",)),
    ),
    "Practitioner": (
        _p("identifier", "token", "identifier"),
        _p("name", "string", "name"),
        _p("family", "string", "name.family"),
        _p("given", "string", "name.given"),
        _p("active", "token", "active"),
        _p("gender", "token", "gender"),
        _p("communication", "token", "communication"),
        *_TELECOM,
        *_ADDRESS,
    ),
    "PractitionerRole": (
        _p("identifier", "token", "identifier"),
        _p("active", "token", "active"),
        _p("role", "token", "code"),
        _p("specialty", "token", "specialty"),
        _p("date", "date", "period"),
        *_TELECOM,
        _ref("practitioner", "practitioner", to=("Practitioner",)),
        _ref("organization", "organization", to=("Organization",)),
        _ref("location", "location", to=("Location",)),
        _ref("service", "healthcareService", to=("HealthcareService",)),
        _ref("endpoint", "endpoint", to=("Endpoint",)),
    ),
    "Endpoint": (
        _p("identifier", "token", "identifier"),
        _p("name", "string", "name"),
        _p("status", "token", "status"),
        _p("connection-type", "token", "connectionType"),
        _p("payload-type", "token", "payloadType"),
        _ref("organization", "managingOrganization", to=("Organization",)),
    ),
    "Subscription": (
        _p("status", "token", "status"),
        _p("type", "token", "channel.type"),
        _p("url", "uri", "channel.endpoint"),
        _p("criteria", "string", "criteria"),
        _p("payload", "token", "channel.payload"),
    ),
    # --- gateway ----------------------------------------------------------------------------
    "AuditEvent": (
        _p("date", "date", "recorded"),
        _p("type", "token", "type"),
        _p("subtype", "token", "subtype"),
        _p("action", "token", "action"),
        _p("outcome", "token", "outcome"),
        _ref("agent", "agent.who"),
        _ref("entity", "entity.what"),
        _ref("patient", "agent.who", "entity.what", to=_PATIENT),
        _ref("source", "source.observer"),
        _p("site", "token", "source.site"),
    ),
}


def params_for(resource_type: str) -> tuple[SearchParam, ...]:
    return SEARCH_PARAMETERS.get(resource_type, ())


def param(resource_type: str, name: str) -> SearchParam | None:
    for p in SEARCH_PARAMETERS.get(resource_type, ()):
        if p.name == name:
            return p
    return None
