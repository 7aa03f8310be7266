"""One search criterion (`name[:modifier][.chained]=values`) parsed against the declared parameters.

Modifiers supported per type (R4 search.html#modifiers), every type also taking `:missing`:
token `:not` `:text`; string `:exact` `:contains`; reference `:[Type]`; uri `:below` `:above`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from shared.errors import InvalidInput
from shared.fhir.search.model import Criterion, Kind, Value
from shared.fhir.search.values import (
    parse_date,
    parse_missing,
    parse_number,
    parse_quantity,
    parse_reference,
    parse_token,
    split_escaped,
)
from shared.fhir.search_params import SearchParam
from shared.store.content import check_id

_MODIFIERS: dict[str, frozenset[str]] = {
    "token": frozenset({"not", "text", "missing"}),
    "string": frozenset({"exact", "contains", "missing"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "uri": frozenset({"below", "above", "missing"}),
    "reference": frozenset({"missing"}),  # and a resource type
    "_id": frozenset(),
    "_lastUpdated": frozenset({"missing"}),
}


class Unsupported(Exception):
    """An unknown parameter or unsupported modifier: a 400, or dropped when lenient."""


class CriterionParser:
    def __init__(
        self, search_params: Mapping[str, Sequence[SearchParam]], local_types: Collection[str]
    ) -> None:
        self._params = {t: {p.name: p for p in params} for t, params in search_params.items()}
        self._local_types = local_types

    def lookup(self, resource_type: str, name: str) -> SearchParam | None:
        return self._params.get(resource_type, {}).get(name)

    def parse(self, resource_type: str, name: str, value: str, *, chained: bool = False) -> Criterion | None:
        """The criterion, or None for an empty value (R4: empty parameters are ignored)."""
        if value == "":
            return None
        base, dot, rest = name.partition(".")
        param_name, colon, modifier_text = base.partition(":")
        modifier = modifier_text if colon else None
        kind, param = self._kind(resource_type, param_name)
        if dot:
            return self._chain(resource_type, name, value, param, modifier, rest, chained)
        self._check_modifier(resource_type, param_name, kind, modifier)
        if modifier == "missing":
            values: tuple[Value, ...] = (parse_missing(param_name, value),)
        else:
            items = [v for v in split_escaped(value, ",") if v != ""] if kind != "_id" else value.split(",")
            if not items:
                return None
            parse_one = self._value_parser(param_name, kind, modifier, param)
            values = tuple(dict.fromkeys(parse_one(item) for item in items))
        return Criterion(param_name, kind, modifier, values, raw_name=name, raw_value=value)

    def _kind(self, resource_type: str, name: str) -> tuple[Kind, SearchParam | None]:
        if name in ("_id", "_lastUpdated"):
            return name, None  # type: ignore[return-value]
        param = self.lookup(resource_type, name)
        if param is None:
            raise Unsupported(f"Unknown search parameter {name!r} for {resource_type}")
        return param.type, param

    def _check_modifier(self, resource_type: str, name: str, kind: Kind, modifier: str | None) -> None:
        if modifier is None or modifier in _MODIFIERS[kind]:
            return
        if kind == "reference" and modifier[:1].isupper():
            return  # a type modifier, checked against the targets with the value
        raise Unsupported(f"Modifier :{modifier} is not supported on {resource_type} parameter {name!r}")

    def _value_parser(
        self, name: str, kind: Kind, modifier: str | None, param: SearchParam | None
    ) -> Callable[[str], Value]:
        if kind == "token" and modifier != "text":
            return lambda v: parse_token(name, v)
        if kind in ("date", "_lastUpdated"):
            return lambda v: parse_date(name, v)
        if kind == "number":
            return lambda v: parse_number(name, v)
        if kind == "quantity":
            return lambda v: parse_quantity(name, v)
        if kind == "reference":
            assert param is not None
            return lambda v: parse_reference(name, v, modifier, param.targets)
        if kind == "_id":
            return _parse_id
        return lambda v: v  # string, uri, token :text

    def _chain(
        self,
        resource_type: str,
        name: str,
        value: str,
        param: SearchParam | None,
        type_modifier: str | None,
        chained_name: str,
        nested: bool,
    ) -> Criterion | None:
        """`param[:Type].chained=value`: resources whose `param` points at a `Type` matching."""
        if nested or "." in chained_name:
            raise InvalidInput(f"{name}: only one level of chaining is supported")
        if param is None or param.type != "reference":
            raise InvalidInput(f"{name}: only reference parameters can be chained")
        if type_modifier is not None and param.targets and type_modifier not in param.targets:
            raise InvalidInput(
                f"{name}: {param.name} refers to {', '.join(param.targets)}, not {type_modifier}"
            )
        chained_param = chained_name.partition(":")[0]
        candidates = [type_modifier] if type_modifier else list(param.targets or self._params)
        declaring = [t for t in candidates if self.lookup(t, chained_param) or chained_param.startswith("_")]
        local = [t for t in declaring if t in self._local_types]
        if not local:
            if declaring:
                raise InvalidInput(
                    f"{name}: {', '.join(declaring)} is stored by another service; "
                    "cross-service chains are resolved by the gateway",
                    issue_code="not-supported",
                )
            raise InvalidInput(f"{name}: no type {param.name} refers to has a parameter {chained_param!r}")
        chain = []
        for target_type in local:
            inner = self.parse(target_type, chained_name, value, chained=True)
            if inner is None:
                return None
            chain.append((target_type, inner))
        return Criterion(
            param.name, "reference", type_modifier, (), tuple(chain), raw_name=name, raw_value=value
        )


def _parse_id(text: str) -> str:
    try:
        return check_id(text)
    except InvalidInput:
        raise InvalidInput(f"_id: {text!r} is not a resource id") from None
