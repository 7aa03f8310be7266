"""`run_search`: one page of a search, its total and its included resources.

Paging is keyset pagination on (sort keys..., id) pinned to a snapshot time T0, the moment the
first page ran, carried in every cursor. The rule, for pages after the first:

- A resource belongs to the result set if it matches on its current content, is not deleted,
  and was created at or before T0 (its first version in history is no later than T0).
  Resources created after T0 never show up in that paging session, so later pages cannot
  shift; a new search sees them.
- An existing resource updated after T0 stays in the set and keeps its place: the default
  order (`_id`) never changes, and a `_lastUpdated` sort uses the time of the version that was
  current at T0. It is served with its current content. Sorting on another parameter uses
  current values: an update that changes a sort value between pages can move the resource
  across the page boundary (as in every keyset-paging server), and one that changes a
  criterion can take it out of the set.
- A resource deleted after T0 disappears.

So every resource that existed at T0 and still matches appears exactly once. The default
order is by id (stable under updates, and the primary key serves it).

Totals (`Bundle.total`, R4 search.html#total): `_total=accurate` counts on every page;
`estimate` counts on the first page and carries the figure in the cursor; with no `_total`
the first page counts only up to 1,000 matches (beyond that the total is left out), and a
first page that holds every match needs no count at all. `_total=none` never counts;
`_summary=count` and `_count=0` always count.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.fhir.search.compile import CriteriaCompiler
from shared.fhir.search.includes import included_resources
from shared.fhir.search.model import Cursor, SearchQuery, SearchResult
from shared.fhir.search.ordering import SortTerm, after, order_by, sort_terms
from shared.fhir.search.paging import encode_cursor
from shared.store import Store, StoredResource
from shared.store.schema import CoreTables

#: Without `_total`, the first page counts at most this many matches.
DEFAULT_TOTAL_CAP = 1000


async def run_search(store: Store, query: SearchQuery) -> SearchResult:
    now = datetime.now(UTC)
    cursor = query.cursor
    snapshot = cursor.snapshot if cursor is not None else now
    plan = _Plan(store.tables, query, now, snapshot if cursor is not None else None)
    async with store.connect() as connection:
        if query.count == 0 or query.summary == "count":
            return SearchResult([], [], await _count(connection, plan.filtered(), None))
        rows, more = await plan.page(connection)
        if cursor is not None and cursor.direction == "prev" and not rows:
            # Nothing before the anchor any more: serve the first page of the same snapshot.
            rows, more = await plan.page(connection, first=True)
            first_page = True
        else:
            first_page = cursor is None
        matches = [_stored(query.resource_type, row) for row in rows]
        total = await _total(connection, plan, query, first_page, len(matches), more)
        included = await included_resources(connection, store.tables, query, matches)
    going_back = cursor is not None and cursor.direction == "prev" and not first_page
    keys = [plan.keys(row) for row in rows]
    has_next = more if not going_back else bool(keys)
    has_previous = (not first_page) and (more if going_back else bool(keys))
    return SearchResult(
        matches=matches,
        included=included,
        total=total,
        next_cursor=encode_cursor(query, snapshot, "next", keys[-1], total) if has_next and keys else None,
        previous_cursor=encode_cursor(query, snapshot, "prev", keys[0], total) if has_previous else None,
    )


class _Plan:
    """The SELECTs of one search: criteria, snapshot and order."""

    def __init__(
        self, tables: CoreTables, query: SearchQuery, now: datetime, snapshot: datetime | None
    ) -> None:
        self.tables = tables
        self.query = query
        self.snapshot = snapshot
        self.r = tables.resources
        compiler = CriteriaCompiler(tables, now)
        r = self.r
        conditions = [r.c.resource_type == query.resource_type, r.c.deleted.is_(False)]
        conditions += [compiler.clause(query.resource_type, r, c) for c in query.criteria]
        if snapshot is not None:
            conditions.append(_created_by(tables, snapshot))
        self.conditions = conditions
        self.terms = sort_terms(tables, query.resource_type, r, query.sort, snapshot)
        self.unchanged_terms = sort_terms(tables, query.resource_type, r, query.sort, None)

    def filtered(self) -> Select[Any]:
        return select(self.r.c.id).where(*self.conditions)

    async def page(self, connection: AsyncConnection, *, first: bool = False) -> tuple[list[Any], bool]:
        """The page's rows in order, and whether more rows lie beyond it in the paging direction."""
        cursor = None if first else self.query.cursor
        reverse = cursor is not None and cursor.direction == "prev"
        rows = list((await connection.execute(self._page_select(cursor, reverse))).all())
        more = len(rows) > self.query.count
        rows = rows[: self.query.count]
        return (rows[::-1] if reverse else rows), more

    def _page_select(self, anchor: Cursor | None, reverse: bool) -> Select[Any]:
        """SELECT id, version_id, last_updated, content, sort_0, ... of the page (and one more)."""
        if not any(t.nullable for t in self.terms) and not self._moved_rows_possible():
            # _id / _lastUpdated order: an index walk that reads only the rows it returns.
            return self._keyed(self.terms, self.conditions, anchor, reverse, content=True)
        # Otherwise the page is chosen on ids and sort keys alone, and only its rows are joined
        # to their content, so the database never carries resource bodies through a sort.
        keyed = self._keyed_select(anchor, reverse).subquery("keyed")
        r = self.r
        columns = [keyed.c[f"sort_{i}"] for i in range(len(self.terms) - 1)] + [keyed.c.id]
        terms = [SortTerm(c, t.descending, t.nullable) for c, t in zip(columns, self.terms, strict=True)]
        joined = keyed.join(r, and_(r.c.resource_type == self.query.resource_type, r.c.id == keyed.c.id))
        return (
            select(r.c.id, r.c.version_id, r.c.last_updated, r.c.content, *columns[:-1])
            .select_from(joined)
            .order_by(*order_by(terms, reverse=reverse))
        )

    def _moved_rows_possible(self) -> bool:
        """Whether a _lastUpdated order must place rows updated since the snapshot."""
        return self.snapshot is not None and any(k.param == "_lastUpdated" for k in self.query.sort)

    def _keyed_select(self, anchor: Cursor | None, reverse: bool) -> Select[Any]:
        """SELECT id, sort_0, ... of the page's rows (one more than the page), in order."""
        if any(t.nullable for t in self.terms):
            return self._keyed_through_cte(anchor, reverse)
        if self._moved_rows_possible():
            return self._keyed_by_last_updated(anchor, reverse)
        return self._keyed(self.terms, self.conditions, anchor, reverse)  # the indexes give the order

    def _keyed(
        self,
        terms: list[SortTerm],
        conditions: list[Any],
        anchor: Cursor | None,
        reverse: bool,
        *,
        content: bool = False,
    ) -> Select[Any]:
        r = self.r
        labels = [t.expression.label(f"sort_{i}") for i, t in enumerate(terms[:-1])]
        stored = (r.c.version_id, r.c.last_updated, r.c.content) if content else ()
        statement = select(r.c.id, *stored, *labels).where(*conditions)
        if anchor is not None:
            statement = statement.where(after(terms, anchor.keys, reverse=reverse))
        return statement.order_by(*order_by(terms, reverse=reverse)).limit(self.query.count + 1)

    def _keyed_through_cte(self, anchor: Cursor | None, reverse: bool) -> Select[Any]:
        """A parameter's sort value is a correlated subquery on its index table. It is computed
        once per matching row in a materialized CTE: used directly in the keyset predicate and
        the ORDER BY, the database would evaluate it again everywhere it appears."""
        r = self.r
        labels = [t.expression.label(f"sort_{i}") for i, t in enumerate(self.terms[:-1])]
        matched = select(r.c.id, *labels).where(*self.conditions).cte("matched").prefix_with("MATERIALIZED")
        return self._reordered(matched, anchor, reverse)

    def _keyed_by_last_updated(self, anchor: Cursor | None, reverse: bool) -> Select[Any]:
        """A _lastUpdated order after the first page: rows unchanged since the snapshot come in
        index order; the few updated since are placed by their time at the snapshot (history)."""
        r, snapshot = self.r, self.snapshot
        assert snapshot is not None
        moved = sort_terms(
            self.tables, self.query.resource_type, r, self.query.sort, snapshot, updated_since=True
        )
        unchanged = self._keyed(
            self.unchanged_terms, [*self.conditions, r.c.last_updated <= snapshot], anchor, reverse
        )
        updated = self._keyed(moved, [*self.conditions, r.c.last_updated > snapshot], anchor, reverse)
        # Each side keeps its own ORDER BY and LIMIT, so it is wrapped (SQLite allows neither
        # directly in a UNION member).
        members = [select(*q.subquery().c) for q in (unchanged, updated)]
        both = union_all(*members).subquery("page")
        return self._reordered(both, anchor, reverse)

    def _reordered(self, rows: Any, anchor: Cursor | None, reverse: bool) -> Select[Any]:
        """Keyset and order over the columns (id, sort_0, ...) of a CTE or subquery."""
        columns = [rows.c[f"sort_{i}"] for i in range(len(self.terms) - 1)] + [rows.c.id]
        terms = [SortTerm(c, t.descending, t.nullable) for c, t in zip(columns, self.terms, strict=True)]
        statement = select(rows.c.id, *columns[:-1])
        if anchor is not None:
            statement = statement.where(after(terms, anchor.keys, reverse=reverse))
        return statement.order_by(*order_by(terms, reverse=reverse)).limit(self.query.count + 1)

    def keys(self, row: Any) -> tuple[Any, ...]:
        return (*(row._mapping[f"sort_{i}"] for i in range(len(self.terms) - 1)), row.id)


def _stored(resource_type: str, row: Any) -> StoredResource:
    return StoredResource(resource_type, row.id, row.version_id, row.last_updated, False, bytes(row.content))


def _created_by(tables: CoreTables, snapshot: datetime) -> Any:
    """Created at or before the snapshot: unchanged since, or its first version was."""
    r, h = tables.resources, tables.resource_history
    first_version = exists().where(
        h.c.resource_type == r.c.resource_type,
        h.c.id == r.c.id,
        h.c.version_id == 1,
        h.c.last_updated <= snapshot,
    )
    return or_(r.c.last_updated <= snapshot, first_version)


async def _count(connection: AsyncConnection, filtered: Select[Any], cap: int | None) -> int | None:
    inner = filtered if cap is None else filtered.limit(cap + 1)
    counted = (await connection.execute(select(func.count()).select_from(inner.subquery()))).scalar_one()
    return None if cap is not None and counted > cap else int(counted)


async def _total(
    connection: AsyncConnection, plan: _Plan, query: SearchQuery, first_page: bool, on_page: int, more: bool
) -> int | None:
    mode = query.total
    if mode == "none":
        return None
    if first_page and not more and query.cursor is None:
        return on_page  # the whole result is on this page
    if mode == "accurate":
        return await _count(connection, plan.filtered(), None)
    if not first_page:
        return query.cursor.total if query.cursor is not None else None
    return await _count(connection, plan.filtered(), None if mode == "estimate" else DEFAULT_TOTAL_CAP)


__all__ = ["DEFAULT_TOTAL_CAP", "run_search"]
