"""Paging cursors: opaque, validated, and tied to the query they page through.

A `_cursor` is base64url of compact JSON: the snapshot time, the direction, the sort keys and
id of the row the page starts after (or, going back, before), the total carried from the
first page, and a fingerprint of the criteria and sort so that a cursor pasted onto another
query is refused rather than silently paging something else. Why keyset paging on
(sort keys, id) with a snapshot time, and what it guarantees: see engine.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson

from shared.errors import InvalidInput
from shared.fhir.search.model import Cursor

if TYPE_CHECKING:
    from shared.fhir.search.model import SearchQuery

_VERSION = 1
_DATE_KINDS = frozenset({"date", "_lastUpdated"})
_NUMBER_KINDS = frozenset({"number", "quantity"})
_DIRECTIONS: dict[str, Literal["next", "prev"]] = {"n": "next", "p": "prev"}


def fingerprint(query: SearchQuery) -> str:
    """What a cursor must agree with: type, criteria and sort (not _count, _summary, ...)."""
    shape = [
        query.resource_type,
        [[c.raw_name, c.raw_value] for c in query.criteria],
        [[k.param, k.descending] for k in query.sort],
    ]
    return hashlib.blake2b(orjson.dumps(shape), digest_size=8).hexdigest()


def encode_cursor(
    query: SearchQuery,
    snapshot: datetime,
    direction: Literal["next", "prev"],
    keys: tuple[Any, ...],
    total: int | None,
) -> str:
    payload = {
        "v": _VERSION,
        "f": fingerprint(query),
        "t": snapshot.isoformat(),
        "d": direction[0],
        "k": [_encode_key(k) for k in keys],
        "n": total,
    }
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode("ascii")


def decode_cursor(token: str, query: SearchQuery) -> Cursor:
    """The cursor, or InvalidInput if it is malformed or belongs to another query."""
    malformed = InvalidInput("Invalid _cursor: use the next and previous links exactly as given")
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise malformed from None
    if not isinstance(payload, dict) or payload.get("v") != _VERSION or "f" not in payload:
        raise malformed
    if payload["f"] != fingerprint(query):
        raise InvalidInput("Invalid _cursor: it belongs to a search with other criteria or sort order")
    try:
        return _cursor_from(payload, query, token)
    except (ValueError, TypeError, KeyError):
        raise malformed from None


def _cursor_from(payload: dict[str, Any], query: SearchQuery, token: str) -> Cursor:
    keys = payload["k"]
    kinds = [k.kind for k in query.sort]
    if not isinstance(keys, list) or len(keys) != len(kinds) + 1 or not isinstance(keys[-1], str):
        raise ValueError("wrong keys")
    decoded = (*(_decode_key(kind, key) for kind, key in zip(kinds, keys, strict=False)), keys[-1])
    snapshot = datetime.fromisoformat(payload["t"])
    if snapshot.tzinfo is None:
        raise ValueError("naive snapshot")
    total = payload["n"]
    if total is not None and (not isinstance(total, int) or total < 0):
        raise ValueError("bad total")
    direction = _DIRECTIONS[payload["d"]]
    return Cursor(snapshot.astimezone(UTC), direction, decoded, total, token)


def _encode_key(key: Any) -> Any:
    return key.isoformat() if isinstance(key, datetime) else key


def _decode_key(kind: str, key: Any) -> Any:
    if key is None:
        return None
    if kind in _DATE_KINDS:
        moment = datetime.fromisoformat(key)
        if moment.tzinfo is None:
            raise ValueError("naive key")
        return moment
    if kind in _NUMBER_KINDS:
        if isinstance(key, bool) or not isinstance(key, int | float):
            raise ValueError("number key")
        return float(key)
    if not isinstance(key, str):
        raise ValueError("text key")
    return key
