"""What a parsed search is made of: plain frozen data, no I/O.

A `SearchQuery` holds criteria (ANDed; each criterion's values ORed, R4 search.html#combining),
result parameters (_sort, _count, _include, _revinclude, _summary, _elements, _total) and the
decoded paging cursor. `parse_search` (query.py) builds it, `run_search` (engine.py) runs it and
`searchset_bundle` (render.py) turns the result into Bundle bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from shared.store.records import StoredResource

#: Prefixes of number, date and quantity values (http://hl7.org/fhir/R4/search.html#prefix).
Prefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
PREFIXES: tuple[Prefix, ...] = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")

#: What a criterion searches: a declared parameter type, or one of the resource-level ones.
Kind = Literal["token", "string", "date", "reference", "number", "quantity", "uri", "_id", "_lastUpdated"]
Summary = Literal["true", "false", "text", "data", "count"]
TotalMode = Literal["none", "estimate", "accurate"]


@dataclass(frozen=True, slots=True)
class TokenValue:
    """`system|code`. system None: any system; "" : no system (`|code`). code None: any (`system|`)."""

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class DateValue:
    """A prefixed date: the search range [low, high) at the precision written."""

    prefix: Prefix
    low: datetime
    high: datetime


@dataclass(frozen=True, slots=True)
class NumberValue:
    """A prefixed decimal and its implicit range [low, high) (half a unit of its last digit)."""

    prefix: Prefix
    value: Decimal
    low: Decimal
    high: Decimal


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """`[prefix]number|system|code`; system None: any; code None: any unit."""

    number: NumberValue
    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """A reference target: type None means any type the parameter allows."""

    target_type: str | None
    target_id: str


Value = TokenValue | DateValue | NumberValue | QuantityValue | ReferenceValue | str | bool


@dataclass(frozen=True, slots=True)
class Criterion:
    """One `name=value` of the query. `modifier` is None, a modifier name ("not", "text", "exact",
    "contains", "missing", "below", "above") or, for a reference, a type ("Patient"). With
    `modifier == "missing"` the single value is a bool; for string, uri and `:text` values are
    str; otherwise the typed values above."""

    param: str
    kind: Kind
    modifier: str | None
    values: tuple[Value, ...]
    #: A chained search (`subject:Patient.name=x`): per target type, the criterion on it.
    chain: tuple[tuple[str, Criterion], ...] = ()
    #: The name and value as written, for the self link.
    raw_name: str = ""
    raw_value: str = ""


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str  # a declared parameter, "_id" or "_lastUpdated"
    kind: Kind
    descending: bool


@dataclass(frozen=True, slots=True)
class Include:
    """`_include=Source:param[:Target]` (or `_revinclude`): follow `param` of `source` resources."""

    source: str
    param: str
    target: str | None

    def __str__(self) -> str:
        return f"{self.source}:{self.param}" + (f":{self.target}" if self.target else "")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page starts: after (or, for "prev", before) the row with these sort keys.

    `snapshot` pins the result set to resources created at or before the first page's time.
    """

    snapshot: datetime
    direction: Literal["next", "prev"]
    keys: tuple[object, ...]  # one value per sort key, then the resource id
    total: int | None
    token: str  # the encoded form, echoed in the self link


@dataclass(frozen=True)
class SearchQuery:
    resource_type: str
    criteria: tuple[Criterion, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 50
    cursor: Cursor | None = None
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    #: `_include` / `_revinclude` values naming types this service does not own: resolved by the
    #: gateway, echoed in links so every page carries them.
    remote_includes: tuple[str, ...] = ()
    remote_revincludes: tuple[str, ...] = ()
    summary: Summary | None = None
    elements: tuple[str, ...] = ()
    total: TotalMode | None = None
    #: Parameters dropped under `Prefer: handling=lenient` (not echoed in links).
    ignored: tuple[str, ...] = ()


@dataclass
class SearchResult:
    matches: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    previous_cursor: str | None = None
