"""This service's CapabilityStatement (http://hl7.org/fhir/R4/capabilitystatement.html), built
from the same tables the code runs on: the types it owns, their search parameters
(shared/fhir/search_params.py) and the interactions `dispatch.py` routes. What it lists works."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.fhir.operations import OPERATIONS
from shared.fhir.rest.patch import JSON_PATCH_MEDIA_TYPE, MERGE_PATCH_MEDIA_TYPE
from shared.fhir.search_params import SEARCH_PARAMETERS, SearchParam
from shared.fhir.subscription_topics import SUBSCRIPTION_PROFILE, TOPIC_CANONICAL_EXTENSION, TOPICS

FHIR_VERSION = "4.0.1"
#: Type-level and instance-level interactions routed for every owned type.
TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
#: Whole-system interactions the service serves at its base.
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system")
#: Search parameters every type supports (http://hl7.org/fhir/R4/search.html#all).
COMMON_SEARCH_PARAMS = (
    SearchParam("_id", "token", ("id",)),
    SearchParam("_lastUpdated", "date", ("meta.lastUpdated",)),
)


def capability_statement(
    service_name: str,
    owned_types: Sequence[str],
    *,
    base_url: str,
    search_params: Mapping[str, Sequence[SearchParam]] = SEARCH_PARAMETERS,
    software_version: str = "0.1.0",
    operations: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    resources = [_resource(t, search_params, owned_types) for t in owned_types]
    for entry in resources:
        served = [
            {"name": op.name, "definition": op.definition, "documentation": op.documentation}
            for op in OPERATIONS
            if op.resource_type == entry["type"] and (op.resource_type, op.name) in operations
        ]
        if served:
            entry["operation"] = served
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),  # when this statement was generated
        "publisher": "CareBridge",
        "kind": "instance",
        "software": {"name": f"CareBridge {service_name}", "version": software_version},
        "implementation": {"description": f"CareBridge {service_name} service", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["json", "application/fhir+json"],
        "patchFormat": [JSON_PATCH_MEDIA_TYPE, MERGE_PATCH_MEDIA_TYPE],
        "rest": [
            {
                "mode": "server",
                "resource": resources,
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            }
        ],
    }


def capability_bytes(
    service_name: str,
    owned_types: Sequence[str],
    *,
    base_url: str,
    operations: Sequence[tuple[str, str]] = (),
) -> bytes:
    return orjson.dumps(
        capability_statement(service_name, owned_types, base_url=base_url, operations=operations)
    )


def _resource(
    resource_type: str, search_params: Mapping[str, Sequence[SearchParam]], owned_types: Sequence[str]
) -> dict[str, Any]:
    params = [*COMMON_SEARCH_PARAMS, *search_params.get(resource_type, ())]
    entry: dict[str, Any] = {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
        "versioning": "versioned",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "full-support",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal"],
        "searchParam": [_search_param(resource_type, p) for p in params],
    }
    if resource_type == "Subscription":
        # Subscriptions R5 Backport IG: servers list the backport profile and SHOULD advertise
        # their topics on this entry (input/fsh/Capabilities.fsh).
        entry["supportedProfile"] = [SUBSCRIPTION_PROFILE]
        entry["extension"] = [{"url": TOPIC_CANONICAL_EXTENSION, "valueCanonical": topic} for topic in TOPICS]
    includes = [f"{resource_type}:{p.name}" for p in params if p.type == "reference"]
    if includes:
        entry["searchInclude"] = includes
    revincludes = _revincludes(resource_type, search_params, owned_types)
    if revincludes:
        entry["searchRevInclude"] = revincludes
    return entry


def _search_param(resource_type: str, param: SearchParam) -> dict[str, str]:
    owner = "Resource" if param.name.startswith("_") else resource_type
    name = param.name[1:] if param.name.startswith("_") else param.name
    return {
        "name": param.name,
        "definition": f"http://hl7.org/fhir/SearchParameter/{owner}-{name}",
        "type": param.type,
    }


def _revincludes(
    target: str, search_params: Mapping[str, Sequence[SearchParam]], owned_types: Sequence[str]
) -> list[str]:
    """`Source:param` for this service's reference parameters that may point at `target`
    (the gateway adds the ones other services resolve)."""
    found = []
    for source in owned_types:
        for param in search_params.get(source, ()):
            if param.type == "reference" and (not param.targets or target in param.targets):
                found.append(f"{source}:{param.name}")
    return found
