"""`parse_search`: a search's query parameters, checked against the declared search parameters.

Names follow R4 search.html: `name[:modifier]=value[,value]`; a repeated name is AND, a comma
is OR; `ref[:Type].param=value` chains one level. Anything not understood is a 400
(InvalidInput) unless the client asked for `Prefer: handling=lenient`, in which case unknown
parameters and unsupported modifiers are dropped and listed in `SearchQuery.ignored`
(http://hl7.org/fhir/R4/search.html#errors). Malformed values are a 400 either way.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import cast

from shared.errors import InvalidInput
from shared.fhir.search.criteria import CriterionParser, Unsupported
from shared.fhir.search.model import Criterion, Include, Kind, SearchQuery, SortKey, Summary, TotalMode
from shared.fhir.search.paging import decode_cursor
from shared.fhir.search_params import SEARCH_PARAMETERS, SearchParam

DEFAULT_COUNT = 50
MAX_COUNT = 1000

#: Never echoed in links: _format and _pretty are the HTTP layer's (content negotiation);
#: _totalMethod is not FHIR but fhirpy's `count()` sends it (with `_count=0`, which counts).
_TRANSPORT_PARAMS = frozenset({"_format", "_pretty", "_totalMethod"})
_SUMMARIES = ("true", "false", "text", "data", "count")
_TOTALS = ("none", "estimate", "accurate")
_ELEMENT_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def parse_search(
    resource_type: str,
    params: Sequence[tuple[str, str]],
    *,
    local_types: Collection[str],
    lenient: bool = False,
    search_params: Mapping[str, Sequence[SearchParam]] = SEARCH_PARAMETERS,
) -> SearchQuery:
    """The query as understood; InvalidInput (400) for anything it cannot honour."""
    parser = _QueryParser(resource_type, frozenset(local_types), lenient, search_params)
    for name, value in params:
        if "\x00" in name or "\x00" in value:  # no database stores NUL in text
            raise InvalidInput("Search parameters cannot contain NUL characters")
        try:
            parser.add(name, value)
        except Unsupported as unsupported:
            if not lenient:
                raise InvalidInput(str(unsupported), issue_code="not-supported") from None
            parser.state.ignored.append(name)
    return parser.build()


@dataclass
class _State:
    criteria: list[Criterion] = field(default_factory=list)
    sort: tuple[SortKey, ...] | None = None
    count: int | None = None
    cursor: str | None = None
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    remote_includes: list[str] = field(default_factory=list)
    remote_revincludes: list[str] = field(default_factory=list)
    summary: Summary | None = None
    elements: tuple[str, ...] = ()
    total: TotalMode | None = None
    ignored: list[str] = field(default_factory=list)


class _QueryParser:
    def __init__(
        self,
        resource_type: str,
        local_types: frozenset[str],
        lenient: bool,
        search_params: Mapping[str, Sequence[SearchParam]],
    ) -> None:
        self.resource_type = resource_type
        self.local_types = local_types
        self.search_params = search_params
        self.criteria = CriterionParser(search_params, local_types)
        self.state = _State()

    def add(self, name: str, value: str) -> None:
        if name in _TRANSPORT_PARAMS:
            return
        handler = _RESULT_PARAMS.get(name)
        if handler is not None:
            handler(self, value)
        elif name.startswith(("_include:", "_revinclude:")):
            raise Unsupported(f"{name}: iterative includes are not supported")
        else:
            criterion = self.criteria.parse(self.resource_type, name, value)
            if criterion is not None:
                self.state.criteria.append(criterion)

    def build(self) -> SearchQuery:
        s = self.state
        if s.summary is not None and s.summary != "count" and s.elements:
            raise InvalidInput("Use _summary or _elements, not both (R4 search.html#elements)")
        query = SearchQuery(
            resource_type=self.resource_type,
            criteria=tuple(s.criteria),
            sort=s.sort or (),
            count=DEFAULT_COUNT if s.count is None else s.count,
            includes=tuple(dict.fromkeys(s.includes)),
            revincludes=tuple(dict.fromkeys(s.revincludes)),
            remote_includes=tuple(dict.fromkeys(s.remote_includes)),
            remote_revincludes=tuple(dict.fromkeys(s.remote_revincludes)),
            summary=s.summary,
            elements=s.elements,
            total=s.total,
            ignored=tuple(s.ignored),
        )
        if s.cursor is None:
            return query
        return _replace_cursor(query, s.cursor)

    # --- result parameters ----------------------------------------------------------------------

    def _sort(self, value: str) -> None:
        if self.state.sort is not None:
            raise InvalidInput("_sort may be given once (list several keys separated by commas)")
        keys = []
        for item in (v.strip() for v in value.split(",")):
            if not item:
                continue
            descending = item.startswith("-")
            name = item[1:] if descending else item
            keys.append(SortKey(name, self._sort_kind(name), descending))
        self.state.sort = tuple(keys)

    def _sort_kind(self, name: str) -> Kind:
        if name == "_id" or name == "_lastUpdated":
            return cast(Kind, name)
        param = self.criteria.lookup(self.resource_type, name)
        if param is None:
            raise InvalidInput(f"_sort: {name!r} is not a search parameter of {self.resource_type}")
        return param.type

    def _count(self, value: str) -> None:
        if not value.isdigit():
            raise InvalidInput(f"_count must be a whole number from 0 to {MAX_COUNT}, not {value!r}")
        # Larger pages are capped, as R4 allows (search.html#count: "the server ... may return less").
        self.state.count = min(int(value), MAX_COUNT)

    def _include(self, value: str) -> None:
        source, param, target = self._include_parts("_include", value)
        if source != self.resource_type:
            raise InvalidInput(f"_include={value}: the source type must be {self.resource_type}")
        targets = (target,) if target else param.targets
        if not targets or any(t not in self.local_types for t in targets):
            self.state.remote_includes.append(value)  # some targets may live in another service
        if not targets or any(t in self.local_types for t in targets):
            self.state.includes.append(Include(source, param.name, target))

    def _revinclude(self, value: str) -> None:
        source, param, target = self._include_parts("_revinclude", value)
        if source not in self.local_types:
            self.state.remote_revincludes.append(value)
        elif target in (None, self.resource_type):
            self.state.revincludes.append(Include(source, param.name, target))

    def _include_parts(self, label: str, value: str) -> tuple[str, SearchParam, str | None]:
        parts = value.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidInput(f"{label}={value}: expected [Type]:[parameter] or [Type]:[parameter]:[Target]")
        if parts[1] == "*":
            raise Unsupported(f"{label}={value}: wildcard includes are not supported")
        param = self.criteria.lookup(parts[0], parts[1])
        if param is None or param.type != "reference":
            raise Unsupported(f"{label}={value}: {parts[1]!r} is not a reference parameter of {parts[0]}")
        target = parts[2] if len(parts) == 3 else None
        if target is not None and param.targets and target not in param.targets:
            raise InvalidInput(f"{label}={value}: {param.name} refers to {', '.join(param.targets)}")
        return parts[0], param, target

    def _summary(self, value: str) -> None:
        if value not in _SUMMARIES:
            raise InvalidInput(f"_summary must be one of {', '.join(_SUMMARIES)}, not {value!r}")
        self.state.summary = cast(Summary, value)

    def _elements(self, value: str) -> None:
        names = tuple(n.strip() for n in value.split(",") if n.strip())
        bad = [n for n in names if not _ELEMENT_RE.fullmatch(n)]
        if bad:
            raise InvalidInput(f"_elements: {bad[0]!r} is not a top-level element name")
        self.state.elements = tuple(dict.fromkeys((*self.state.elements, *names)))

    def _total(self, value: str) -> None:
        if value not in _TOTALS:
            raise InvalidInput(f"_total must be one of {', '.join(_TOTALS)}, not {value!r}")
        self.state.total = cast(TotalMode, value)

    def _cursor(self, value: str) -> None:
        self.state.cursor = value


_RESULT_PARAMS = {
    "_sort": _QueryParser._sort,
    "_count": _QueryParser._count,
    "_include": _QueryParser._include,
    "_revinclude": _QueryParser._revinclude,
    "_summary": _QueryParser._summary,
    "_elements": _QueryParser._elements,
    "_total": _QueryParser._total,
    "_cursor": _QueryParser._cursor,
}


def _replace_cursor(query: SearchQuery, token: str) -> SearchQuery:
    return replace(query, cursor=decode_cursor(token, query))


def link_params(query: SearchQuery) -> list[tuple[str, str]]:
    """The query as understood, in a canonical order, without the cursor (R4 search.html#self)."""
    pairs = [(c.raw_name, c.raw_value) for c in query.criteria]
    if query.sort:
        pairs.append(("_sort", ",".join(("-" if k.descending else "") + k.param for k in query.sort)))
    pairs += [("_include", str(i)) for i in query.includes if str(i) not in query.remote_includes]
    pairs += [("_include", i) for i in query.remote_includes]
    pairs += [("_revinclude", str(i)) for i in query.revincludes]
    pairs += [("_revinclude", i) for i in query.remote_revincludes]
    if query.summary is not None:
        pairs.append(("_summary", query.summary))
    if query.elements:
        pairs.append(("_elements", ",".join(query.elements)))
    if query.total is not None:
        pairs.append(("_total", query.total))
    pairs.append(("_count", str(query.count)))
    return pairs


__all__ = ["DEFAULT_COUNT", "MAX_COUNT", "link_params", "parse_search"]
