"""What the store hands back: immutable records around stored bytes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored.

    `content` is the canonical JSON (including id, meta.versionId and meta.lastUpdated), ready
    to serve as a response body or event payload; it is b"" for a deletion.
    """

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime  # timezone-aware UTC, millisecond precision
    deleted: bool
    content: bytes


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """An event waiting for (or past) publication by the relay, in commit order of `seq`."""

    seq: int
    event_id: str
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Projection:
    """A service's local copy of another service's data, at the owner's `version`."""

    name: str
    key: str
    version: int
    data: bytes
    change_count: int  # how many puts were applied (1 after the first)
    updated_at: datetime
