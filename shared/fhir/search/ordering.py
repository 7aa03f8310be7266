"""Sort order and keyset predicates for paging (R4 search.html#sort).

A page is "the first `_count` rows after the anchor" in the order (sort keys..., id): keyset
pagination, which neither skips nor repeats rows when others are inserted between pages (an
OFFSET would). The id breaks ties, so the order is total.

A sort on a parameter uses the resource's smallest indexed value ascending and its largest
descending, as R4 prescribes for repeating elements; a date's range sorts by its low end
ascending and its high end descending. Resources without a value sort last in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, func, or_, select

from shared.fhir.search.model import SortKey
from shared.store.schema import CoreTables

Clause = ColumnElement[bool]


@dataclass(frozen=True)
class SortTerm:
    expression: Any
    descending: bool
    nullable: bool


def sort_terms(
    tables: CoreTables,
    resource_type: str,
    r: Table,
    sort: tuple[SortKey, ...],
    snapshot: datetime | None,
    *,
    updated_since: bool = False,
) -> list[SortTerm]:
    """The ORDER BY terms, ending with the id. `snapshot` (on pages after the first) makes a
    _lastUpdated sort use the time of the version current at the snapshot; `updated_since`
    says every row was updated after it, so that time always comes from history."""
    terms = [_term(tables, resource_type, r, key, snapshot, updated_since) for key in sort]
    # The id follows the last key's direction, so `_sort=-_lastUpdated` is one backward scan of
    # the (resource_type, last_updated, id) index.
    terms.append(SortTerm(r.c.id, bool(sort) and sort[-1].descending, False))
    return terms


def _term(
    tables: CoreTables,
    resource_type: str,
    r: Table,
    key: SortKey,
    snapshot: datetime | None,
    updated_since: bool,
) -> SortTerm:
    if key.param == "_id":
        return SortTerm(r.c.id, key.descending, False)
    if key.param == "_lastUpdated":
        if snapshot is None:
            return SortTerm(r.c.last_updated, key.descending, False)
        h = tables.resource_history
        as_of_snapshot = (
            select(func.max(h.c.last_updated))
            .where(h.c.resource_type == r.c.resource_type, h.c.id == r.c.id, h.c.last_updated <= snapshot)
            .scalar_subquery()
        )
        if updated_since:
            return SortTerm(as_of_snapshot, key.descending, False)
        # Only resources updated since the snapshot pay for the history lookup.
        moment = case((r.c.last_updated <= snapshot, r.c.last_updated), else_=as_of_snapshot)
        return SortTerm(moment, key.descending, False)
    table, column = _sort_column(tables, key)
    aggregate = func.max if key.descending else func.min
    value = (
        select(aggregate(column))
        .where(
            table.c.resource_type == resource_type, table.c.resource_id == r.c.id, table.c.param == key.param
        )
        .scalar_subquery()
    )
    return SortTerm(value, key.descending, True)


def _sort_column(tables: CoreTables, key: SortKey) -> tuple[Table, Any]:
    if key.kind in ("token", "uri"):
        return tables.idx_token, tables.idx_token.c.code
    if key.kind == "string":
        return tables.idx_string, tables.idx_string.c.value
    if key.kind == "date":
        d = tables.idx_date
        return d, (d.c.high if key.descending else d.c.low)
    if key.kind == "reference":
        return tables.idx_reference, tables.idx_reference.c.target_id
    if key.kind == "number":
        return tables.idx_number, tables.idx_number.c.value
    return tables.idx_quantity, tables.idx_quantity.c.value


def order_by(terms: list[SortTerm], *, reverse: bool) -> list[Any]:
    """ORDER BY items; `reverse` walks the same order backwards (for a previous page)."""
    items: list[Any] = []
    for term in terms:
        descending = term.descending != reverse
        if term.nullable:
            missing = term.expression.is_(None)
            items.append(missing.desc() if reverse else missing.asc())
        items.append(term.expression.desc() if descending else term.expression.asc())
    return items


def after(terms: list[SortTerm], anchor: tuple[Any, ...], *, reverse: bool) -> Clause:
    """Rows strictly after `anchor` in the order (before it, with `reverse`)."""
    alternatives = []
    for i, (term, value) in enumerate(zip(terms, anchor, strict=True)):
        beyond = _beyond(term, value, reverse)
        if beyond is None:
            continue
        same = [_same(t, v) for t, v in zip(terms[:i], anchor[:i], strict=True)]
        alternatives.append(and_(*same, beyond))
    predicate = or_(*alternatives)
    first, value = terms[0], anchor[0]
    if not first.nullable and value is not None:
        # Redundant with the OR above, but lets the database start its index scan at the anchor.
        going_up = first.descending == reverse
        predicate = and_(first.expression >= value if going_up else first.expression <= value, predicate)
    return predicate


def _beyond(term: SortTerm, value: Any, reverse: bool) -> Clause | None:
    expression = term.expression
    if not reverse:
        if value is None:
            return None  # nothing sorts after a missing value but other missing values
        past = expression < value if term.descending else expression > value
        return or_(past, expression.is_(None)) if term.nullable else past
    if value is None:
        return expression.is_not(None)
    return expression > value if term.descending else expression < value


def _same(term: SortTerm, value: Any) -> Clause:
    return term.expression.is_(None) if value is None else term.expression == value
