"""Parsing a search query against the declared search parameters (R4 search.html)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.errors import InvalidInput
from shared.fhir.search import Include, SortKey, link_params, parse_search
from shared.fhir.search.model import DateValue, NumberValue, QuantityValue, ReferenceValue, TokenValue
from shared.fhir.search.paging import encode_cursor

INTAKE = frozenset({"Patient", "Observation", "Condition", "Encounter", "RiskAssessment", "Questionnaire"})
CAREPLAN = frozenset({"CarePlan", "Goal", "CareTeam", "Appointment"})


def parse(resource_type: str, query: str, *, local: frozenset[str] = INTAKE, lenient: bool = False):  # type: ignore[no-untyped-def]
    pairs = [tuple(p.split("=", 1)) for p in query.split("&") if p]
    return parse_search(resource_type, pairs, local_types=local, lenient=lenient)  # type: ignore[arg-type]


def invalid(resource_type: str, query: str, *, local: frozenset[str] = INTAKE) -> str:
    with pytest.raises(InvalidInput) as raised:
        parse(resource_type, query, local=local)
    return raised.value.diagnostics


def test_an_empty_query_has_defaults() -> None:
    query = parse("Patient", "")

    assert (query.criteria, query.sort, query.count, query.cursor, query.total) == ((), (), 50, None, None)


def test_token_values_are_ored_within_a_parameter_and_anded_across_repeats() -> None:
    query = parse("Patient", "gender=male,female&gender:not=other")

    first, second = query.criteria
    assert first.values == (TokenValue(None, "male"), TokenValue(None, "female"))
    assert (second.modifier, second.values) == ("not", (TokenValue(None, "other"),))


def test_token_text_keeps_the_text() -> None:
    (criterion,) = parse("Observation", "code:text=blood pressure").criteria

    assert (criterion.kind, criterion.modifier, criterion.values) == ("token", "text", ("blood pressure",))


@pytest.mark.parametrize("modifier", ["exact", "contains"])
def test_string_modifiers(modifier: str) -> None:
    (criterion,) = parse("Patient", f"name:{modifier}=Ana").criteria

    assert (criterion.kind, criterion.modifier, criterion.values) == ("string", modifier, ("Ana",))


def test_missing_takes_true_or_false_on_every_type() -> None:
    query = parse(
        "Observation",
        "code:missing=true&date:missing=false&subject:missing=true&value-quantity:missing=false",
    )

    assert [c.values for c in query.criteria] == [(True,), (False,), (True,), (False,)]


def test_missing_with_another_value_is_invalid_input() -> None:
    assert (
        invalid("Patient", "gender:missing=yes")
        == "Search parameter gender:missing takes true or false, not 'yes'"
    )


def test_dates_numbers_and_quantities_are_parsed_with_their_prefixes() -> None:
    date, value = parse(
        "Observation", "date=ge2024-01&value-quantity=lt5|http://unitsofmeasure.org|mg"
    ).criteria
    (probability,) = parse("RiskAssessment", "probability=ap0.2").criteria

    assert date.values == (
        DateValue("ge", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)),
    )
    assert isinstance(value.values[0], QuantityValue) and value.values[0].code == "mg"
    assert isinstance(probability.values[0], NumberValue) and probability.values[0].prefix == "ap"


def test_reference_with_a_type_modifier() -> None:
    (criterion,) = parse("Observation", "subject:Patient=p1").criteria

    assert (criterion.modifier, criterion.values) == ("Patient", (ReferenceValue("Patient", "p1"),))


def test_id_and_last_updated_are_resource_level_parameters() -> None:
    ids, updated = parse("Patient", "_id=a,b&_lastUpdated=gt2024-01-01").criteria

    assert (ids.kind, ids.values) == ("_id", ("a", "b"))
    assert updated.kind == "_lastUpdated" and isinstance(updated.values[0], DateValue)


def test_empty_values_are_ignored() -> None:
    assert parse("Patient", "name=&gender=").criteria == ()


def test_an_unknown_parameter_is_invalid_input_naming_it() -> None:
    assert invalid("Patient", "nickname=x") == "Unknown search parameter 'nickname' for Patient"


def test_an_unsupported_modifier_is_invalid_input_naming_it() -> None:
    assert (
        invalid("Patient", "gender:in=http://vs")
        == "Modifier :in is not supported on Patient parameter 'gender'"
    )
    assert invalid("Patient", "birthdate:exact=2000") == (
        "Modifier :exact is not supported on Patient parameter 'birthdate'"
    )


def test_lenient_handling_drops_unknown_parameters_and_lists_them() -> None:
    query = parse("Patient", "nickname=x&gender=male&name:fuzzy=a", lenient=True)

    assert [c.param for c in query.criteria] == ["gender"]
    assert query.ignored == ("nickname", "name:fuzzy")
    assert link_params(query) == [("gender", "male"), ("_count", "50")]


def test_lenient_handling_still_rejects_malformed_values() -> None:
    with pytest.raises(InvalidInput, match="not a FHIR date"):
        parse("Patient", "birthdate=soon", lenient=True)


def test_format_and_pretty_are_left_to_the_http_layer() -> None:
    query = parse("Patient", "_format=json&_pretty=true&_totalMethod=count")

    assert query.criteria == () and link_params(query) == [("_count", "50")]


def test_a_chain_to_a_local_type_carries_the_criterion_on_that_type() -> None:
    (criterion,) = parse("Observation", "subject:Patient.identifier=urn:mrn|7").criteria

    ((target, inner),) = criterion.chain
    assert (criterion.param, target, inner.param, inner.values) == (
        "subject",
        "Patient",
        "identifier",
        (TokenValue("urn:mrn", "7"),),
    )


def test_a_chain_without_a_type_uses_the_targets_that_declare_the_parameter() -> None:
    (criterion,) = parse("Observation", "patient.name=ana").criteria

    assert [t for t, _ in criterion.chain] == ["Patient"]


def test_a_chain_to_another_service_says_the_gateway_resolves_it() -> None:
    message = invalid("CarePlan", "subject:Patient.name=ana", local=CAREPLAN)

    assert message == "subject:Patient.name: Patient is stored by another service; " + (
        "cross-service chains are resolved by the gateway"
    )


def test_only_one_level_of_chaining() -> None:
    message = invalid("Observation", "encounter.subject.name=ana")

    assert message == "encounter.subject.name: only one level of chaining is supported"


def test_a_chain_on_a_non_reference_is_invalid_input() -> None:
    assert invalid("Patient", "gender.name=x") == "gender.name: only reference parameters can be chained"


def test_sort_keys_with_direction() -> None:
    query = parse("Patient", "_sort=family,-birthdate,_id")

    assert query.sort == (
        SortKey("family", "string", False),
        SortKey("birthdate", "date", True),
        SortKey("_id", "_id", False),
    )


def test_sorting_by_an_unknown_parameter_is_invalid_input() -> None:
    assert invalid("Patient", "_sort=shoe-size") == "_sort: 'shoe-size' is not a search parameter of Patient"


@pytest.mark.parametrize(("value", "count"), [("0", 0), ("37", 37), ("1000", 1000), ("5000", 1000)])
def test_count_is_capped_at_one_thousand(value: str, count: int) -> None:
    assert parse("Patient", f"_count={value}").count == count


@pytest.mark.parametrize("value", ["-1", "ten", "1.5"])
def test_a_count_that_is_not_a_whole_number_is_invalid_input(value: str) -> None:
    assert (
        invalid("Patient", f"_count={value}")
        == f"_count must be a whole number from 0 to 1000, not {value!r}"
    )


def test_includes_of_local_types_are_resolved_here() -> None:
    query = parse("Observation", "_include=Observation:patient&_revinclude=Condition:encounter")

    assert query.includes == (Include("Observation", "patient", None),)
    assert query.revincludes == (Include("Condition", "encounter", None),)
    assert (query.remote_includes, query.remote_revincludes) == ((), ())


def test_includes_reaching_other_services_are_kept_for_the_gateway() -> None:
    query = parse("CarePlan", "_include=CarePlan:subject&_revinclude=Observation:subject", local=CAREPLAN)

    assert query.includes == ()
    assert query.remote_includes == ("CarePlan:subject",)
    assert query.remote_revincludes == ("Observation:subject",)
    assert ("_include", "CarePlan:subject") in link_params(query)


def test_an_include_with_targets_in_two_services_is_resolved_here_and_at_the_gateway() -> None:
    query = parse("Observation", "_include=Observation:performer")

    assert query.includes == (Include("Observation", "performer", None),)
    assert query.remote_includes == ("Observation:performer",)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Patient:organization", "_include=Patient:organization: the source type must be Observation"),
        ("Observation", "_include=Observation: expected [Type]:[parameter] or [Type]:[parameter]:[Target]"),
        (
            "Observation:status",
            "_include=Observation:status: 'status' is not a reference parameter of Observation",
        ),
        ("Observation:patient:Group", "_include=Observation:patient:Group: patient refers to Patient"),
    ],
)
def test_malformed_includes_are_invalid_input(value: str, message: str) -> None:
    assert invalid("Observation", f"_include={value}") == message


def test_iterative_includes_are_not_supported() -> None:
    assert invalid("Observation", "_include:iterate=Observation:patient") == (
        "_include:iterate: iterative includes are not supported"
    )


def test_summary_elements_and_total_values() -> None:
    query = parse("Patient", "_elements=name,birthDate&_total=accurate")

    assert (query.elements, query.total) == (("name", "birthDate"), "accurate")
    assert parse("Patient", "_summary=count").summary == "count"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("_summary=brief", "_summary must be one of true, false, text, data, count, not 'brief'"),
        ("_total=exact", "_total must be one of none, estimate, accurate, not 'exact'"),
        ("_elements=name.given", "_elements: 'name.given' is not a top-level element name"),
        ("_summary=true&_elements=name", "Use _summary or _elements, not both (R4 search.html#elements)"),
        ("_sort=name&_sort=gender", "_sort may be given once (list several keys separated by commas)"),
    ],
)
def test_result_parameter_errors(query: str, message: str) -> None:
    assert invalid("Patient", query) == message


def test_a_cursor_is_decoded_against_the_same_query() -> None:
    query = parse("Patient", "name=ana&_sort=-birthdate")
    moment = datetime(2024, 5, 1, tzinfo=UTC)
    token = encode_cursor(query, moment, "next", (moment, "p1"), 12)

    paged = parse("Patient", f"name=ana&_sort=-birthdate&_cursor={token}&_count=10")

    assert paged.cursor is not None
    assert (paged.cursor.snapshot, paged.cursor.direction, paged.cursor.keys, paged.cursor.total) == (
        moment,
        "next",
        (moment, "p1"),
        12,
    )


def test_a_cursor_from_another_query_is_refused() -> None:
    token = encode_cursor(parse("Patient", "name=ana"), datetime.now(UTC), "next", ("p1",), None)

    assert invalid("Patient", f"name=bob&_cursor={token}") == (
        "Invalid _cursor: it belongs to a search with other criteria or sort order"
    )


@pytest.mark.parametrize("token", ["garbage!", "eyJ2IjoxfQ", "bm90IGpzb24"])
def test_a_malformed_cursor_is_refused(token: str) -> None:
    assert (
        invalid("Patient", f"_cursor={token}")
        == "Invalid _cursor: use the next and previous links exactly as given"
    )


def test_link_params_are_canonical() -> None:
    query = parse(
        "Observation", "_count=10&code=x&_sort=-date&_include=Observation:patient&_total=none&status=final"
    )

    assert link_params(query) == [
        ("code", "x"),
        ("status", "final"),
        ("_sort", "-date"),
        ("_include", "Observation:patient"),
        ("_total", "none"),
        ("_count", "10"),
    ]
