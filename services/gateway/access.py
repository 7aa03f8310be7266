"""Who may see what: SMART v2 scopes per interaction, the patient compartment, the clinic rule.

SMART App Launch v2 (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):

- A scope grants permissions (c r u d s) on a resource type in a context. ``system/`` and
  ``user/`` scopes are not limited by this server beyond the type and the permission.
- A ``patient/`` scope only reaches the compartment of the token's `patient` claim (the launch
  context): searches get that patient added to the query, reads of a resource outside it are
  refused (403), and types with no patient link (Practitioner, Organization, ...) are refused.
  The compartment is the R4 Patient compartment as this server indexes it: a resource belongs to
  Patient/X when its `patient` search parameter (shared/fhir/search_params.py) points at
  Patient/X, and Patient/X itself.
- A clinic's token carries its Organization in an `organization` claim (DESIGN.md, Security: a
  clinic sees only referrals addressed to it). Whatever its scopes, such a token sees only the
  ServiceRequests whose `performer` and the Tasks whose `owner` is that Organization.

Everything here is plain data in, decision out; the facade applies it to requests and answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.auth import INTERACTION_PERMISSION, Principal
from shared.errors import Forbidden
from shared.fhir.search_params import SEARCH_PARAMETERS, param

#: Types in the patient compartment: the ones with a `patient` search parameter, and Patient.
PATIENT_LINKED = frozenset(
    {"Patient"} | {t for t, ps in SEARCH_PARAMETERS.items() if any(p.name == "patient" for p in ps)}
)
#: The clinic rule: the search parameter naming the Organization a referral is addressed to.
ORGANIZATION_PARAMS = {"ServiceRequest": "performer", "Task": "owner"}


@dataclass(frozen=True, slots=True)
class Restriction:
    """What a principal may see of one type beyond what its scopes say."""

    #: Only the compartment of this Patient id.
    patient: str | None = None
    #: Only resources addressed to this Organization id (ServiceRequest, Task).
    organization: str | None = None

    @property
    def unrestricted(self) -> bool:
        return self.patient is None and self.organization is None


NONE = Restriction()


def reference_target(reference: str) -> tuple[str, str] | None:
    """("Patient", "123") for "Patient/123", "Patient/123/_history/2" or an absolute URL to it."""
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-1] or not parts[-2][:1].isupper():
        return None
    return parts[-2], parts[-1]


def values_at(resource: Any, path: str) -> Iterator[Any]:
    """The values at a dotted path, fanning out over lists (as the store's indexer does)."""
    current = [resource]
    for step in path.split("."):
        following = []
        for node in current:
            child = node.get(step) if isinstance(node, dict) else None
            if isinstance(child, list):
                following.extend(child)
            elif child is not None:
                following.append(child)
        current = following
    yield from current


def references(resource_type: str, resource: dict[str, Any], param_name: str) -> Iterator[tuple[str, str]]:
    """The (type, id) pairs a reference search parameter of `resource_type` points at."""
    definition = param(resource_type, param_name)
    if definition is None or definition.type != "reference":
        return
    for path in definition.paths:
        for value in values_at(resource, path):
            ref = value.get("reference") if isinstance(value, dict) else None
            if isinstance(ref, str) and (target := reference_target(ref)) is not None:
                yield target


def in_patient_compartment(resource_type: str, resource: dict[str, Any], patient_id: str) -> bool:
    if resource_type == "Patient":
        return resource.get("id") == patient_id
    return ("Patient", patient_id) in set(references(resource_type, resource, "patient"))


def addressed_to(resource_type: str, resource: dict[str, Any], organization_id: str) -> bool:
    name = ORGANIZATION_PARAMS[resource_type]
    return ("Organization", organization_id) in set(references(resource_type, resource, name))


class AccessPolicy:
    """One principal's access decisions, cached per (type, interaction) for one request."""

    def __init__(self, principal: Principal):
        self.principal = principal
        self._cache: dict[tuple[str, str], Restriction | Forbidden] = {}

    def restriction(self, resource_type: str, interaction: str) -> Restriction:
        """The restriction for an interaction on a type; Forbidden when no scope covers it."""
        key = (resource_type, interaction)
        decided = self._cache.get(key)
        if decided is None:
            try:
                decided = self._decide(resource_type, interaction)
            except Forbidden as exc:
                decided = exc
            self._cache[key] = decided
        if isinstance(decided, Forbidden):
            raise decided
        return decided

    def _decide(self, resource_type: str, interaction: str) -> Restriction:
        letter = INTERACTION_PERMISSION.get(interaction, "r")
        covering = [
            s
            for s in self.principal.scopes
            if s.resource_type in ("*", resource_type) and letter in s.permissions
        ]
        if not covering:
            raise Forbidden(f"Token scopes do not permit {interaction} on {resource_type}")
        patient = None
        if all(s.context == "patient" for s in covering):
            patient = self.principal.patient
            if not patient:
                raise Forbidden("patient/ scopes need a token with a patient claim (the launch context)")
            if resource_type not in PATIENT_LINKED:
                raise Forbidden(
                    f"{resource_type} is not in a patient compartment: patient/ scopes do not reach it"
                )
        organization = self.principal.organization if resource_type in ORGANIZATION_PARAMS else None
        if patient is None and organization is None:
            return NONE
        return Restriction(patient, str(organization) if organization else None)

    def may_see(self, resource_type: str, resource: dict[str, Any]) -> bool:
        """Whether a resource may appear in an answer (read or search results, includes)."""
        restriction = None
        for interaction in ("read", "search"):
            try:
                restriction = self.restriction(resource_type, interaction)
                break
            except Forbidden:
                continue
        return restriction is not None and permits(resource_type, resource, restriction)

    def unrestricted_for(self, resource_types: set[str]) -> bool:
        """True when every type may be seen whole: answers need no filtering."""
        for rtype in resource_types:
            try:
                if not self.restriction(rtype, "read").unrestricted:
                    return False
            except Forbidden:
                return False
        return True


def permits(resource_type: str, resource: dict[str, Any], restriction: Restriction) -> bool:
    if restriction.patient is not None and not in_patient_compartment(
        resource_type, resource, restriction.patient
    ):
        return False
    if restriction.organization is not None and resource_type in ORGANIZATION_PARAMS:
        return addressed_to(resource_type, resource, restriction.organization)
    return True


def require_permitted(resource_type: str, resource: dict[str, Any], restriction: Restriction) -> None:
    """403 for a resource outside what the restriction allows (a read, or the body of a write)."""
    if permits(resource_type, resource, restriction):
        return
    if restriction.patient is not None and not in_patient_compartment(
        resource_type, resource, restriction.patient
    ):
        raise Forbidden(f"This {resource_type} is outside the patient compartment this token may reach")
    raise Forbidden(f"This {resource_type} is not addressed to the token's organization")


def search_restrictions(resource_type: str, restriction: Restriction) -> list[tuple[str, str]]:
    """Search parameters that confine a search (or a conditional write) to what may be seen.

    Added to the client's own parameters they AND with them (R4 search.html#combining), so a
    client asking for another patient simply gets no match.
    """
    added = []
    if restriction.patient is not None:
        if resource_type == "Patient":
            added.append(("_id", restriction.patient))
        else:
            added.append(("patient", f"Patient/{restriction.patient}"))
    if restriction.organization is not None and resource_type in ORGANIZATION_PARAMS:
        added.append((ORGANIZATION_PARAMS[resource_type], f"Organization/{restriction.organization}"))
    return added
