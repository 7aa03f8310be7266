"""Search values of each parameter type, parsed from their text (R4 search.html#ptypes).

Pure functions: every malformed value raises InvalidInput with a message naming the parameter.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import cast

from shared.errors import InvalidInput
from shared.fhir.search.model import (
    PREFIXES,
    DateValue,
    NumberValue,
    Prefix,
    QuantityValue,
    ReferenceValue,
    TokenValue,
)
from shared.store.content import check_type
from shared.store.indexing import parse_date_range

_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE_RE = re.compile(r"[A-Z][A-Za-z]{0,63}")

#: "ap" on dates: 10% of the distance between now and the value, as R4 recommends
#: (search.html#prefix: "10% of the gap between now and the date").
APPROXIMATE_FRACTION = 0.1


def split_escaped(text: str, separator: str) -> list[str]:
    r"""Split on `separator` except where escaped with "\" (R4 search.html#escaping), unescaping
    the separator and "\\" only: other escapes stay for the next level (a token `a\|b` inside
    an OR list `x,a\|b` keeps its escaped "|" until the token is split)."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            following = next(chars, "\\")  # a trailing "\" stays a backslash
            current.append(following if following in (separator, "\\") else ch + following)
        elif ch == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def split_prefix(text: str) -> tuple[Prefix, str]:
    head = text[:2]
    if head in PREFIXES and len(text) > 2 and (text[2].isdigit() or text[2] in "-+."):
        return cast(Prefix, head), text[2:]
    return "eq", text


def parse_token(name: str, text: str) -> TokenValue:
    parts = split_escaped(text, "|")
    if len(parts) == 1:
        return TokenValue(None, parts[0])
    if len(parts) != 2 or (not parts[0] and not parts[1]):
        raise InvalidInput(f"Search parameter {name!r}: {text!r} is not [system]|[code], |[code] or [code]")
    system, code = parts
    return TokenValue(system, code or None)


def parse_date(name: str, text: str) -> DateValue:
    prefix, rest = split_prefix(text)
    # A "+" offset arrives as a space when the client did not percent-encode it.
    bounds = parse_date_range(rest.replace(" ", "+"))
    if bounds is None:
        raise InvalidInput(
            f"Search parameter {name!r}: {text!r} is not a FHIR date or dateTime "
            "(YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|+hh:mm]), "
            "optionally after a prefix eq ne gt lt ge le sa eb ap"
        )
    return DateValue(prefix, *bounds)


def approximate_range(value: DateValue, now: datetime) -> tuple[datetime, datetime]:
    """The range `ap` matches: the value widened by 10% of its distance from now."""
    widen = timedelta(seconds=abs(now - value.low).total_seconds() * APPROXIMATE_FRACTION)
    try:
        return value.low - widen, value.high + widen
    except OverflowError:
        return value.low, value.high


def parse_number(name: str, text: str) -> NumberValue:
    prefix, rest = split_prefix(text)
    try:
        number = Decimal(rest)
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite() or rest.strip() != rest or not rest:
        raise InvalidInput(f"Search parameter {name!r}: {text!r} is not a number, optionally after a prefix")
    # R4 search.html#number: "100" means [99.5, 100.5), "100.00" [99.995, 100.005): half a unit
    # of the last digit written (with an exponent, "1e2", of the last digit of the mantissa).
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    half = Decimal(5).scaleb(exponent - 1)
    return NumberValue(prefix, number, number - half, number + half)


def parse_quantity(name: str, text: str) -> QuantityValue:
    parts = split_escaped(text, "|")
    if len(parts) not in (1, 3):
        raise InvalidInput(f"Search parameter {name!r}: {text!r} is not [prefix]number[|system|code]")
    number = parse_number(name, parts[0])
    if len(parts) == 1:
        return QuantityValue(number, None, None)
    system, code = parts[1], parts[2]
    return QuantityValue(number, system or None, code or None)


def parse_reference(
    name: str, text: str, type_modifier: str | None, targets: tuple[str, ...]
) -> ReferenceValue:
    """`Type/id`, `id`, or an absolute URL ending in `Type/id` (optionally `/_history/n`)."""
    parts = text.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) == 1:
        target_type, target_id = type_modifier, parts[0]
    else:
        target_type, target_id = parts[-2], parts[-1]
        if len(parts) > 2 and not text.startswith(("http://", "https://")):
            raise InvalidInput(f"Search parameter {name!r}: {text!r} is not [Type]/[id], [id] or a URL")
    if not _ID_RE.fullmatch(target_id) or (target_type is not None and not _TYPE_RE.fullmatch(target_type)):
        raise InvalidInput(f"Search parameter {name!r}: {text!r} is not [Type]/[id], [id] or a URL")
    if type_modifier is not None and target_type != type_modifier:
        raise InvalidInput(f"Search parameter {name}:{type_modifier}: {text!r} refers to a {target_type}")
    if target_type is not None and targets and target_type not in targets:
        raise InvalidInput(
            f"Search parameter {name!r} refers to {', '.join(targets)}, not {target_type}", issue_code="value"
        )
    return ReferenceValue(target_type, target_id)


def parse_missing(name: str, text: str) -> bool:
    if text not in ("true", "false"):
        raise InvalidInput(f"Search parameter {name}:missing takes true or false, not {text!r}")
    return text == "true"


def parse_resource_type(label: str, text: str) -> str:
    try:
        return check_type(text)
    except InvalidInput:
        raise InvalidInput(f"{label}: {text!r} is not a resource type") from None
