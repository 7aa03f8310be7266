"""Criteria as SQL over the index tables (SQLAlchemy Core, the same on SQLite and PostgreSQL).

Every positive criterion is `resources.id IN (SELECT resource_id FROM idx_x WHERE
resource_type = :t AND param = :p AND <value match>)`, answered from the index tables'
(resource_type, param, value..., resource_id) indexes; negative ones (`:not`, `:missing=true`)
are NOT EXISTS over the (resource_type, resource_id) index. Index rows exist only for current,
non-deleted versions (the store rewrites them on every write), so the criteria see current
content only.

Range semantics follow http://hl7.org/fhir/R4/search.html#prefix: a date's search value and
the indexed value are both ranges [low, high); a number's search value has the implicit range
of its precision (search.html#number) and is compared with the exact stored value.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, exists, false, func, literal, or_, select

from shared.fhir.search.model import (
    Criterion,
    DateValue,
    Kind,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    TokenValue,
)
from shared.fhir.search.values import approximate_range
from shared.store.indexing import MAX_INDEXED_CHARS, normalize_string
from shared.store.schema import EXACT_SUFFIX, TEXT_SUFFIX, CoreTables
from shared.store.search import prefix_upper_bound

Clause = ColumnElement[bool]
#: ap on numbers: within 10% of the value (R4 search.html#prefix).
_NUMBER_AP_FRACTION = Decimal("0.1")


def _cap(text: str) -> str:
    return text[:MAX_INDEXED_CHARS]


class CriteriaCompiler:
    """Turns criteria on one resource type into WHERE clauses on a `resources` alias."""

    def __init__(self, tables: CoreTables, now: datetime) -> None:
        self.tables = tables
        self.now = now
        self._tables_of_kind: dict[Kind, Table] = {
            "token": tables.idx_token,
            "uri": tables.idx_token,
            "string": tables.idx_string,
            "date": tables.idx_date,
            "reference": tables.idx_reference,
            "number": tables.idx_number,
            "quantity": tables.idx_quantity,
        }

    def clause(self, resource_type: str, resources: Any, c: Criterion) -> Clause:
        """The condition on `resources` (the resources table or an alias of it)."""
        rid = resources.c.id
        if c.kind == "_id":
            return rid.in_([str(v) for v in c.values])
        if c.kind == "_lastUpdated":
            moment = resources.c.last_updated
            return or_(*(self._point_match(v, moment) for v in c.values if isinstance(v, DateValue)))
        if c.modifier == "missing":
            return self._missing(resource_type, rid, c)
        if c.chain:
            return rid.in_(self._chained(resource_type, c))
        if c.kind == "token" and c.modifier == "text":
            return self._string_ids(resource_type, rid, c.param + TEXT_SUFFIX, c.values, prefix=True)
        if c.kind == "string":
            return self._string(resource_type, rid, c)
        table = self._tables_of_kind[c.kind]
        match = or_(*(self._value_match(c, table, v) for v in c.values))
        keyed = and_(table.c.resource_type == resource_type, table.c.param == c.param)
        if c.modifier == "not":  # R4: resources with no matching value, including none at all
            return ~exists().where(keyed, table.c.resource_id == rid, match)
        return rid.in_(select(table.c.resource_id).where(keyed, match))

    # --- per type -------------------------------------------------------------------------------

    def _value_match(self, c: Criterion, table: Table, value: Any) -> Clause:
        if isinstance(value, TokenValue):
            return _token_match(table, value)
        if isinstance(value, DateValue):
            return self._range_match(value, table.c.low, table.c.high)
        if isinstance(value, NumberValue):
            return _number_match(value, table.c.value)
        if isinstance(value, QuantityValue):
            return _quantity_match(value, table)
        if isinstance(value, ReferenceValue):
            match = table.c.target_id == _cap(value.target_id)
            return (
                match if value.target_type is None else and_(match, table.c.target_type == value.target_type)
            )
        if c.kind == "uri" and isinstance(value, str):
            return _uri_match(table.c.code, value, c.modifier)
        raise AssertionError(f"no match for {c.kind} value {value!r}")

    def _string(self, resource_type: str, rid: Any, c: Criterion) -> Clause:
        if c.modifier == "exact":
            s = self.tables.idx_string
            match = s.c.value.in_([_cap(str(v)) for v in c.values])
            keyed = and_(s.c.resource_type == resource_type, s.c.param == c.param + EXACT_SUFFIX)
            return rid.in_(select(s.c.resource_id).where(keyed, match))
        return self._string_ids(resource_type, rid, c.param, c.values, prefix=c.modifier is None)

    def _string_ids(self, resource_type: str, rid: Any, param: str, values: Any, *, prefix: bool) -> Clause:
        """Starts-with (default) or `:contains` on normalized text (case and accent insensitive)."""
        s = self.tables.idx_string
        matches: list[Clause] = []
        for value in values:
            wanted = normalize_string(str(value))
            if not prefix:
                escaped = wanted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                matches.append(s.c.value.like(f"%{escaped}%", escape="\\"))
                continue
            # A range, not LIKE: it uses the (param, value) index on both databases (schema.py).
            upper = prefix_upper_bound(wanted)
            lower = s.c.value >= wanted
            matches.append(lower if upper is None else and_(lower, s.c.value < upper))
        keyed = and_(s.c.resource_type == resource_type, s.c.param == param)
        return rid.in_(select(s.c.resource_id).where(keyed, or_(*matches)))

    def _missing(self, resource_type: str, rid: Any, c: Criterion) -> Clause:
        table = self._tables_of_kind[c.kind]
        keyed = and_(table.c.resource_type == resource_type, table.c.param == c.param)
        if c.values[0] is True:
            return ~exists().where(keyed, table.c.resource_id == rid)
        return rid.in_(select(table.c.resource_id).where(keyed))

    def _chained(self, resource_type: str, c: Criterion) -> Any:
        """Ids of `resource_type` whose `c.param` points at a target matching the chained criterion."""
        ref, r2 = self.tables.idx_reference, self.tables.resources.alias("chained")
        per_type = [
            and_(
                ref.c.target_type == target_type,
                ref.c.target_id.in_(
                    select(r2.c.id).where(
                        r2.c.resource_type == target_type,
                        r2.c.deleted.is_(False),
                        self.clause(target_type, r2, inner),
                    )
                ),
            )
            for target_type, inner in c.chain
        ]
        keyed = and_(ref.c.resource_type == resource_type, ref.c.param == c.param)
        return select(ref.c.resource_id).where(keyed, or_(*per_type))

    # --- ranges ---------------------------------------------------------------------------------

    def _range_match(self, v: DateValue, low: Any, high: Any) -> Clause:
        """An indexed range [low, high) against a search range (R4 search.html#prefix)."""
        contained = and_(low >= v.low, high <= v.high, low <= v.high)  # the last bounds the index scan
        conditions: dict[str, Callable[[], Clause]] = {
            "eq": lambda: contained,
            "ne": lambda: or_(low < v.low, high > v.high),
            "gt": lambda: high > v.high,
            "lt": lambda: low < v.low,
            # ge is "gt or eq": since low < high, "starts at or after the search range's start,
            # or ends after its end" says the same; le likewise.
            "ge": lambda: or_(low >= v.low, high > v.high),
            "le": lambda: or_(low < v.low, high <= v.high),
            "sa": lambda: low >= v.high,
            "eb": lambda: and_(high <= v.low, low < v.low),
        }
        if v.prefix == "ap":
            wide_low, wide_high = approximate_range(v, self.now)
            return and_(low < wide_high, high > wide_low)
        return conditions[v.prefix]()

    def _point_match(self, v: DateValue, moment: Any) -> Clause:
        """A single instant (meta.lastUpdated) against a search range."""
        if v.prefix == "ap":
            wide_low, wide_high = approximate_range(v, self.now)
            return and_(moment >= wide_low, moment < wide_high)
        return {
            "eq": lambda: and_(moment >= v.low, moment < v.high),
            "ne": lambda: or_(moment < v.low, moment >= v.high),
            "gt": lambda: moment >= v.high,
            "sa": lambda: moment >= v.high,
            "lt": lambda: moment < v.low,
            "eb": lambda: moment < v.low,
            "ge": lambda: moment >= v.low,
            "le": lambda: moment < v.high,
        }[v.prefix]()


def _token_match(table: Table, v: TokenValue) -> Clause:
    parts = []
    if v.code is not None:
        parts.append(table.c.code == _cap(v.code))
    if v.system == "":
        parts.append(table.c.system.is_(None))
    elif v.system is not None:
        parts.append(table.c.system == _cap(v.system))
    return and_(*parts) if parts else false()


def _number_match(v: NumberValue, column: Any) -> Clause:
    """A stored number against a search number: `eq` within its precision, the others exact."""
    q, low, high = float(v.value), float(v.low), float(v.high)
    if v.prefix == "ap":
        spread = abs(v.value) * _NUMBER_AP_FRACTION
        if spread == 0:
            return and_(column >= low, column < high)
        return and_(column >= float(v.value - spread), column <= float(v.value + spread))
    return {
        "eq": lambda: and_(column >= low, column < high),
        "ne": lambda: or_(column < low, column >= high),
        "gt": lambda: column > q,
        "sa": lambda: column > q,
        "lt": lambda: column < q,
        "eb": lambda: column < q,
        "ge": lambda: column >= q,
        "le": lambda: column <= q,
    }[v.prefix]()


def _quantity_match(v: QuantityValue, table: Table) -> Clause:
    parts = [_number_match(v.number, table.c.value)]
    if v.system is not None:
        parts.append(table.c.system == _cap(v.system))
    if v.code is not None:
        # `value||code`: the code, or the unit as written (R4 search.html#quantity).
        code = _cap(v.code)
        parts.append(
            table.c.code == code if v.system is not None else or_(table.c.code == code, table.c.unit == code)
        )
    return and_(*parts)


def _uri_match(column: Any, uri: str, modifier: str | None) -> Clause:
    uri = _cap(uri)
    if modifier == "below":  # the stored uri starts with the value
        return func.substr(column, 1, len(uri)) == uri
    if modifier == "above":  # the value starts with the stored uri
        return func.substr(literal(uri), 1, func.length(column)) == column
    return column == uri
