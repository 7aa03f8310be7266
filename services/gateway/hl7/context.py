"""What every segment mapper works with: the message, the sender's defaults, and `Output`, which
collects the FHIR resources a message produces as one transaction Bundle.

Identity (issue 4: "business identifiers drive identity"): every resource a message produces
carries a business identifier, and its Bundle entry is a conditional update on it
(`PUT Patient?identifier=system|value`), so the same message twice, or an A08 after an A01,
updates the same Patient and Encounter. References between the resources are conditional
references on the same identifiers (`{"reference": "Patient?identifier=..."}`, R4
bundle.html#references); the service that owns each type resolves them to logical ids
(`shared.fhir.inbound`). Where HL7 gives no identifier (a diagnosis, an observation), the
mapper builds one from what does identify it, under a `urn:carebridge:hl7v2:` system.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from services.gateway.hl7.er7 import Message, Segment, Timestamp, Value, read_timestamp

#: System of the identifiers CareBridge builds when HL7 gives none: urn:carebridge:hl7v2:<kind>.
LOCAL_SYSTEM_PREFIX = "urn:carebridge:hl7v2:"
#: System of an assigning authority named only by its namespace id (CX-4.1, HD-1).
AUTHORITY_SYSTEM_PREFIX = "urn:carebridge:hl7v2:authority:"


@dataclass(frozen=True, slots=True)
class Identity:
    """The business identifier a resource is found by."""

    system: str
    value: str

    @property
    def token(self) -> str:
        return f"{self.system}|{self.value}"

    def as_identifier(self) -> dict[str, str]:
        return {"system": self.system, "value": self.value}


def conditional_url(resource_type: str, identity: Identity) -> str:
    """`Type?identifier=system|value`, percent-encoded; a "|" or "," inside the system or value is
    escaped (search.html#escaping) so it is not read as the separator or an OR."""
    token = f"{_escape(identity.system)}|{_escape(identity.value)}"
    return f"{resource_type}?identifier={quote(token, safe='|:/')}"


def _escape(text: str) -> str:
    # search.html#escaping: "|" and "," inside a token value are escaped with "\".
    return text.replace("|", "\\|").replace(",", "\\,")


def reference(resource_type: str, identity: Identity, display: str | None = None) -> dict[str, Any]:
    """A conditional reference to a resource this or another message produces."""
    ref: dict[str, Any] = {"reference": conditional_url(resource_type, identity)}
    if display:
        ref["display"] = display
    return ref


@dataclass(slots=True)
class Issue:
    severity: str  # error | warning | information
    location: str  # e.g. PID-7, PV1-2
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "location": self.location, "message": self.message}


class TranslationError(Exception):
    """The message parsed but cannot be translated (a required segment or value is missing).

    Becomes an AE with an ERR segment (table 0357 code, ERR-2 location)."""

    def __init__(self, condition: tuple[str, str], detail: str, location: str = ""):
        super().__init__(detail)
        self.condition = condition
        self.detail = detail
        self.location = location


@dataclass(slots=True)
class Produced:
    resource_type: str
    identity: Identity
    resource: dict[str, Any]
    segment: str  # which segment it came from, e.g. "PID" or "OBX[3]"
    #: Create it if it is not there, never change it if it is (a conditional create): a lab
    #: result or an appointment names the visit it belongs to, but only ADT says what the visit
    #: is now; a result arriving after the discharge must not reopen the stay.
    create_only: bool = False


@dataclass(slots=True)
class Output:
    """The resources of one message, in the order they were produced."""

    produced: list[Produced] = field(default_factory=list)
    merges: list[tuple[Identity, Identity]] = field(default_factory=list)  # (source, target)
    _index: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(
        self, resource_type: str, resource: dict[str, Any], identity: Identity, segment: str
    ) -> dict[str, Any]:
        """Add a resource (its identifier list gets `identity` if it lacks it) and return a
        conditional reference to it. Adding the same identity twice merges the two, later
        elements winning: one resource per business identifier per message."""
        body = {"resourceType": resource_type, **resource}
        identifiers = body.setdefault("identifier", [])
        if not any(
            i.get("system") == identity.system and i.get("value") == identity.value for i in identifiers
        ):
            identifiers.insert(0, identity.as_identifier())
        key = (resource_type, identity.token)
        if key in self._index:
            earlier = self.produced[self._index[key]]
            earlier.resource = {**earlier.resource, **body}
        else:
            self._index[key] = len(self.produced)
            self.produced.append(Produced(resource_type, identity, body, segment))
        return reference(resource_type, identity)

    def merge(self, source: Identity, target: Identity) -> None:
        """A40/A34-style merge: `source` is replaced by `target` (MRG-1 into PID-3)."""
        self.merges.append((source, target))


@dataclass(slots=True)
class Context:
    """One message being translated."""

    message: Message
    message_type: str  # MSH-9.1, e.g. ADT
    trigger: str  # MSH-9.2, e.g. A01
    structure: str  # MSH-9.3, or derived from the type and trigger
    version: str
    sending_application: str
    sending_facility: str
    control_id: str
    timezone: str = "UTC"  # the sender's zone for timestamps without an offset
    source: str = ""  # meta.source of everything produced (the archived message)
    out: Output = field(default_factory=Output)
    issues: list[Issue] = field(default_factory=list)

    # --- helpers every mapper uses ---------------------------------------------------------

    def warn(self, location: str, message: str) -> None:
        self.issues.append(Issue("warning", location, message))

    def timestamp(self, value: Value | str, location: str = "") -> Timestamp | None:
        """A DTM/TS in FHIR form, in the sender's zone when it has no offset; a value that is
        not a timestamp is reported and left out (never guessed)."""
        text = value if isinstance(value, str) else value.text
        if not text:
            return None
        ts = read_timestamp(text, self.timezone)
        if ts is None and location:
            self.warn(location, f"{text!r} is not an HL7 date/time; left out")
        return ts

    def authority_system(self, hd: Value) -> str | None:
        """Identifier.system for an assigning authority (HD, e.g. CX-4): an ISO OID as
        urn:oid:, a URI as is, else a system named after its namespace id (V2-to-FHIR IG,
        datatype map CX[Identifier]: CX-4 -> system via the HD's universal id)."""
        namespace, universal, kind = hd.get(1), hd.get(2), hd.get(3).upper()
        if universal and kind == "ISO":
            return f"urn:oid:{universal}"
        if universal and kind in ("URI", "URL"):
            return universal
        if universal and kind == "UUID":
            return f"urn:uuid:{universal}"
        if namespace:
            return AUTHORITY_SYSTEM_PREFIX + namespace
        if universal:
            return (
                f"urn:oid:{universal}" if _looks_like_oid(universal) else AUTHORITY_SYSTEM_PREFIX + universal
            )
        return None

    def facility_system(self, kind: str) -> str:
        """A system for identifiers the sending facility assigns without naming an authority
        (an MRN with an empty CX-4 is unique within the facility that sent it)."""
        return f"{LOCAL_SYSTEM_PREFIX}{kind}:{self.sending_facility or self.sending_application or 'unknown'}"

    def local_identity(self, kind: str, *parts: str) -> Identity:
        """An identity CareBridge builds from what identifies a thing that has no identifier."""
        return Identity(f"{LOCAL_SYSTEM_PREFIX}{kind}", ":".join(p for p in parts))


def _looks_like_oid(text: str) -> bool:
    return all(p.isdigit() for p in text.split(".")) and text.count(".") >= 2


def segment_label(segment: Segment) -> str:
    return f"{segment.name}[{segment.index}]"
