"""Search-index rows from a resource's JSON: pure functions, no I/O.

The store calls `extract_index_rows` on every write and fills one table per search-parameter
type. What each FHIR data type contributes follows the R4 search rules
(http://hl7.org/fhir/R4/search.html#token, #string, #date, #reference):

- token: Identifier -> (system, value); CodeableConcept -> each coding's (system, code);
  Coding -> (system, code); ContactPoint -> (its system, e.g. "phone", value), and a parameter
  named after a ContactPoint system ("phone", "email", ...) keeps only entries of that system;
  code/string/id -> (None, value); boolean -> (None, "true"/"false").
- string: HumanName -> family, given, prefix, suffix, text; Address -> line, city, district,
  state, postalCode, country, text; a plain string -> itself. Values are normalized with
  `normalize_string` so that search is case- and accent-insensitive.
- date: date, dateTime, instant or Period -> a UTC range [low, high) whose width is the
  precision of the value ("1980" covers the whole year). `high` is exclusive throughout;
  an open Period end is `DATE_MAX`, an open start `DATE_MIN`. A Timing yields each event and
  its repeat.boundsPeriod.
- reference: "Patient/123" (also absolute or versioned) -> ("Patient", "123"), kept only if
  the type is one of the parameter's `targets` (when it has any). Contained ("#x") and logical
  (urn:) references are not indexed.
- uri: the value, exactly, in the token table with no system (a uri matches like a code).
- number: each decimal or integer value; quantity: a Quantity's (value, system, code, unit).
  No unit conversion: `value-quantity=5|http://unitsofmeasure.org|mg` matches values recorded
  in mg, not 0.005 g.

Two derived row sets serve modifiers and share the string table under a suffixed parameter
name (a ":" never occurs in a parameter's own name, see schema.py):

- `text` (token `:text`, http://hl7.org/fhir/R4/search.html#modifiers): CodeableConcept.text,
  Coding.display and Identifier.type.text, normalized like strings, once from each word on, so
  `code:text=pressure` finds "Systolic blood pressure".
- `exact` (string `:exact`): each string value as written, capped, not normalized.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from shared.fhir.search_params import SearchParam

#: ContactPoint.system codes (http://hl7.org/fhir/R4/valueset-contact-point-system.html).
#: An Identifier.system is a URI, never one of these bare words, which tells the two apart.
CONTACT_POINT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})

#: Word starts of a display text indexed for token :text (a longer text's later words are not).
MAX_TEXT_WORDS = 8

#: Index values are capped so that a PostgreSQL btree entry stays under its ~2.7 KB limit
#: even with 4-byte UTF-8 characters; search applies the same cap to what it looks for.
MAX_INDEXED_CHARS = 256

_T = TypeVar("_T")

DATE_MIN = datetime(1, 1, 1, tzinfo=UTC)
DATE_MAX = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

_HUMAN_NAME_AND_ADDRESS_PARTS = (
    "family", "given", "prefix", "suffix", "text",
    "line", "city", "district", "state", "postalCode", "country",
)  # fmt: skip

# FHIR date / dateTime / instant, and the partial times search values may carry.
_DATE_RE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


@dataclass(slots=True)
class IndexRows:
    """Rows for the four index tables, without the resource's type and id."""

    token: list[tuple[str, str | None, str]] = field(default_factory=list)  # (param, system, code)
    string: list[tuple[str, str]] = field(default_factory=list)  # (param, normalized value)
    date: list[tuple[str, datetime, datetime]] = field(default_factory=list)  # (param, low, high)
    reference: list[tuple[str, str, str]] = field(default_factory=list)  # (param, type, id)
    number: list[tuple[str, float]] = field(default_factory=list)  # (param, value)
    #: (param, value, system, code, unit)
    quantity: list[tuple[str, float, str | None, str | None, str | None]] = field(default_factory=list)
    text: list[tuple[str, str]] = field(default_factory=list)  # (token param, normalized text)
    exact: list[tuple[str, str]] = field(default_factory=list)  # (string param, text as written)


def extract_index_rows(resource: dict[str, Any], params: Sequence[SearchParam]) -> IndexRows:
    """Every index row the resource contributes, without duplicates, in a stable order."""
    rows = IndexRows()
    for param in params:
        values = [v for path in param.paths for v in values_at(resource, path)]
        if param.type == "token":
            rows.token.extend(
                _unique((param.name, s, c) for v in values for s, c in token_values(v, param.name))
            )
            rows.text.extend(_unique((param.name, t) for v in values for t in token_texts(v)))
        elif param.type == "uri":
            # A uri matches exactly, as a token code does: it shares the token table.
            rows.token.extend(
                _unique((param.name, None, _cap(v)) for v in values if isinstance(v, str) and v)
            )
        elif param.type == "string":
            rows.string.extend(_unique((param.name, s) for v in values for s in string_values(v)))
            rows.exact.extend(_unique((param.name, s) for v in values for s in string_values(v, exact=True)))
        elif param.type == "date":
            rows.date.extend(_unique((param.name, lo, hi) for v in values for lo, hi in date_ranges(v)))
        elif param.type == "reference":
            # With targets, R4 restricts the parameter by type: `patient` is
            # subject.where(resolve() is Patient).
            rows.reference.extend(
                _unique(
                    (param.name, t, i)
                    for v in values
                    for t, i in reference_targets(v)
                    if not param.targets or t in param.targets
                )
            )
        elif param.type == "number":
            rows.number.extend(_unique((param.name, n) for v in values for n in number_values(v)))
        elif param.type == "quantity":
            rows.quantity.extend(_unique((param.name, *q) for v in values for q in quantity_values(v)))
    return rows


def values_at(node: Any, path: str) -> Iterator[Any]:
    """Values at a dotted path; a list anywhere on the path fans out.

    A segment ending in "[x]" matches a choice element ("effective[x]" matches
    effectiveDateTime and effectivePeriod).
    """
    yield from _walk(node, path.split("."))


def _walk(node: Any, segments: list[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, segments)
        return
    if not segments:
        if node is not None:
            yield node
        return
    if not isinstance(node, dict):
        return
    head, rest = segments[0], segments[1:]
    if head.endswith("[x]"):
        stem = head[:-3]
        for key, child in node.items():
            if key.startswith(stem) and key[len(stem) : len(stem) + 1].isupper():
                yield from _walk(child, rest)
    elif head in node:
        yield from _walk(node[head], rest)


def token_values(value: Any, param_name: str = "") -> Iterator[tuple[str | None, str]]:
    """(system, code) pairs of one element value, for a token parameter named `param_name`."""
    if isinstance(value, bool):
        yield None, "true" if value else "false"
    elif isinstance(value, str | int | float):
        yield None, _cap(str(value))
    elif isinstance(value, dict):
        if "coding" in value:  # CodeableConcept
            for coding in value.get("coding") or ():
                if isinstance(coding, dict):
                    yield from token_values(coding, param_name)
            return
        system = value.get("system")
        system = _cap(system) if isinstance(system, str) else None
        if system in CONTACT_POINT_SYSTEMS and "value" in value:  # ContactPoint
            # R4 defines phone/email as telecom.where(system='phone'|'email').
            if param_name in CONTACT_POINT_SYSTEMS and param_name != system:
                return
            code = value.get("value")
        else:
            code = value.get("value", value.get("code"))  # Identifier, else Coding
        if isinstance(code, str) and code:
            yield system, _cap(code)


def string_values(value: Any, *, exact: bool = False) -> Iterator[str]:
    """Normalized strings of one element value (a HumanName or Address yields each part);
    with `exact`, the same strings as written (capped), for `:exact`."""
    if isinstance(value, str):
        written = _cap(value) if exact else normalize_string(value)
        if written:
            yield written
    elif isinstance(value, dict):
        for part in _HUMAN_NAME_AND_ADDRESS_PARTS:
            item = value.get(part)
            for text in item if isinstance(item, list) else (item,):
                if isinstance(text, str):
                    yield from string_values(text, exact=exact)


def token_texts(value: Any) -> Iterator[str]:
    """Normalized display texts of a token value, each from every word start on (for :text)."""
    if not isinstance(value, dict):
        return
    texts: list[Any] = [value.get("text"), value.get("display")]
    codings = value.get("coding")
    if isinstance(codings, list):
        texts.extend(c.get("display") for c in codings if isinstance(c, dict))
    kind = value.get("type")  # Identifier.type, a CodeableConcept
    if isinstance(kind, dict) and "value" in value:
        texts.append(kind.get("text"))
    for text in texts:
        if isinstance(text, str):
            words = normalize_string(text).split(" ")
            for start in range(min(len(words), MAX_TEXT_WORDS)):
                if words[start]:
                    yield " ".join(words[start:])


def number_values(value: Any) -> Iterator[float]:
    """A JSON number (decimal, integer); booleans are not numbers."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        yield float(value)


def quantity_values(value: Any) -> Iterator[tuple[float, str | None, str | None, str | None]]:
    """(value, system, code, unit) of a Quantity with a value."""
    if not isinstance(value, dict):
        return
    for number in number_values(value.get("value")):
        system, code, unit = (value.get(k) for k in ("system", "code", "unit"))
        yield (
            number,
            _cap(system) if isinstance(system, str) else None,
            _cap(code) if isinstance(code, str) else None,
            _cap(unit) if isinstance(unit, str) else None,
        )


def normalize_string(text: str) -> str:
    """Case- and accent-insensitive form: NFKD, combining marks dropped, casefolded, trimmed.

    "José" and "JOSE" both become "jose". Search normalizes what it looks for the same way.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _cap(" ".join(stripped.casefold().split()))


def date_ranges(value: Any) -> Iterator[tuple[datetime, datetime]]:
    """The [low, high) UTC range of a date, dateTime, instant or Period."""
    if isinstance(value, str):
        bounds = parse_date_range(value)
        if bounds is not None:
            yield bounds
    elif isinstance(value, dict) and ("start" in value or "end" in value):  # Period
        start = parse_date_range(value["start"]) if isinstance(value.get("start"), str) else None
        end = parse_date_range(value["end"]) if isinstance(value.get("end"), str) else None
        yield (start[0] if start else DATE_MIN), (end[1] if end else DATE_MAX)
    elif isinstance(value, dict) and ("event" in value or "repeat" in value):  # Timing
        for event in value.get("event") or ():
            yield from date_ranges(event)
        repeat = value.get("repeat")
        if isinstance(repeat, dict) and isinstance(repeat.get("boundsPeriod"), dict):
            yield from date_ranges(repeat["boundsPeriod"])


def parse_date_range(text: str) -> tuple[datetime, datetime] | None:
    """The range a FHIR date/dateTime/instant string covers at its precision, or None if invalid.

    Dates and times without an offset are taken as UTC.
    """
    match = _DATE_RE.fullmatch(text.strip())
    if match is None:
        return None
    g = match.groupdict()
    try:
        if g["month"] is None:
            year = int(g["year"])
            return _utc(year, 1, 1), _utc_or_max(year + 1, 1, 1)
        if g["day"] is None:
            year, month = int(g["year"]), int(g["month"])
            return _utc(year, month, 1), _utc_or_max(year + month // 12, month % 12 + 1, 1)
        day = datetime(int(g["year"]), int(g["month"]), int(g["day"]))
        if g["hour"] is None:
            low = day.replace(tzinfo=UTC)
            return low, _add_or_max(low, timedelta(days=1))
        return _time_range(day, g)
    except ValueError:  # e.g. month 13 or day 31 in April
        return None


def _time_range(day: datetime, g: dict[str, str | None]) -> tuple[datetime, datetime]:
    tz = _offset(g["tz"])
    local = day.replace(hour=int(g["hour"] or 0), minute=int(g["minute"] or 0), tzinfo=tz)
    if g["second"] is None:
        width = timedelta(minutes=1)
    elif g["fraction"] is None:
        local = local.replace(second=int(g["second"]))
        width = timedelta(seconds=1)
    else:
        digits = (g["fraction"] or "")[:6]
        local = local.replace(second=int(g["second"]), microsecond=int(digits.ljust(6, "0")))
        width = timedelta(microseconds=10 ** (6 - len(digits)))
    try:
        low = local.astimezone(UTC)
    except OverflowError:  # an offset pushed year 1 or 9999 out of range
        return (DATE_MIN, DATE_MIN + width) if local.year == 1 else (DATE_MAX, DATE_MAX)
    return low, _add_or_max(low, width)


def _offset(tz: str | None) -> timezone:
    if tz is None or tz == "Z":
        return UTC
    sign = -1 if tz[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))


def reference_targets(value: Any) -> Iterator[tuple[str, str]]:
    """(type, id) of a Reference ("Patient/1", "http://host/fhir/Patient/1/_history/2")."""
    ref = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(ref, str) or ref.startswith(("#", "urn:")):
        return
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] and parts[-1]:
        yield _cap(parts[-2]), _cap(parts[-1])


def _utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def _utc_or_max(year: int, month: int, day: int) -> datetime:
    return _utc(year, month, day) if year <= 9999 else DATE_MAX


def _add_or_max(moment: datetime, width: timedelta) -> datetime:
    try:
        return moment + width
    except OverflowError:
        return DATE_MAX


def _cap(text: str) -> str:
    return text[:MAX_INDEXED_CHARS]


def _unique(rows: Iterable[_T]) -> list[_T]:
    return list(dict.fromkeys(rows))
