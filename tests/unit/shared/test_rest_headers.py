"""Prefer, If-Match and conditional-read headers, parsed as FHIR clients send them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.errors import InvalidInput
from shared.fhir.rest.headers import (
    Prefer,
    etag,
    http_date,
    not_modified,
    parse_prefer,
    parse_version_tag,
    version_headers,
)
from shared.store import StoredResource

STORED = StoredResource("Patient", "p1", 3, datetime(2024, 5, 1, 9, 30, 0, 123000, tzinfo=UTC), False, b"{}")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, Prefer("representation", False)),
        ("return=minimal", Prefer("minimal", False)),
        ("return=OperationOutcome", Prefer("OperationOutcome", False)),
        ('return="representation"', Prefer("representation", False)),
        ("handling=lenient", Prefer("representation", True)),
        ("handling=strict, return=minimal", Prefer("minimal", False)),
        ("return=minimal; handling=lenient", Prefer("minimal", True)),
        ("respond-async, wait=10, return=bogus", Prefer("representation", False)),
    ],
)
def test_prefer_keeps_what_fhir_defines_and_ignores_the_rest(header: str | None, expected: Prefer) -> None:
    assert parse_prefer(header) == expected


@pytest.mark.parametrize(
    ("header", "version"), [('W/"3"', 3), ('"3"', 3), ("3", 3), (' W/"12" ', 12), (None, None), ("", None)]
)
def test_if_match_accepts_weak_strong_and_bare_version_tags(header: str | None, version: int | None) -> None:
    assert parse_version_tag(header) == version


@pytest.mark.parametrize("header", ['W/"abc"', "W/", '"1.5"', "*"])
def test_if_match_that_names_no_version_is_a_400(header: str) -> None:
    with pytest.raises(InvalidInput, match="If-Match"):
        parse_version_tag(header)


def test_version_headers_carry_the_weak_etag_http_date_and_versioned_location() -> None:
    assert etag(3) == 'W/"3"'
    assert http_date(STORED.last_updated) == "Wed, 01 May 2024 09:30:00 GMT"
    assert version_headers(STORED, "https://x/fhir") == {
        "ETag": 'W/"3"',
        "Last-Modified": "Wed, 01 May 2024 09:30:00 GMT",
        "Location": "https://x/fhir/Patient/p1/_history/3",
    }
    assert "Location" not in version_headers(STORED, "", location=False)


@pytest.mark.parametrize(
    ("if_none_match", "if_modified_since", "expected"),
    [
        ('W/"3"', None, True),
        ('W/"2", W/"3"', None, True),
        ('W/"2"', None, False),
        ("*", None, True),
        (None, "Wed, 01 May 2024 09:30:00 GMT", True),
        (None, "Wed, 01 May 2024 09:29:59 GMT", False),
        (None, "not a date", False),
        ('W/"2"', "Wed, 01 May 2024 09:30:00 GMT", False),  # If-None-Match decides
    ],
)
def test_conditional_read_is_not_modified_only_when_the_client_copy_is_current(
    if_none_match: str | None, if_modified_since: str | None, expected: bool
) -> None:
    assert not_modified(STORED, if_none_match, if_modified_since) is expected
