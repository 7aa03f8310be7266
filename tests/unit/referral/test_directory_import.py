"""Preparing a directory Bundle for `carebridge directory import`, cutting it into transactions
without separating resources that reference each other, and reading the server's answers."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

import pytest

from services.referral.domain.directory_import import (
    ImportTally,
    chunks,
    diagnostics,
    import_entries,
    outcomes,
    transaction_of,
    version_queries,
    versions_before,
)
from shared.errors import InvalidInput
from tests.unit.referral.directory_fixture import shipped_bundle

SYSTEM = "urn:test:ids"


def resource(kind: str, value: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": kind, "identifier": [{"system": SYSTEM, "value": value}], **fields}


def collection(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": list(entries)}


def test_a_collection_from_another_server_becomes_conditional_updates_with_its_references_kept() -> None:
    org = resource(
        "Organization", "o1", id="77", meta={"versionId": "4", "profile": ["http://p"]}, name="Aid"
    )
    site = resource("Location", "l1", id="5", managingOrganization={"reference": "Organization/77"})
    service = resource(
        "HealthcareService",
        "s1",
        providedBy={"reference": "http://other.example/fhir/Organization/77"},
        location=[{"reference": "urn:uuid:site"}],
        endpoint=[{"reference": "Endpoint/elsewhere"}],
    )
    entries = import_entries(
        collection(
            {"fullUrl": "http://other.example/fhir/Organization/77", "resource": org},
            {"fullUrl": "urn:uuid:site", "resource": site},
            {"resource": service},
        )
    )
    org_entry, site_entry, service_entry = (e.entry for e in entries)
    assert org_entry["request"] == {"method": "PUT", "url": "Organization?identifier=urn%3Atest%3Aids%7Co1"}
    assert "id" not in org_entry["resource"]
    assert org_entry["resource"]["meta"] == {"profile": ["http://p"]}  # the sender's version goes
    assert site_entry["resource"]["managingOrganization"]["reference"] == org_entry["fullUrl"]
    assert service_entry["resource"]["providedBy"]["reference"] == org_entry["fullUrl"]
    assert service_entry["resource"]["location"][0]["reference"] == site_entry["fullUrl"]
    assert service_entry["resource"]["endpoint"][0]["reference"] == "Endpoint/elsewhere"  # not in the file


def test_the_same_resource_gets_the_same_full_url_on_every_import() -> None:
    bundle = collection({"resource": resource("Organization", "o1", name="Aid")})
    assert import_entries(bundle)[0].entry["fullUrl"] == import_entries(bundle)[0].entry["fullUrl"]


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        ({"resourceType": "Patient"}, "is a FHIR Bundle"),
        ({"resourceType": "Bundle", "type": "document", "entry": []}, "Bundle.type 'document'"),
        (collection(), "no entries"),
        (collection({"resource": resource("Patient", "p1")}), "Patient is not a directory resource"),
        (collection({"resource": {"resourceType": "Organization", "name": "x"}}), "has no identifier"),
        (
            {"resourceType": "Bundle", "type": "transaction",
             "entry": [{"resource": resource("Organization", "o"), "request": {"method": "DELETE"}}]},
            "only creates and updates, not DELETE",
        ),
        (
            collection(*[{"resource": resource("Organization", "o")}] * 2),
            "entry[1]: Organization urn:test:ids|o is also entry 0",
        ),
    ],
)  # fmt: skip
def test_what_cannot_be_imported_twice_safely_is_refused_naming_the_entry(bundle: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        import_entries(bundle)


def test_chunks_never_separate_resources_that_reference_each_other() -> None:
    entries = import_entries(shipped_bundle())
    transactions = chunks(entries, max_entries=50)
    assert sum(len(c) for c in transactions) == len(entries)
    assert all(len(c) <= 50 for c in transactions)
    for chunk in transactions:
        urls = {e.entry["fullUrl"] for e in chunk}
        body = str(transaction_of(chunk))
        for ref in re.findall(r"urn:uuid:[0-9a-f-]{36}", body):
            assert ref in urls


def test_a_group_larger_than_the_chunk_travels_alone() -> None:
    org = resource("Organization", "o")
    services = [
        resource("HealthcareService", f"s{i}", providedBy={"reference": "urn:uuid:o"}) for i in range(5)
    ]
    bundle = collection({"fullUrl": "urn:uuid:o", "resource": org}, *({"resource": s} for s in services),
                        {"resource": resource("Organization", "lonely")})  # fmt: skip
    transactions = chunks(import_entries(bundle), max_entries=3)
    assert [len(c) for c in transactions] == [6, 1]


def test_outcomes_come_from_the_status_and_the_version_found_before() -> None:
    chunk = import_entries(collection(*({"resource": resource("Location", f"l{i}")} for i in range(3))))
    queries = version_queries(chunk)
    assert list(queries) == ["Location"]
    assert parse_qs(queries["Location"]) == {
        "identifier": [f"{SYSTEM}|l0,{SYSTEM}|l1,{SYSTEM}|l2"],
        "_elements": ["identifier"],
        "_count": ["1000"],
    }
    found = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": {"identifier": [{"system": SYSTEM, "value": v}], "meta": {"versionId": "2"}}}
            for v in ("l1", "l2")
        ],
    }
    before = versions_before({"Location": found}, chunk)
    assert before == [None, "2", "2"]
    answer = {
        "entry": [
            {"response": {"status": "201 Created", "etag": 'W/"1"'}},
            {"response": {"status": "200 OK", "etag": 'W/"2"'}},
            {"response": {"status": "200 OK", "etag": 'W/"3"'}},
        ]
    }
    assert outcomes(answer, chunk, before) == ["created", "unchanged", "updated"]
    tally = ImportTally()
    for outcome, entry in zip(outcomes(answer, chunk, before), chunk, strict=True):
        tally.add(outcome, entry.resource_type)
    assert tally.summary() == "1 created (1 Location); 1 updated (1 Location); 1 unchanged (1 Location)"


def test_identifier_values_with_commas_are_escaped_in_the_lookup() -> None:
    chunk = import_entries(collection({"resource": resource("Location", "a,b")}))
    assert parse_qs(version_queries(chunk)["Location"])["identifier"] == [f"{SYSTEM}|a\\,b"]


def test_a_short_answer_is_an_error() -> None:
    chunk = import_entries(collection({"resource": resource("Location", "l")}))
    with pytest.raises(InvalidInput, match="does not answer every"):
        outcomes({"entry": []}, chunk, [None])


def test_diagnostics_read_an_outcome_or_an_entrys_outcome() -> None:
    assert diagnostics(_outcome("bad thing")) == "bad thing"
    assert diagnostics({"response": {"outcome": _outcome("worse")}}) == "worse"
    assert diagnostics("nonsense") == ""


def _outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": text}],
    }
