"""Canonical JSON of a stored version: the caller's resource with id and meta filled in."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.errors import InvalidInput

ONE_MILLISECOND = timedelta(milliseconds=1)

# http://hl7.org/fhir/R4/datatypes.html#id
_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE_RE = re.compile(r"[A-Z][A-Za-z]{0,63}")


def new_id() -> str:
    return str(uuid.uuid4())


def check_id(resource_id: Any) -> str:
    if not isinstance(resource_id, str) or not _ID_RE.fullmatch(resource_id):
        raise InvalidInput(f"Invalid resource id {resource_id!r}: 1-64 of A-Z a-z 0-9 - .", expression=["id"])
    return resource_id


def check_type(resource_type: Any) -> str:
    if not isinstance(resource_type, str) or not _TYPE_RE.fullmatch(resource_type):
        raise InvalidInput(f"Invalid resourceType {resource_type!r}", expression=["resourceType"])
    return resource_type


def next_timestamp(previous: datetime | None) -> datetime:
    """Now in UTC at millisecond precision, and strictly after `previous`.

    meta.lastUpdated is published with milliseconds, so two versions written within the same
    millisecond (or after a clock step back) would otherwise tie or go backwards.
    """
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond - now.microsecond % 1000)
    if previous is not None and now <= previous:
        return previous + ONE_MILLISECOND
    return now


def format_instant(moment: datetime) -> str:
    """FHIR instant with milliseconds, e.g. 2024-05-01T09:30:00.123+00:00."""
    return moment.isoformat(timespec="milliseconds")


def canonical_document(
    resource: dict[str, Any], resource_id: str, version_id: int, last_updated: datetime
) -> dict[str, Any]:
    """The stored document: resourceType, id and meta first, everything else in the caller's order.

    Other meta elements (profile, security labels, tags) are kept; versionId and lastUpdated
    are always the server's. The caller's dict is not modified.
    """
    meta = resource.get("meta")
    new_meta: dict[str, Any] = {"versionId": str(version_id), "lastUpdated": format_instant(last_updated)}
    if isinstance(meta, dict):
        new_meta.update((k, v) for k, v in meta.items() if k not in new_meta)
    doc: dict[str, Any] = {"resourceType": resource["resourceType"], "id": resource_id, "meta": new_meta}
    for key, value in resource.items():
        if key not in doc:
            doc[key] = value
    return doc


def to_json(doc: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(doc)
    except TypeError as exc:  # a value JSON cannot hold (the caller should have validated)
        raise InvalidInput(f"Resource is not serializable as JSON: {exc}") from exc
