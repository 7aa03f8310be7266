"""Search parameters each owned resource type supports, declared once.

The store fills its index tables from these definitions on every write, and (in the FHIR REST
layer) the same table drives query parsing and the CapabilityStatement. Paths are simple
FHIRPath-like dotted paths over the resource JSON; a list anywhere on the path fans out.
Definitions follow the FHIR R4 search parameter registry
(http://hl7.org/fhir/R4/searchparameter-registry.html).
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
    #: For reference params: the resource types the reference may point at.
    targets: tuple[str, ...] = ()


def _p(name: str, type_: ParamType, *paths: str, targets: tuple[str, ...] = ()) -> SearchParam:
    return SearchParam(name, type_, paths, targets)


SEARCH_PARAMETERS: dict[str, tuple[SearchParam, ...]] = {
    "Patient": (
        _p("identifier", "token", "identifier"),
        _p("name", "string", "name"),
        _p("family", "string", "name.family"),
        _p("given", "string", "name.given"),
        _p("birthdate", "date", "birthDate"),
        _p("gender", "token", "gender"),
        _p("active", "token", "active"),
        _p("phone", "token", "telecom"),
        _p("email", "token", "telecom"),
        _p("address-postalcode", "string", "address.postalCode"),
    ),
}


def params_for(resource_type: str) -> tuple[SearchParam, ...]:
    return SEARCH_PARAMETERS.get(resource_type, ())
