"""The store's minimal search: an AND of token and string-prefix criteria over the index tables.

The full FHIR search layer (modifiers, prefixes, chaining, paging) builds its own queries on the
same tables; this covers what services need internally (match a patient by identifier, find
by name) and fixes the query shapes the indexes are designed for.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, select

from shared.errors import InvalidInput
from shared.fhir.search_params import SearchParam
from shared.store.indexing import MAX_INDEXED_CHARS, normalize_string
from shared.store.schema import CoreTables

MAX_LIMIT = 1000


def search_query(
    tables: CoreTables,
    params: Sequence[SearchParam],
    resource_type: str,
    *,
    token: Mapping[str, tuple[str | None, str]] | None = None,
    string: Mapping[str, str] | None = None,
    limit: int = 50,
) -> Select[Any]:
    """Current, non-deleted resources matching every criterion, oldest change first.

    token: param -> (system, code). system None matches any system, "" only codes without one
    (FHIR `|code`); code "" matches any code in the system (FHIR `system|`). uri parameters
    are searched here too, as (None, uri).
    string: param -> prefix, matched case- and accent-insensitively ("jose" finds "José").
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    declared = {p.name: p for p in params}
    r = tables.resources
    query = select(r.c.id, r.c.version_id, r.c.last_updated, r.c.deleted, r.c.content).where(
        r.c.resource_type == resource_type, r.c.deleted.is_(False)
    )
    # Each criterion is an IN over its index table, answered from the composite search index.
    for name, (system, code) in (token or {}).items():
        _check_param(declared, resource_type, name, "token")
        t = tables.idx_token
        ids = select(t.c.resource_id).where(t.c.resource_type == resource_type, t.c.param == name)
        if code:
            ids = ids.where(t.c.code == code[:MAX_INDEXED_CHARS])
        if system == "":
            ids = ids.where(t.c.system.is_(None))
        elif system is not None:
            ids = ids.where(t.c.system == system[:MAX_INDEXED_CHARS])
        elif not code:
            raise InvalidInput(f"Search parameter {name!r} needs a code or a system")
        query = query.where(r.c.id.in_(ids))
    for name, value in (string or {}).items():
        _check_param(declared, resource_type, name, "string")
        s = tables.idx_string
        ids = select(s.c.resource_id).where(s.c.resource_type == resource_type, s.c.param == name)
        prefix = normalize_string(value)
        if prefix:
            # A range rather than LIKE: it uses the index on both databases (see schema.py).
            ids = ids.where(s.c.value >= prefix)
            upper = prefix_upper_bound(prefix)
            if upper is not None:
                ids = ids.where(s.c.value < upper)
        query = query.where(r.c.id.in_(ids))
    return query.order_by(r.c.last_updated, r.c.id).limit(limit)


def _check_param(declared: Mapping[str, SearchParam], resource_type: str, name: str, kind: str) -> None:
    param = declared.get(name)
    if param is None:
        raise InvalidInput(f"Unknown search parameter {name!r} for {resource_type}")
    # uri parameters are indexed in the token table (indexing.py) and match the same way.
    if param.type != kind and not (kind == "token" and param.type == "uri"):
        raise InvalidInput(f"Search parameter {name!r} of {resource_type} is a {param.type}, not a {kind}")


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound)."""
    stem = prefix.rstrip(chr(sys.maxunicode))
    if not stem:
        return None
    following = ord(stem[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates cannot be encoded; skip to the next character
        following = 0xE000
    return stem[:-1] + chr(following)
