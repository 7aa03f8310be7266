"""The searchset Bundle built from stored bytes: links, entries, totals, _summary and _elements."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from shared.fhir.search import SUBSETTED_TAG, SearchResult, parse_search, searchset_bundle
from shared.store import StoredResource

BASE = "https://cb.example.org/fhir"
AT = datetime(2024, 5, 1, tzinfo=UTC)


def stored(doc: dict[str, Any]) -> StoredResource:
    doc = {**doc, "meta": {"versionId": "1", "lastUpdated": "2024-05-01T00:00:00.000+00:00"}}
    return StoredResource(doc["resourceType"], doc["id"], 1, AT, False, orjson.dumps(doc))


PATIENT = stored(
    {
        "resourceType": "Patient",
        "id": "p1",
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Ana</div>'},
        "name": [{"family": "García", "given": ["Ana"]}],
        "gender": "female",
        "birthDate": "1980-05-12",
        "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "approx"}]},
        "maritalStatus": {"text": "Married"},
    }
)
OBSERVATION = stored(
    {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "PHQ-9"},
        "subject": {"reference": "Patient/p1"},
        "valueInteger": 7,
        "note": [{"text": "calm"}],
    }
)


def render(resource_type: str, query: str, result: SearchResult) -> dict[str, Any]:
    pairs = [tuple(p.split("=", 1)) for p in query.split("&") if p]
    parsed = parse_search(resource_type, pairs, local_types={"Patient", "Observation"})  # type: ignore[arg-type]
    bundle: dict[str, Any] = orjson.loads(searchset_bundle(parsed, result, base_url=BASE + "/"))
    return bundle


def test_a_searchset_has_total_self_link_and_entries_with_full_urls_and_modes() -> None:
    result = SearchResult([OBSERVATION], [PATIENT], total=1)

    bundle = render("Observation", "code=x&_include=Observation:patient", result)

    assert (bundle["resourceType"], bundle["type"], bundle["total"]) == ("Bundle", "searchset", 1)
    assert bundle["link"] == [
        {"relation": "self", "url": f"{BASE}/Observation?code=x&_include=Observation:patient&_count=50"}
    ]
    assert [(e["fullUrl"], e["search"]["mode"]) for e in bundle["entry"]] == [
        (f"{BASE}/Observation/o1", "match"),
        (f"{BASE}/Patient/p1", "include"),
    ]
    assert bundle["entry"][0]["resource"] == orjson.loads(OBSERVATION.content)


def test_stored_bytes_are_spliced_in_unchanged() -> None:
    body = searchset_bundle(
        parse_search("Patient", [], local_types={"Patient"}), SearchResult([PATIENT]), base_url=BASE
    )

    assert PATIENT.content in body


def test_next_and_previous_links_repeat_the_query_with_a_cursor() -> None:
    bundle = render(
        "Patient", "name=ana&_count=2", SearchResult([PATIENT], next_cursor="N1", previous_cursor="P1")
    )

    assert {link["relation"]: link["url"] for link in bundle["link"]} == {
        "self": f"{BASE}/Patient?name=ana&_count=2",
        "next": f"{BASE}/Patient?name=ana&_count=2&_cursor=N1",
        "previous": f"{BASE}/Patient?name=ana&_count=2&_cursor=P1",
    }


def test_an_unknown_total_is_left_out_and_no_matches_means_no_entry() -> None:
    bundle = render("Patient", "name=zed", SearchResult([]))

    assert "total" not in bundle and "entry" not in bundle


def test_summary_count_has_the_total_and_no_entries() -> None:
    bundle = render("Patient", "_summary=count", SearchResult([], total=42))

    assert bundle["total"] == 42 and "entry" not in bundle


def test_elements_keep_the_named_elements_mandatory_ones_and_mark_the_resource_subsetted() -> None:
    result = SearchResult(
        [
            OBSERVATION,
        ],
        [PATIENT],
    )

    bundle = render("Observation", "_elements=subject,value&_include=Observation:patient", result)

    observation = bundle["entry"][0]["resource"]
    assert set(observation) == {"resourceType", "id", "meta", "status", "code", "subject", "valueInteger"}
    assert observation["meta"]["tag"] == [SUBSETTED_TAG]
    assert bundle["entry"][1]["resource"] == orjson.loads(PATIENT.content)  # includes come whole


def test_elements_keep_a_primitive_s_extension_with_it() -> None:
    bundle = render("Patient", "_elements=birthDate", SearchResult([PATIENT]))

    patient = bundle["entry"][0]["resource"]
    assert set(patient) == {"resourceType", "id", "meta", "birthDate", "_birthDate"}


def test_summary_true_keeps_the_summary_elements_only() -> None:
    bundle = render("Patient", "_summary=true", SearchResult([PATIENT]))

    patient = bundle["entry"][0]["resource"]
    # Patient.maritalStatus and text are not summary elements in R4.
    assert set(patient) == {"resourceType", "id", "meta", "name", "gender", "birthDate", "_birthDate"}
    assert SUBSETTED_TAG in patient["meta"]["tag"]


def test_summary_data_drops_the_narrative_and_summary_text_keeps_it_with_mandatory_elements() -> None:
    data = render("Observation", "_summary=data", SearchResult([OBSERVATION]))["entry"][0]["resource"]
    text = render("Patient", "_summary=text", SearchResult([PATIENT]))["entry"][0]["resource"]
    observation_text = render("Observation", "_summary=text", SearchResult([OBSERVATION]))["entry"][0][
        "resource"
    ]

    assert "text" not in data and "note" in data
    assert set(text) == {"resourceType", "id", "meta", "text"}
    assert set(observation_text) == {"resourceType", "id", "meta", "status", "code"}


def test_an_existing_subsetted_tag_is_not_repeated() -> None:
    tagged = stored({"resourceType": "Patient", "id": "p2", "gender": "male"})
    doc = orjson.loads(tagged.content)
    doc["meta"]["tag"] = [SUBSETTED_TAG]
    tagged = StoredResource("Patient", "p2", 1, AT, False, orjson.dumps(doc))

    patient = render("Patient", "_summary=true", SearchResult([tagged]))["entry"][0]["resource"]

    assert patient["meta"]["tag"] == [SUBSETTED_TAG]
