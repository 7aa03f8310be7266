"""The CloudEvents 1.0 JSON envelope every record carries (https://cloudevents.io, spec v1.0.2).

`data` is a FHIR resource or Bundle. Stored resources are already canonical JSON bytes, so the
envelope is built around those bytes without re-serializing them (see DESIGN.md: serve events
from the stored bytes).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.errors import PoisonMessage

_REQUIRED = ("specversion", "id", "source", "type")


@dataclass(slots=True)
class CloudEvent:
    type: str
    source: str
    data: Any = None
    subject: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))
    datacontenttype: str = "application/fhir+json"
    #: `data` already serialized (canonical JSON bytes of a stored resource); wins over `data`.
    data_bytes: bytes | None = field(default=None, repr=False)

    def to_json(self) -> bytes:
        head: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "datacontenttype": self.datacontenttype,
        }
        if self.subject is not None:
            head["subject"] = self.subject
        body = self.data_bytes if self.data_bytes is not None else orjson.dumps(self.data)
        return orjson.dumps(head)[:-1] + b',"data":' + body + b"}"

    @classmethod
    def from_json(cls, raw: bytes | None) -> CloudEvent:
        """Decode a record value; anything that is not a CloudEvents 1.0 envelope is poison."""
        if not raw:
            raise PoisonMessage("Empty record value: not a CloudEvent")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise PoisonMessage(f"Record value is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise PoisonMessage("Record value is not a JSON object")
        missing = [k for k in _REQUIRED if not obj.get(k)]
        if missing:
            raise PoisonMessage(f"CloudEvent lacks required attributes: {', '.join(missing)}")
        if obj["specversion"] != "1.0":
            raise PoisonMessage(f"Unsupported CloudEvents specversion {obj['specversion']!r}")
        return cls(
            type=obj["type"],
            source=obj["source"],
            data=obj.get("data"),
            subject=obj.get("subject"),
            id=obj["id"],
            time=obj.get("time") or "",
            datacontenttype=obj.get("datacontenttype") or "application/json",
        )
