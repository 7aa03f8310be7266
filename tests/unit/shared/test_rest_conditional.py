"""Conditional criteria: one canonical form (and key) however a client spells the same query,
and R4's 0 / 1 / many decision."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.errors import InvalidInput, PreconditionFailed, http_status
from shared.fhir.rest.conditional import parse_criteria, single_match
from shared.store import StoredResource


def stored(id_: str) -> StoredResource:
    return StoredResource("Patient", id_, 1, datetime(2024, 1, 1, tzinfo=UTC), False, b"{}")


def test_the_same_criteria_in_another_order_or_encoding_share_one_key() -> None:
    a = parse_criteria("Patient", "identifier=urn:x%7C1&family=Smith")
    b = parse_criteria("Patient", "?family=Smith&identifier=urn:x|1")
    c = parse_criteria("Patient", "Patient?identifier=urn:x|1&family=Smith&_count=5")
    d = parse_criteria("Patient", [("family", "Smith"), ("identifier", "urn:x|1")])
    assert a.key == b.key == c.key == d.key
    assert a.canonical == "family=Smith&identifier=urn%3Ax%7C1"


def test_or_alternatives_are_order_free_but_escaped_commas_stay_values() -> None:
    assert parse_criteria("Patient", "name=b,a").key == parse_criteria("Patient", "name=a,b").key
    assert parse_criteria("Patient", r"name=a\,b").key != parse_criteria("Patient", "name=a,b").key


def test_different_types_or_values_get_different_keys() -> None:
    assert parse_criteria("Patient", "identifier=1").key != parse_criteria("Practitioner", "identifier=1").key
    assert parse_criteria("Patient", "identifier=1").key != parse_criteria("Patient", "identifier=2").key


@pytest.mark.parametrize("query", ["", "_count=1", "?", "_sort=name&_format=json"])
def test_criteria_that_select_nothing_are_refused(query: str) -> None:
    with pytest.raises(InvalidInput, match="at least one search parameter"):
        parse_criteria("Patient", query)


def test_criteria_for_another_type_are_refused() -> None:
    with pytest.raises(InvalidInput, match="Observation"):
        parse_criteria("Patient", "Observation?code=1")


def test_no_match_is_none_one_match_is_it_and_several_are_412() -> None:
    criteria = parse_criteria("Patient", "identifier=1")
    assert single_match(criteria, [], "create") is None
    assert single_match(criteria, [stored("a")], "create") == stored("a")
    with pytest.raises(PreconditionFailed) as caught:
        single_match(criteria, [stored("a"), stored("b")], "update")
    assert http_status(caught.value) == 412
    assert "more than one" in caught.value.diagnostics
