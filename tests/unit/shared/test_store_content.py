"""Pure helpers of the store: canonical JSON, timestamps, SQL placeholders, error classes."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import orjson
import pytest

from shared.errors import InvalidInput
from shared.store.content import canonical_document, check_id, check_type, next_timestamp, to_json
from shared.store.driver import is_transient, portable_sql, sqlite_time, utc_from_db
from shared.store.migrations import Migration, create_tables, ordered
from shared.store.search import prefix_upper_bound


def test_canonical_document_puts_type_id_and_meta_first_and_keeps_the_rest_in_order() -> None:
    resource = {
        "name": [{"family": "X"}],
        "resourceType": "Patient",
        "meta": {"tag": [{"code": "t"}]},
        "id": "old",
    }
    at = datetime(2024, 5, 1, 9, 30, 0, 123000, tzinfo=UTC)

    doc = canonical_document(resource, "new", 3, at)

    assert list(doc) == ["resourceType", "id", "meta", "name"]
    assert doc["id"] == "new"
    assert doc["meta"] == {
        "versionId": "3",
        "lastUpdated": "2024-05-01T09:30:00.123+00:00",
        "tag": [{"code": "t"}],
    }
    assert resource["id"] == "old" and resource["meta"] == {"tag": [{"code": "t"}]}


def test_the_server_owns_version_id_and_last_updated_even_if_the_client_sent_them() -> None:
    doc = canonical_document(
        {"resourceType": "Patient", "meta": {"versionId": "7", "lastUpdated": "1999-01-01T00:00:00Z"}},
        "p",
        1,
        datetime(2024, 1, 1, tzinfo=UTC),
    )

    assert doc["meta"] == {"versionId": "1", "lastUpdated": "2024-01-01T00:00:00.000+00:00"}


def test_to_json_refuses_values_json_cannot_hold() -> None:
    with pytest.raises(InvalidInput):
        to_json({"resourceType": "Patient", "x": {1, 2}})
    assert orjson.loads(to_json({"a": "ü"})) == {"a": "ü"}


def test_next_timestamp_has_millisecond_precision_and_always_moves_forward() -> None:
    now = next_timestamp(None)
    future = datetime.now(UTC) + timedelta(hours=1)

    assert now.tzinfo is UTC and now.microsecond % 1000 == 0
    assert next_timestamp(future) == future + timedelta(milliseconds=1)
    assert next_timestamp(now) > now


@pytest.mark.parametrize("good", ["a", "A-1.b", "x" * 64, "0b4e3c1e-5f0c-4d1a-9b8e-1f2a3b4c5d6e"])
def test_valid_fhir_ids_pass(good: str) -> None:
    assert check_id(good) == good


@pytest.mark.parametrize("bad", ["", "x" * 65, "a b", "a/b", "a_b", 5, None])
def test_invalid_fhir_ids_raise_invalid_input(bad: object) -> None:
    with pytest.raises(InvalidInput):
        check_id(bad)


@pytest.mark.parametrize("bad", [None, "", "patient", "Pat ient", 3])
def test_invalid_resource_types_raise_invalid_input(bad: object) -> None:
    with pytest.raises(InvalidInput):
        check_type(bad)


def test_placeholders_are_numbered_for_postgresql_only() -> None:
    sql = "SELECT a FROM t WHERE b = ? AND c = ? LIMIT ?"

    assert portable_sql("sqlite", sql) == sql
    assert portable_sql("postgresql", sql) == "SELECT a FROM t WHERE b = $1 AND c = $2 LIMIT $3"


def test_sqlite_timestamps_are_fixed_width_utc_text_that_sorts_like_time() -> None:
    early = datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)
    late = datetime(2024, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))

    assert sqlite_time(early) == "0999-01-02 03:04:05.000000"
    assert sqlite_time(late) == "2024-05-01 08:00:00.000000"
    assert sqlite_time(early) < sqlite_time(late)
    assert utc_from_db(sqlite_time(late)) == late
    assert utc_from_db(late).tzinfo == UTC


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("no such table: resources"), False),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), True),
        (asyncpg.DeadlockDetectedError("deadlock"), True),
        (ConnectionRefusedError(), True),
        (asyncpg.UndefinedTableError("missing"), False),
        (ValueError("bug"), False),
    ],
)
def test_driver_errors_are_classified_as_transient_or_not(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_prefixprefix_upper_bound_bounds_every_string_with_the_prefix() -> None:
    assert prefix_upper_bound("jos") == "jot"
    assert prefix_upper_bound("a\U0010ffff") == "b"
    assert prefix_upper_bound("\U0010ffff") is None
    assert prefix_upper_bound("x\ud7ff") == "x\ue000"  # skips the surrogate block


def test_extra_migrations_run_after_the_core_in_component_and_version_order() -> None:
    apply = create_tables()
    core = [Migration("store", 1, apply, "core")]
    extra = [Migration("b", 2, apply, ""), Migration("a", 1, apply, ""), Migration("b", 1, apply, "")]

    assert [(m.component, m.version) for m in ordered(core, extra)] == [
        ("store", 1),
        ("a", 1),
        ("b", 1),
        ("b", 2),
    ]
