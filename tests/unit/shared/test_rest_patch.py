"""JSON Patch (RFC 6902) as FHIR PATCH applies it: the RFC's own examples, and the split
between a malformed patch (400) and one that does not apply (422)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import BusinessRuleViolation, InvalidInput, http_status
from shared.fhir.rest.patch import PatchDocument, apply_patch, parse_pointer


def test_pointer_tokens_unescape_tilde_and_slash() -> None:
    assert parse_pointer("") == []
    assert parse_pointer("/a~1b/m~0n/0") == ["a/b", "m~n", "0"]


@pytest.mark.parametrize(
    ("document", "patch", "expected"),
    [
        ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"foo": "bar", "baz": "qux"}),
        ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
         {"foo": ["bar", "qux", "baz"]}),
        ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": "x"}], {"foo": ["bar", "x"]}),
        ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
        ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
        ({"baz": "qux"}, [{"op": "replace", "path": "/baz", "value": "boo"}], {"baz": "boo"}),
        (
            {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
            [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
            {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
        ),
        ({"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
         {"foo": ["all", "cows", "eat", "grass"]}),
        ({"a": {"b": 1}}, [{"op": "copy", "from": "/a", "path": "/c"}], {"a": {"b": 1}, "c": {"b": 1}}),
        ({"baz": "qux", "foo": ["a", 2, "c"]},
         [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2.0}],
         {"baz": "qux", "foo": ["a", 2, "c"]}),
        ({"a~b": 1}, [{"op": "replace", "path": "/a~0b", "value": 2}], {"a~b": 2}),
    ],
)  # fmt: skip
def test_rfc_6902_operations_produce_the_documented_results(
    document: dict[str, Any], patch: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    assert apply_patch(document, patch) == expected


def test_the_original_document_is_left_untouched_even_when_a_later_operation_fails() -> None:
    document = {"name": [{"family": "Old"}]}
    patch = [
        {"op": "replace", "path": "/name/0/family", "value": "New"},
        {"op": "test", "path": "/gender", "value": "female"},
    ]
    with pytest.raises(BusinessRuleViolation):
        apply_patch(document, patch)
    assert document == {"name": [{"family": "Old"}]}


@pytest.mark.parametrize(
    "patch",
    [
        {"op": "add", "path": "/a", "value": 1},
        [{"op": "frobnicate", "path": "/a"}],
        [{"op": "add", "path": "a", "value": 1}],
        [{"op": "add", "path": "/a"}],
        [{"op": "move", "path": "/a"}],
        ["not an object"],
    ],
)
def test_a_malformed_patch_document_is_a_400(patch: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        apply_patch({"a": 1}, patch)
    assert http_status(caught.value) == 400


@pytest.mark.parametrize(
    ("patch", "says"),
    [
        ([{"op": "test", "path": "/active", "value": False}], "test failed"),
        ([{"op": "test", "path": "/active", "value": 1}], "test failed"),  # true is not 1
        ([{"op": "remove", "path": "/missing"}], "does not exist"),
        ([{"op": "replace", "path": "/name/5/family", "value": "X"}], "out of range"),
        ([{"op": "add", "path": "/name/x", "value": {}}], "not an array index"),
        ([{"op": "add", "path": "/missing/deeper", "value": 1}], "does not exist"),
        ([{"op": "move", "from": "/name", "path": "/name/0"}], "its own child"),
        ([{"op": "remove", "path": ""}], "whole document"),
        ([{"op": "replace", "path": "", "value": []}], "not a JSON object"),
    ],
)
def test_a_patch_that_does_not_apply_is_a_422_naming_the_operation(patch: Any, says: str) -> None:
    with pytest.raises(BusinessRuleViolation) as caught:
        apply_patch({"active": True, "name": [{"family": "A"}]}, patch)
    assert http_status(caught.value) == 422
    assert says in caught.value.diagnostics
    assert (
        "Patch operation 0" in caught.value.diagnostics or "replaced the resource" in caught.value.diagnostics
    )


def test_a_merge_patch_replaces_members_removes_nulls_and_merges_objects() -> None:
    document = {
        "resourceType": "Patient",
        "active": True,
        "gender": "male",
        "name": [{"family": "A"}],
        "meta": {"tag": []},
    }
    patch = PatchDocument({"gender": None, "name": [{"family": "B"}], "meta": {"source": "x", "tag": None}})
    assert patch.apply(document) == {
        "resourceType": "Patient",
        "active": True,
        "name": [{"family": "B"}],
        "meta": {"source": "x"},
    }
    assert document["gender"] == "male"  # untouched


@pytest.mark.parametrize(
    ("media_type", "body", "kind"),
    [
        ("application/json-patch+json", b'[{"op":"remove","path":"/active"}]', list),
        ("application/merge-patch+json", b'{"active":null}', dict),
        ("application/json", b'[{"op":"remove","path":"/active"}]', list),
        ("application/json", b'{"active":null}', dict),
    ],
)
def test_a_patch_body_is_json_patch_or_merge_patch_by_media_type_or_shape(
    media_type: str, body: bytes, kind: type
) -> None:
    patch = PatchDocument.parse(media_type, body)
    assert isinstance(patch.body, kind)
    assert patch.apply({"resourceType": "Patient", "active": True}) == {"resourceType": "Patient"}


@pytest.mark.parametrize(
    ("media_type", "body"),
    [
        ("application/json-patch+json", b'{"active":null}'),
        ("application/merge-patch+json", b"[]"),
        ("application/json-patch+json", b"[{"),
    ],
)
def test_a_patch_body_that_does_not_fit_its_media_type_is_a_400(media_type: str, body: bytes) -> None:
    with pytest.raises(InvalidInput):
        PatchDocument.parse(media_type, body)
