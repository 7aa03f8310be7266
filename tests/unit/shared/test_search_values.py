"""Search values of each type and the range arithmetic behind prefixes (R4 search.html#prefix)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.errors import InvalidInput
from shared.fhir.search.model import DateValue, NumberValue, QuantityValue, ReferenceValue, TokenValue
from shared.fhir.search.values import (
    approximate_range,
    parse_date,
    parse_number,
    parse_quantity,
    parse_reference,
    parse_token,
    split_escaped,
    split_prefix,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://loinc.org|8480-6", TokenValue("http://loinc.org", "8480-6")),
        ("|8480-6", TokenValue("", "8480-6")),
        ("8480-6", TokenValue(None, "8480-6")),
        ("http://loinc.org|", TokenValue("http://loinc.org", None)),
        (r"urn:x|a\|b", TokenValue("urn:x", "a|b")),
    ],
)
def test_token_forms_system_and_code(text: str, expected: TokenValue) -> None:
    assert parse_token("code", text) == expected


@pytest.mark.parametrize("text", ["|", "a|b|c"])
def test_a_malformed_token_is_invalid_input_naming_the_parameter(text: str) -> None:
    with pytest.raises(InvalidInput, match="Search parameter 'code'"):
        parse_token("code", text)


def test_escaped_commas_and_backslashes_are_not_separators() -> None:
    assert split_escaped(r"a\,b,c\\,d", ",") == ["a,b", "c\\", "d"]


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2024", utc(2024, 1, 1), utc(2025, 1, 1)),
        ("2024-02", utc(2024, 2, 1), utc(2024, 3, 1)),
        ("2024-12", utc(2024, 12, 1), utc(2025, 1, 1)),
        ("2024-02-29", utc(2024, 2, 29), utc(2024, 3, 1)),
        ("2024-03-01T10:00", utc(2024, 3, 1, 10), utc(2024, 3, 1, 10, 1)),
        ("2024-03-01T10:00:05Z", utc(2024, 3, 1, 10, 0, 5), utc(2024, 3, 1, 10, 0, 6)),
        ("2024-03-01T10:00:00+02:00", utc(2024, 3, 1, 8), utc(2024, 3, 1, 8, 0, 1)),
    ],
)
def test_partial_dates_are_ranges_at_their_precision(text: str, low: datetime, high: datetime) -> None:
    assert parse_date("date", text) == DateValue("eq", low, high)


def test_a_plus_offset_decoded_as_a_space_is_read_as_plus() -> None:
    assert parse_date("date", "2024-03-01T10:00:00 02:00").low == utc(2024, 3, 1, 8)


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"])
def test_every_prefix_is_read_off_a_date(prefix: str) -> None:
    assert parse_date("date", f"{prefix}2024-03").prefix == prefix


@pytest.mark.parametrize("text", ["2024-13", "2024-02-30", "yesterday", "xx2024", "2024-03-01T25:00Z", ""])
def test_an_invalid_date_is_invalid_input_that_says_what_is_expected(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"'birthdate'.*not a FHIR date"):
        parse_date("birthdate", text)


def test_a_prefix_is_only_a_prefix_before_a_number() -> None:
    assert split_prefix("ge5") == ("ge", "5")
    assert split_prefix("eb-1") == ("eb", "-1")
    assert split_prefix("5") == ("eq", "5")
    assert split_prefix("gene") == ("eq", "gene")


def test_approximately_widens_a_date_by_ten_percent_of_its_distance_from_now() -> None:
    now = utc(2024, 1, 1)
    value = parse_date("date", "ap2014-01-01")  # ten years (3652 days) before now

    low, high = approximate_range(value, now)

    assert low == utc(2014, 1, 1) - timedelta(days=365.2)
    assert high == utc(2014, 1, 2) + timedelta(days=365.2)


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("100", "99.5", "100.5"),
        ("100.00", "99.995", "100.005"),
        ("0.1", "0.05", "0.15"),
        ("-3", "-3.5", "-2.5"),
        ("1e2", "50", "150"),
    ],
)
def test_a_number_searches_the_range_of_its_precision(text: str, low: str, high: str) -> None:
    value = parse_number("probability", text)

    assert (value.low, value.high) == (Decimal(low), Decimal(high))


def test_a_prefixed_number_keeps_its_exact_value() -> None:
    assert parse_number("probability", "gt0.5") == NumberValue(
        "gt", Decimal("0.5"), Decimal("0.45"), Decimal("0.55")
    )


@pytest.mark.parametrize("text", ["abc", "NaN", "Infinity", "1,5", " 1", "gt"])
def test_a_non_number_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"'probability'.*not a number"):
        parse_number("probability", text)


def test_quantity_forms_with_system_and_code_or_code_alone() -> None:
    full = parse_quantity("value-quantity", "le5.4|http://unitsofmeasure.org|mg")
    code_only = parse_quantity("value-quantity", "5.4||mg")
    bare = parse_quantity("value-quantity", "5.4")

    assert (full.number.prefix, full.system, full.code) == ("le", "http://unitsofmeasure.org", "mg")
    assert (code_only.system, code_only.code) == (None, "mg")
    assert bare == QuantityValue(parse_number("value-quantity", "5.4"), None, None)


def test_a_quantity_with_two_bars_only_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"\[prefix\]number\[\|system\|code\]"):
        parse_quantity("value-quantity", "5|mg")


@pytest.mark.parametrize(
    ("text", "modifier", "expected"),
    [
        ("Patient/p1", None, ReferenceValue("Patient", "p1")),
        ("p1", None, ReferenceValue(None, "p1")),
        ("p1", "Patient", ReferenceValue("Patient", "p1")),
        ("https://ehr.example.org/fhir/Patient/p1", None, ReferenceValue("Patient", "p1")),
        ("Patient/p1/_history/3", None, ReferenceValue("Patient", "p1")),
    ],
)
def test_reference_forms(text: str, modifier: str | None, expected: ReferenceValue) -> None:
    assert parse_reference("subject", text, modifier, ("Patient", "Group")) == expected


def test_a_reference_to_a_type_the_parameter_does_not_allow_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="'patient' refers to Patient, not Group"):
        parse_reference("patient", "Group/g1", None, ("Patient",))


def test_a_type_modifier_that_contradicts_the_value_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="subject:Patient: 'Group/g1' refers to a Group"):
        parse_reference("subject", "Group/g1", "Patient", ())


@pytest.mark.parametrize("text", ["a/b/c", "Patient/", "Patient/has space", "patient/p1"])
def test_a_malformed_reference_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"is not \[Type\]/\[id\], \[id\] or a URL"):
        parse_reference("subject", text, None, ())
