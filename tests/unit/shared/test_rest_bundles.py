"""Batch and transaction Bundles, the parts that need no database: reading entries, R4's
processing order, urn:uuid references, overlap rules, and response/history Bundle bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from shared.errors import InvalidInput, PayloadTooLarge
from shared.fhir import bundles
from shared.fhir.rest.bundles import TRANSACTION_ORDER, _check_no_overlap, _rewrite, parse_entries
from shared.fhir.rest.history import decode_cursor, encode_cursor, parse_history_params
from shared.store import StoredResource
from shared.store.versions import HistoryCursor

BASE = "https://gw.example/fhir"


def bundle(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_entries_keep_method_path_query_and_conditional_headers() -> None:
    (post, get, put) = parse_entries(
        bundle(
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"},
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=a|1"}},
            {"request": {"method": "GET", "url": f"{BASE}/Patient?name=x&name=y"}},
            {"request": {"method": "PUT", "url": "/Patient/p1", "ifMatch": 'W/"2"'}, "resource": {}},
        ),
        BASE,
    )  # fmt: skip
    assert (post.method, post.path, post.full_url) == ("POST", ["Patient"], "urn:uuid:1")
    assert post.headers == {"if-none-exist": "identifier=a|1"}
    assert get.path == ["Patient"] and get.params == [("name", "x"), ("name", "y")]
    assert put.path == ["Patient", "p1"] and put.headers == {"if-match": 'W/"2"'}


@pytest.mark.parametrize(
    "entry",
    [
        {"resource": {"resourceType": "Patient"}},
        {"request": {"method": "TRACE", "url": "Patient"}},
        {"request": {"method": "GET", "url": ""}},
        {"request": {"method": "GET", "url": "https://elsewhere.example/Patient"}},
    ],
)
def test_an_entry_without_a_usable_request_is_a_400_naming_it(entry: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_entries(bundle(entry), BASE)
    assert caught.value.expression is not None and caught.value.expression[0].startswith("Bundle.entry[0]")


def test_too_many_entries_are_refused_before_any_is_processed() -> None:
    many = [{"request": {"method": "GET", "url": "Patient/x"}}] * 1001
    with pytest.raises(PayloadTooLarge):
        parse_entries(bundle(*many), BASE)


def test_transaction_order_is_delete_post_put_patch_then_reads() -> None:
    methods = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "POST"]
    ordered = sorted(range(len(methods)), key=lambda i: (TRANSACTION_ORDER[methods[i]], i))
    assert [methods[i] for i in ordered] == ["DELETE", "POST", "POST", "PUT", "PATCH", "GET", "HEAD"]


async def test_urn_uuid_references_anywhere_in_a_resource_become_the_assigned_ids() -> None:
    (entry,) = parse_entries(
        bundle(
            {
                "resource": {
                    "resourceType": "Observation",
                    "subject": {"reference": "urn:uuid:p"},
                    "hasMember": [{"reference": "urn:uuid:q"}, {"reference": "Observation/kept"}],
                    "contained": [{"resourceType": "Basic", "author": {"reference": "urn:uuid:p"}}],
                },
                "request": {"method": "GET", "url": "Observation?subject=urn:uuid:p"},
            }
        ),
        BASE,
    )
    refs = {"urn:uuid:p": "Patient/1", "urn:uuid:q": "Observation/2"}
    await _rewrite(None, None, entry, refs)  # type: ignore[arg-type]  # no conditional references here
    assert entry.resource["subject"] == {"reference": "Patient/1"}
    assert entry.resource["hasMember"] == [{"reference": "Observation/2"}, {"reference": "Observation/kept"}]
    assert entry.resource["contained"][0]["author"] == {"reference": "Patient/1"}
    assert entry.params == [("subject", "Patient/1")]


async def test_a_urn_uuid_reference_to_no_entry_is_a_400() -> None:
    (entry,) = parse_entries(
        bundle(
            {
                "resource": {"subject": {"reference": "urn:uuid:nobody"}},
                "request": {"method": "POST", "url": "Flag"},
            }
        ),
        BASE,
    )
    with pytest.raises(InvalidInput, match="urn:uuid:nobody"):
        await _rewrite(None, None, entry, {})  # type: ignore[arg-type]


def test_two_entries_changing_one_resource_are_refused() -> None:
    entries = parse_entries(
        bundle(
            {"request": {"method": "DELETE", "url": "Patient/a"}},
            {"request": {"method": "GET", "url": "Patient/a"}},
            {"request": {"method": "PUT", "url": "Patient/a"}, "resource": {}},
        ),
        BASE,
    )
    with pytest.raises(InvalidInput, match="Entries 0 and 2"):
        _check_no_overlap(entries)


def test_response_entries_carry_status_line_location_etag_and_outcome() -> None:
    body = bundles.response_bundle(
        "transaction-response",
        [
            bundles.ResponseEntry(
                201, location=f"{BASE}/Patient/1/_history/1", etag='W/"1"', resource=b'{"a":1}'
            ),
            bundles.ResponseEntry(204),
            bundles.ResponseEntry(404, outcome=b'{"resourceType":"OperationOutcome"}'),
        ],
    )
    parsed = orjson.loads(body)
    assert parsed["type"] == "transaction-response"
    first, second, third = parsed["entry"]
    assert first == {
        "resource": {"a": 1},
        "response": {"status": "201 Created", "location": f"{BASE}/Patient/1/_history/1", "etag": 'W/"1"'},
    }
    assert second == {"response": {"status": "204 No Content"}}
    assert third["response"]["status"] == "404 Not Found"
    assert third["response"]["outcome"]["resourceType"] == "OperationOutcome"


def test_history_bundle_shows_how_each_version_came_about_and_deletions_have_no_resource() -> None:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    versions = [
        StoredResource("Patient", "p", 3, at, True, b""),
        StoredResource("Patient", "p", 2, at, False, b'{"resourceType":"Patient","id":"p"}'),
        StoredResource("Patient", "p", 1, at, False, b'{"resourceType":"Patient","id":"p"}'),
    ]
    parsed = orjson.loads(bundles.history(versions, base_url=BASE, self_link="s", next_link="n"))
    assert parsed["type"] == "history"
    assert parsed["link"] == [{"relation": "self", "url": "s"}, {"relation": "next", "url": "n"}]
    deleted, updated, created = parsed["entry"]
    assert deleted["request"] == {"method": "DELETE", "url": "Patient/p"} and "resource" not in deleted
    assert updated["request"] == {"method": "PUT", "url": "Patient/p"} and updated["resource"]["id"] == "p"
    assert created["request"] == {"method": "POST", "url": "Patient"}
    assert created["response"] == {
        "status": "201 Created",
        "etag": 'W/"1"',
        "lastModified": "2024-05-01T00:00:00.000+00:00",
    }
    assert all(e["fullUrl"] == f"{BASE}/Patient/p" for e in parsed["entry"])


def test_an_empty_history_has_no_entry_array() -> None:
    assert "entry" not in orjson.loads(bundles.history([], base_url=BASE, self_link="s"))


def test_history_params_parse_since_count_and_a_round_tripped_cursor() -> None:
    cursor = HistoryCursor(datetime(2024, 5, 1, 9, 0, 0, 123000, tzinfo=UTC), "Patient", "p.1-x", 7)
    query = parse_history_params(
        [("_since", "2024-05-01T10:00:00+02:00"), ("_count", "5000"), ("_cursor", encode_cursor(cursor))],
        lenient=False,
    )
    assert query.since == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert query.count == 1000
    assert decode_cursor(encode_cursor(cursor)) == cursor == query.cursor
    assert parse_history_params([("_since", "2024-05-01")], lenient=False).since == datetime(
        2024, 5, 1, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "params", [[("_since", "yesterday")], [("_count", "-1")], [("_cursor", "x")], [("_at", "2024")]]
)
def test_bad_or_unknown_history_params_are_a_400(params: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidInput):
        parse_history_params(params, lenient=False)


def test_unknown_history_params_are_ignored_when_the_client_asks_for_leniency() -> None:
    assert parse_history_params([("_at", "2024")], lenient=True).count == 50
