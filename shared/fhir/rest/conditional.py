"""Conditional interactions: criteria as a client sends them, in one canonical form, and the
decision R4 prescribes for 0, 1 or several matches (http://hl7.org/fhir/R4/http.html#ccreate,
#cond-update, #3.1.0.7.1 conditional delete).

The canonical form keys the `conditional_keys` table that makes conditional create safe against
concurrent duplicates: two clients sending the same criteria in a different order or spelling
(`b=2&a=1`, `a=1&b=2`) must contend for the same key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from shared.errors import InvalidInput, PreconditionFailed
from shared.store import StoredResource

#: Parameters that shape a result but do not select resources: not part of criteria.
RESULT_PARAMETERS = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_elements",
        "_total",
        "_format",
        "_pretty",
        "_contained",
        "_containedType",
    }
)


@dataclass(frozen=True, slots=True)
class Criteria:
    """Conditional criteria of one resource type: the selecting parameters, canonical text and key."""

    resource_type: str
    params: tuple[tuple[str, str], ...]
    canonical: str
    key: str  # sha256 hex of type + canonical text


def parse_criteria(resource_type: str, query: str | Iterable[tuple[str, str]]) -> Criteria:
    """Criteria from a query string (`identifier=x%7C1`, an If-None-Exist value, with or without a
    leading `?` or `Type?`) or from (name, value) pairs. InvalidInput when nothing selects."""
    if isinstance(query, str):
        text = query.strip()
        if "?" in text:
            prefix, _, text = text.partition("?")
            if prefix and prefix != resource_type:
                raise InvalidInput(f"Criteria for {prefix} cannot select {resource_type} resources")
        pairs = parse_qsl(text, keep_blank_values=True)
    else:
        pairs = list(query)
    selecting = [(name, value) for name, value in pairs if name not in RESULT_PARAMETERS]
    if not selecting:
        raise InvalidInput(f"Conditional {resource_type} criteria need at least one search parameter")
    canonical = canonical_criteria(selecting)
    digest = hashlib.sha256(f"{resource_type}?{canonical}".encode()).hexdigest()
    return Criteria(resource_type, tuple(selecting), canonical, digest)


def canonical_criteria(pairs: Iterable[tuple[str, str]]) -> str:
    """Parameters sorted by name then value, each value's OR-alternatives sorted (`a,b` is
    `b,a`), percent-encoded the same way whatever the client sent."""
    normalized = sorted((name.strip(), _sorted_alternatives(value.strip())) for name, value in pairs)
    return urlencode(normalized)


def _sorted_alternatives(value: str) -> str:
    # A comma is an OR separator unless escaped as \, (search.html#escaping).
    parts = value.replace("\\,", "\0").split(",")
    return ",".join(sorted(p.replace("\0", "\\,") for p in parts))


def single_match(
    criteria: Criteria, matches: list[StoredResource], interaction: str
) -> StoredResource | None:
    """None for no match, the one match, or 412 for several (R4: "the server returns a 412
    Precondition Failed error indicating the client's criteria were not selective enough")."""
    if len(matches) > 1:
        raise PreconditionFailed(
            f"Conditional {interaction}: {criteria.resource_type}?{criteria.canonical} matches more than "
            "one resource; make the criteria more selective"
        )
    return matches[0] if matches else None
