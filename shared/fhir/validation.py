"""Validation of resources on write.

`fhir.resources` (R4B models; the wire says FHIR 4.0.1) checks structure, cardinality and
primitive formats, but it coerces JSON types (``"active": "yes"`` becomes ``True``) and does not
check codes against required value-set bindings (``"gender": "femal"`` passes). A FHIR server
must reject both (FHIR R4 JSON: "the JSON types must be respected", http://hl7.org/fhir/R4/json.html;
required bindings: http://hl7.org/fhir/R4/terminologies.html#required), so before the model runs
we walk the JSON against each model's field table: JSON type per primitive, and membership in
the field's `enum_values`, which fhir.resources records for required-binding codes.

Validate once on write; reads and events serve the stored bytes (DESIGN.md, Store).
"""

from __future__ import annotations

import datetime
import decimal
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from shared.errors import InvalidInput

_MAX_ISSUES = 20


@dataclass(frozen=True, slots=True)
class _Field:
    kind: str  # bool | int | decimal | str | model | resource | any
    many: bool
    codes: frozenset[str] | None
    model: type | None


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """Strip Optional[...] and Annotated[...]; report whether it was a List."""
    many = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0]
        elif origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (list, typing.List):  # noqa: UP006 - the models use typing.List
            many = True
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation, many


def _classify(annotation: Any) -> tuple[str, type | None]:
    if annotation is bool:
        return "bool", None
    if annotation is int:
        return "int", None
    if annotation in (float, decimal.Decimal):
        return "decimal", None
    if annotation in (str, datetime.date, datetime.datetime, datetime.time) or (
        isinstance(annotation, type) and issubclass(annotation, str)
    ):
        return "str", None
    getter = getattr(annotation, "get_model_klass", None)
    if getter is not None:
        model = getter()
        if getattr(model, "__name__", "") in ("Resource", "DomainResource"):
            return "resource", None
        return "model", model
    return "any", None


@cache
def _fields(model: type) -> dict[str, _Field]:
    table: dict[str, _Field] = {}
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        alias = info.alias or name
        if alias.startswith("_") or name == "fhir_comments":
            continue  # primitive extensions (_birthDate) are checked by the model itself
        inner, many = _unwrap(info.annotation)
        kind, sub = _classify(inner)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        codes = extra.get("enum_values")
        table[alias] = _Field(kind, many, _complete(codes) if codes else None, sub)
    return table


#: fhir.resources ends a code list with "+" where the R4 value set is hierarchical and it lists
#: only the top codes ("amended +": amended has children). The full R4 value sets
#: (observation-status, diagnostic-report-status, request-intent, task-status):
_HIERARCHICAL_VALUE_SETS = (
    frozenset(
        {
            "registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error",
            "unknown",
        }
    ),
    frozenset(
        {
            "registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
            "cancelled", "entered-in-error", "unknown",
        }
    ),
    frozenset(
        {
            "proposal", "plan", "directive", "order", "original-order", "reflex-order", "filler-order",
            "instance-order", "option",
        }
    ),
    frozenset(
        {
            "draft", "requested", "received", "accepted", "rejected", "ready", "cancelled", "in-progress",
            "on-hold", "failed", "completed", "entered-in-error",
        }
    ),
)  # fmt: skip


def _complete(codes: list[str]) -> frozenset[str] | None:
    """The codes a required binding allows; None (not checked) for a truncated list this module
    does not know in full, since refusing a valid code is worse than letting one through."""
    listed = frozenset(codes)
    if "+" not in listed:
        return listed
    listed -= {"+"}
    for value_set in _HIERARCHICAL_VALUE_SETS:
        if listed <= value_set:
            return value_set
    return None


def _model_for(resource_type: Any) -> type:
    if not isinstance(resource_type, str) or not resource_type:
        raise InvalidInput("resourceType is missing", expression=["resourceType"])
    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        raise InvalidInput(f"Unknown resourceType {resource_type!r}", expression=["resourceType"]) from None


_JSON_TYPE_OK = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "decimal": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}
_JSON_TYPE_NAME = {
    "bool": "a JSON boolean",
    "int": "a JSON integer",
    "decimal": "a JSON number",
    "str": "a JSON string",
}


def _check(obj: dict[str, Any], model: type, path: str, issues: list[tuple[str, str]]) -> None:
    table = _fields(model)
    for key, value in obj.items():
        spec = table.get(key)
        if spec is None or value is None:
            continue  # unknown keys and nulls are reported by the model
        where = f"{path}.{key}"
        if spec.many:
            if not isinstance(value, list):
                issues.append((where, "must be a JSON array"))
                continue
            for i, item in enumerate(value):
                _check_value(item, spec, f"{where}[{i}]", issues)
        else:
            if isinstance(value, list):
                issues.append((where, "must not be an array"))
                continue
            _check_value(value, spec, where, issues)
        if len(issues) >= _MAX_ISSUES:
            return


def _check_value(value: Any, spec: _Field, where: str, issues: list[tuple[str, str]]) -> None:
    if spec.kind in _JSON_TYPE_OK:
        if not _JSON_TYPE_OK[spec.kind](value):
            issues.append((where, f"must be {_JSON_TYPE_NAME[spec.kind]}, not {type(value).__name__}"))
        elif spec.codes is not None and value not in spec.codes:
            allowed = ", ".join(sorted(spec.codes))
            issues.append((where, f"code {value!r} is not in the required value set ({allowed})"))
    elif spec.kind == "model" and spec.model is not None:
        if not isinstance(value, dict):
            issues.append((where, "must be a JSON object"))
        else:
            _check(value, spec.model, where, issues)
    elif spec.kind == "resource":
        if not isinstance(value, dict):
            issues.append((where, "must be a JSON object"))
        else:
            try:
                _check(value, _model_for(value.get("resourceType")), where, issues)
            except InvalidInput as exc:
                issues.append((where, exc.diagnostics))


def validate_resource(resource: Any, expected_type: str | None = None) -> dict[str, Any]:
    """Validate a parsed JSON resource; returns it unchanged or raises InvalidInput.

    All strict-JSON and binding problems are reported together, each with its FHIRPath-like
    location, so a client fixes them in one round trip.
    """
    if not isinstance(resource, dict):
        raise InvalidInput("The body must be a JSON object holding a FHIR resource")
    rtype = resource.get("resourceType")
    if expected_type is not None and rtype != expected_type:
        raise InvalidInput(
            f"resourceType {rtype!r} does not match the endpoint type {expected_type!r}",
            expression=["resourceType"],
        )
    model = _model_for(rtype)
    issues: list[tuple[str, str]] = []
    _check(resource, model, str(rtype), issues)
    if issues:
        raise InvalidInput("; ".join(f"{p}: {m}" for p, m in issues), expression=[p for p, _ in issues])
    try:
        model.model_validate(resource)  # type: ignore[attr-defined]
    except ValidationError as exc:
        errors = exc.errors()[:_MAX_ISSUES]
        paths = [".".join([str(rtype), *(str(x) for x in e["loc"])]) for e in errors]
        detail = "; ".join(f"{p}: {e['msg']}" for p, e in zip(paths, errors, strict=True))
        raise InvalidInput(detail, expression=paths) from None
    return resource
