"""The FHIR operations CareBridge serves (`[type]/$name`, `[type]/[id]/$name`), in one table
that the owning service, the gateway's router and scope check, and the CapabilityStatement read.

An operation names the SMART interaction its caller needs (R4 operations that change data need
write access; lookups need search). The service that owns the type registers the code that runs
it (`shared.fhir.rest.FhirRest(operations=...)`); the gateway routes by this table alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class OperationDefinition:
    resource_type: str
    #: Without the `$`.
    name: str
    #: True for `[type]/[id]/$name`, False for `[type]/$name`.
    instance: bool
    #: HTTP methods accepted (R4 operations.html: POST always; GET when it changes nothing).
    methods: tuple[str, ...]
    #: The SMART interaction a token must be allowed on `resource_type` (shared.auth).
    interaction: str
    #: The canonical OperationDefinition (the FHIR spec's, or ours when CareBridge defines it).
    definition: str
    documentation: str
    #: Other (type, interaction) pairs the token must also be allowed: an operation that reads a
    #: patient's data on the side (HealthcareService/$match reads their screened needs).
    also_needs: tuple[tuple[str, str], ...] = ()

    @property
    def code(self) -> str:
        return f"${self.name}"


_CAREBRIDGE: Final = "http://carebridge.example/fhir/OperationDefinition/"

OPERATIONS: Final[tuple[OperationDefinition, ...]] = (
    OperationDefinition(
        "Patient",
        "match",
        False,
        ("POST",),
        "search",
        "http://hl7.org/fhir/OperationDefinition/Patient-match",
        "Candidates for a Patient, scored and graded (R4 patient-operation-match.html); the "
        "score explains itself in an extension.",
    ),
    OperationDefinition(
        "Patient",
        "merge",
        False,
        ("POST",),
        "update",
        "http://hl7.org/fhir/OperationDefinition/Patient-merge",
        "Merge a source Patient into a target as the FHIR R5 $merge operation does, offered on "
        "R4: the source becomes inactive and replaced-by the target; references move.",
    ),
    OperationDefinition(
        "Patient",
        "unmerge",
        False,
        ("POST",),
        "update",
        _CAREBRIDGE + "Patient-unmerge",
        "Undo a merge: the source is active again, both links go, and what the merge moved moves "
        "back. Audited.",
    ),
    OperationDefinition(
        "Patient",
        "match-reviews",
        False,
        ("GET",),
        "search",
        _CAREBRIDGE + "Patient-match-reviews",
        "Possible duplicates waiting for a person to decide (status=open|resolved).",
    ),
    OperationDefinition(
        "Patient",
        "resolve-match-review",
        False,
        ("POST",),
        "update",
        _CAREBRIDGE + "Patient-resolve-match-review",
        "Decide a possible duplicate: merge the two records, or keep them apart for good.",
    ),
    OperationDefinition(
        "Measure",
        "evaluate-measure",
        True,
        ("GET", "POST"),
        "read",
        "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
        "A MeasureReport for the period (periodStart, periodEnd; reportType summary or "
        "subject-list): HEDIS FUH (Measure/fuh) and FUM (Measure/fum) over the encounters "
        "careplan holds (R4 measure-operation-evaluate-measure.html).",
    ),
    OperationDefinition(
        "Subscription",
        "status",
        True,
        ("GET",),
        "read",
        "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
        "The subscription's status (Subscriptions R5 Backport IG): a searchset Bundle with its "
        "query-status Parameters: status, topic, events-since-subscription-start, error.",
    ),
    OperationDefinition(
        "Subscription",
        "events",
        True,
        ("GET",),
        "read",
        "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
        "Replay a subscription's events (eventsSinceNumber, eventsUntilNumber, content) as a "
        "query-event notification Bundle with the subscription's payload content.",
    ),
    OperationDefinition(
        "HealthcareService",
        "match",
        False,
        ("POST",),
        "search",
        _CAREBRIDGE + "HealthcareService-match",
        "Directory services ranked for a patient's needs (given, or from their latest SDOH "
        "screening): category fit, language, distance, open hours, eligibility and capacity, each "
        "with its reason and points in search.extension (services/referral/domain/match_parameters.py).",
        also_needs=(("Patient", "read"),),
    ),
)

OPERATION_BY_KEY: Final[dict[tuple[str, str, bool], OperationDefinition]] = {
    (op.resource_type, op.name, op.instance): op for op in OPERATIONS
}


def find_operation(resource_type: str, code: str, *, instance: bool) -> OperationDefinition | None:
    """The operation `code` (with its `$`) on `resource_type`, at type or instance level."""
    if not code.startswith("$"):
        return None
    return OPERATION_BY_KEY.get((resource_type, code[1:], instance))
