"""JSON Patch (RFC 6902) over JSON Pointer (RFC 6901), for FHIR's PATCH interaction
(http://hl7.org/fhir/R4/http.html#patch, `Content-Type: application/json-patch+json`), and
JSON Merge Patch (RFC 7386, `application/merge-patch+json`), which R4 does not define but common
clients send (fhirpy's `resource.patch(...)` PATCHes a JSON object as `application/json`).

Written here rather than taken from a package: it is small, and FHIR needs its errors split the
way a client can act on them. A patch document that is not a valid JSON Patch is the client's
malformed request (InvalidInput, 400); a well-formed patch that cannot be applied to this
resource (a failing `test`, a path that is not there) is unprocessable (BusinessRuleViolation,
422). The patch applies to a copy: all operations or none.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from shared.errors import BusinessRuleViolation, InvalidInput

JSON_PATCH_MEDIA_TYPE = "application/json-patch+json"
MERGE_PATCH_MEDIA_TYPE = "application/merge-patch+json"
#: What a PATCH body may be sent as; plain JSON is told apart by its shape (array or object).
PATCH_MEDIA_TYPES = frozenset({JSON_PATCH_MEDIA_TYPE, MERGE_PATCH_MEDIA_TYPE, "application/json"})
_OPS_WITH_VALUE = frozenset({"add", "replace", "test"})
_OPS_WITH_FROM = frozenset({"move", "copy"})
_ALL_OPS = _OPS_WITH_VALUE | _OPS_WITH_FROM | {"remove"}


class PatchConflict(BusinessRuleViolation):
    """A valid patch that does not apply to this document."""

    issue_code = "processing"


@dataclass(frozen=True, slots=True)
class PatchDocument:
    """A parsed PATCH body: a JSON Patch (an array of operations) or a merge patch (an object)."""

    body: Any

    @classmethod
    def parse(cls, media_type: str, raw: bytes) -> PatchDocument:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"The patch is not valid JSON: {exc}") from None
        if media_type == MERGE_PATCH_MEDIA_TYPE and not isinstance(body, dict):
            raise InvalidInput("A JSON Merge Patch must be a JSON object")
        if media_type == JSON_PATCH_MEDIA_TYPE and not isinstance(body, list):
            raise InvalidInput("A JSON Patch document must be a JSON array of operations")
        return cls(body)

    def apply(self, document: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.body, dict):
            return merge_patch(document, self.body)
        return apply_patch(document, self.body)


def merge_patch(document: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386: members of the patch replace the document's, null removes, objects merge."""
    result = copy.deepcopy(document)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = copy.deepcopy(value) if isinstance(value, dict) else value
            if isinstance(value, dict):
                result[key] = _without_nulls(value)
    return result


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def parse_pointer(pointer: Any) -> list[str]:
    """RFC 6901: "" is the whole document, "/a/0/b~1c" is ["a", "0", "b/c"]."""
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise InvalidInput(f"JSON Pointer {pointer!r} must be empty or start with '/'")
    if pointer == "":
        return []
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def apply_patch(document: dict[str, Any], operations: Any) -> dict[str, Any]:
    """The patched copy of `document`; `document` itself is left as it was."""
    checked = _check_operations(operations)
    result: Any = copy.deepcopy(document)
    for index, op in enumerate(checked):
        try:
            result = _APPLY[op["op"]](result, op)
        except PatchConflict as exc:
            raise PatchConflict(
                f"Patch operation {index} ({op['op']} {op['path']}): {exc.diagnostics}"
            ) from None
    if not isinstance(result, dict):
        raise PatchConflict("The patch replaced the resource with something that is not a JSON object")
    return result


def _check_operations(operations: Any) -> list[dict[str, Any]]:
    if not isinstance(operations, list):
        raise InvalidInput("A JSON Patch document must be a JSON array of operations")
    for index, op in enumerate(operations):
        if not isinstance(op, dict) or op.get("op") not in _ALL_OPS:
            raise InvalidInput(f"Patch operation {index} must be an object with op one of {sorted(_ALL_OPS)}")
        parse_pointer(op.get("path"))
        if op["op"] in _OPS_WITH_VALUE and "value" not in op:
            raise InvalidInput(f"Patch operation {index} ({op['op']}) needs a value")
        if op["op"] in _OPS_WITH_FROM:
            parse_pointer(op.get("from"))
    return operations


def _parent(document: Any, tokens: list[str]) -> tuple[Any, str]:
    """The container holding the target of `tokens`, and the target's key in it."""
    container = document
    for depth, token in enumerate(tokens[:-1]):
        container = _child(container, token, "/" + "/".join(tokens[: depth + 1]))
    return container, tokens[-1]


def _child(container: Any, token: str, where: str) -> Any:
    if isinstance(container, dict):
        if token not in container:
            raise PatchConflict(f"{where} does not exist")
        return container[token]
    if isinstance(container, list):
        return container[_index(container, token, where, allow_end=False)]
    raise PatchConflict(f"{where} is inside a value that is neither an object nor an array")


def _index(array: list[Any], token: str, where: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(array)
    # RFC 6901: array indexes are decimal without leading zeros.
    if not token.isdigit() or (token.startswith("0") and token != "0"):
        raise PatchConflict(f"{where}: {token!r} is not an array index")
    index = int(token)
    if index > len(array) or (index == len(array) and not allow_end):
        raise PatchConflict(f"{where}: index {index} is out of range")
    return index


def _get(document: Any, pointer: str) -> Any:
    tokens = parse_pointer(pointer)
    value = document
    for depth, token in enumerate(tokens):
        value = _child(value, token, "/" + "/".join(tokens[: depth + 1]))
    return value


def _add(document: Any, op: dict[str, Any], value: Any = None, *, use_value: bool = True) -> Any:
    tokens = parse_pointer(op["path"])
    new = copy.deepcopy(op["value"]) if use_value else value
    if not tokens:
        return new
    container, key = _parent(document, tokens)
    if isinstance(container, dict):
        container[key] = new
    elif isinstance(container, list):
        container.insert(_index(container, key, op["path"], allow_end=True), new)
    else:
        raise PatchConflict(f"{op['path']}: the parent is neither an object nor an array")
    return document


def _remove(document: Any, op: dict[str, Any]) -> Any:
    tokens = parse_pointer(op["path"])
    if not tokens:
        raise PatchConflict("the whole document cannot be removed")
    container, key = _parent(document, tokens)
    if isinstance(container, dict):
        if key not in container:
            raise PatchConflict(f"{op['path']} does not exist")
        del container[key]
    elif isinstance(container, list):
        del container[_index(container, key, op["path"], allow_end=False)]
    else:
        raise PatchConflict(f"{op['path']}: the parent is neither an object nor an array")
    return document


def _replace(document: Any, op: dict[str, Any]) -> Any:
    _get(document, op["path"])  # the target must exist (RFC 6902 section 4.3)
    if not parse_pointer(op["path"]):
        return copy.deepcopy(op["value"])
    return _add(_remove(document, op), op)


def _move(document: Any, op: dict[str, Any]) -> Any:
    if op["path"].startswith(op["from"] + "/"):
        raise PatchConflict(f"cannot move {op['from']} into its own child {op['path']}")
    value = _get(document, op["from"])
    document = _remove(document, {"path": op["from"]})
    return _add(document, op, value, use_value=False)


def _copy(document: Any, op: dict[str, Any]) -> Any:
    value = copy.deepcopy(_get(document, op["from"]))
    return _add(document, op, value, use_value=False)


def _test(document: Any, op: dict[str, Any]) -> Any:
    actual = _get(document, op["path"])
    if not _json_equal(actual, op["value"]):
        raise PatchConflict(f"test failed: {op['path']} is not the expected value")
    return document


def _json_equal(a: Any, b: Any) -> bool:
    """RFC 6902 section 4.6: equal JSON values (so true is not 1, and 1 equals 1.0)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return (type(a) is type(b) and a == b) or (_number(a) and _number(b) and a == b)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_APPLY: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "add": _add,
    "remove": _remove,
    "replace": _replace,
    "move": _move,
    "copy": _copy,
    "test": _test,
}
