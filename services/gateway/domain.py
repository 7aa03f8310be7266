"""HL7 v2 message header reading and acknowledgements. Pure functions, no I/O.

Reading the MSH by splitting the segment is ~1000x cheaper than building hl7apy's object model
(DESIGN.md, HL7 v2), and the header is all the gateway needs to store, deduplicate and
acknowledge a message. ACK layout: HL7 v2.5.1 Chapter 2, 2.9 (original acknowledgment mode);
MSA-1 codes from table 0008; ERR-3 codes from table 0357.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

SEGMENT_SEPARATOR = b"\r"

#: HL7 table 0008, acknowledgment code: application level (original mode, and the application
#: ACK of enhanced mode) and commit level (the accept ACK of enhanced mode).
ACCEPT, ERROR, REJECT = "AA", "AE", "AR"
COMMIT_ACCEPT, COMMIT_ERROR, COMMIT_REJECT = "CA", "CE", "CR"
#: HL7 table 0155, accept/application acknowledgment conditions (MSH-15, MSH-16).
ALWAYS, NEVER, ON_ERROR, ON_SUCCESS = "AL", "NE", "ER", "SU"

#: HL7 table 0357, message error condition codes (the ones the gateway reports).
ERR_SEGMENT_SEQUENCE = ("100", "Segment sequence error")
ERR_REQUIRED_FIELD_MISSING = ("101", "Required field missing")
ERR_UNSUPPORTED_MESSAGE_TYPE = ("200", "Unsupported message type")
ERR_UNSUPPORTED_PROCESSING_ID = ("202", "Unsupported processing id")
ERR_UNSUPPORTED_VERSION = ("203", "Unsupported version id")
ERR_APPLICATION_INTERNAL = ("207", "Application internal error")

#: Versions whose ACK structure the gateway produces (MSH-12).
SUPPORTED_VERSIONS = frozenset(
    {"2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8"}
)
#: MSH-11 processing ids: P production, T training, D debugging (HL7 table 0103).
SUPPORTED_PROCESSING_IDS = frozenset({"P", "T", "D"})

RECEIVING_APPLICATION = "CAREBRIDGE"
RECEIVING_FACILITY = "CAREBRIDGE"


class HeaderError(Exception):
    """The message cannot be accepted as it is; carries the table-0357 condition."""

    def __init__(self, condition: tuple[str, str], detail: str, location: str = ""):
        super().__init__(detail)
        self.condition = condition
        self.detail = detail
        self.location = location


@dataclass(frozen=True, slots=True)
class MessageHeader:
    field_separator: str
    encoding_characters: str
    sending_application: str
    sending_facility: str
    message_datetime: str
    message_type: str  # MSH-9.1, e.g. ADT
    trigger_event: str  # MSH-9.2, e.g. A03
    control_id: str  # MSH-10
    processing_id: str  # MSH-11.1
    version: str  # MSH-12.1
    accept_ack_type: str = ""  # MSH-15 (table 0155)
    application_ack_type: str = ""  # MSH-16 (table 0155)

    @property
    def component_separator(self) -> str:
        return self.encoding_characters[:1] or "^"


_UTF8_BOM = b"\xef\xbb\xbf"


def normalize(message: bytes) -> bytes:
    """Segments end in CR (v2.5.1 2.5.3); files and HTTP bodies often carry LF or CRLF, and
    some senders put a UTF-8 byte-order mark in front of MSH."""
    text = message.removeprefix(_UTF8_BOM).replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    return text.strip(b"\r") + b"\r"


#: Bytes that must never be echoed into an ACK: MLLP block characters and other C0 controls
#: would break the frame (MLLP Release 2) or the segment structure.
_CONTROL = {i: None for i in range(32)}


def _clean(value: str) -> str:
    return value.translate(_CONTROL)


def _component(value: str, separator: str, index: int = 0) -> str:
    parts = value.split(separator)
    return _clean(parts[index]) if index < len(parts) else ""


def read_header(message: bytes) -> MessageHeader:
    """Read and check the MSH segment. Raises HeaderError with the condition an AR must report."""
    header = parse_header(message)
    check_header(header)
    return header


def parse_header(message: bytes) -> MessageHeader:
    """Read the MSH segment's fields; raises HeaderError only when there is no MSH to read."""
    first, _, _ = message.partition(SEGMENT_SEPARATOR)
    if not first.startswith(b"MSH") or len(first) < 8:
        raise HeaderError(ERR_SEGMENT_SEQUENCE, "The message does not begin with an MSH segment", "MSH")
    try:
        msh = first.decode("utf-8")
    except UnicodeDecodeError:
        msh = first.decode("latin-1")  # MSH-18 may name another character set; the header is ASCII
    fs = msh[3]
    fields = msh.split(fs)
    # fields[0] = "MSH", fields[1] = MSH-2; so MSH-n is fields[n - 1] for n >= 2.
    fields += [""] * (17 - len(fields))
    enc = fields[1]
    comp = enc[:1] or "^"
    header = MessageHeader(
        field_separator=fs,
        encoding_characters=enc,
        sending_application=_component(fields[2], comp),
        sending_facility=_component(fields[3], comp),
        message_datetime=_clean(fields[6]),
        message_type=_component(fields[8], comp, 0),
        trigger_event=_component(fields[8], comp, 1),
        control_id=_clean(fields[9]),
        processing_id=_component(fields[10], comp),
        version=_component(fields[11], comp),
        accept_ack_type=_component(fields[14], comp).upper(),
        application_ack_type=_component(fields[15], comp).upper(),
    )
    return header


def check_header(h: MessageHeader) -> None:
    """What the gateway needs of a header to accept and acknowledge the message."""
    if len(h.encoding_characters) < 4:
        raise HeaderError(ERR_REQUIRED_FIELD_MISSING, "MSH-2 encoding characters are missing", "MSH^1^2")
    if not h.message_type:
        raise HeaderError(ERR_REQUIRED_FIELD_MISSING, "MSH-9 message type is empty", "MSH^1^9")
    if not h.control_id:
        raise HeaderError(ERR_REQUIRED_FIELD_MISSING, "MSH-10 message control id is empty", "MSH^1^10")
    # MSH-11 is required by the standard but often left empty (a third of the public corpus samples):
    # an empty one is taken as production; an unknown one is refused.
    if h.processing_id and h.processing_id not in SUPPORTED_PROCESSING_IDS:
        raise HeaderError(
            ERR_UNSUPPORTED_PROCESSING_ID, f"MSH-11 processing id {h.processing_id!r}", "MSH^1^11"
        )
    if h.version not in SUPPORTED_VERSIONS:
        raise HeaderError(
            ERR_UNSUPPORTED_VERSION, f"MSH-12 version {h.version!r} is not supported", "MSH^1^12"
        )


def enhanced_mode(header: MessageHeader) -> bool:
    """Enhanced acknowledgment mode is asked for by valuing MSH-15 or MSH-16 (v2.5.1 2.9.3)."""
    return bool(header.accept_ack_type or header.application_ack_type)


def _wanted(condition: str, success: bool) -> bool:
    # An empty condition in enhanced mode is answered as AL: a sender that asked for enhanced
    # mode without saying when gets every acknowledgment rather than silence.
    if condition in ("", ALWAYS):
        return True
    if condition == NEVER:
        return False
    if condition == ON_ERROR:
        return not success
    if condition == ON_SUCCESS:
        return success
    return True


def acknowledgements(
    header: MessageHeader | None,
    code: str,
    ack_control_id: str,
    *,
    error: tuple[tuple[str, str], str, str] | None = None,
    now: datetime | None = None,
) -> list[bytes]:
    """The ACKs to send for an outcome (`code` AA, AE or AR), by acknowledgment mode.

    Original mode (v2.5.1 2.9.2): one application ACK. Enhanced mode (2.9.3): the accept ACK
    (CA when the message is safely stored, CR when it was refused) if MSH-15 asks for it, then
    the application ACK if MSH-16 asks for it. CareBridge commits the message and its
    translation together, so both are known at once and go back on the same connection; an
    NE/NE sender gets nothing back.
    """
    if header is None or not enhanced_mode(header):
        return [build_ack(header, code, ack_control_id, error=error, now=now)]
    acks = []
    stored = code != REJECT
    if _wanted(header.accept_ack_type, stored):
        commit = COMMIT_ACCEPT if stored else COMMIT_REJECT
        acks.append(build_ack(header, commit, ack_control_id, error=None if stored else error, now=now))
    if _wanted(header.application_ack_type, code == ACCEPT):
        acks.append(build_ack(header, code, f"{ack_control_id}-A", error=error, now=now))
    return acks


def _escape(text: str, fs: str, enc: str) -> str:
    """Escape delimiters in free text (v2.5.1 2.7.1): \\F\\ \\S\\ \\T\\ \\R\\ \\E\\."""
    esc = enc[2:3] or "\\"
    out = text.replace(esc, f"{esc}E{esc}").replace(fs, f"{esc}F{esc}")
    for char, code in zip(enc[:2] + enc[3:4], "SRT", strict=False):
        out = out.replace(char, f"{esc}{code}{esc}")
    return out


def build_ack(
    header: MessageHeader | None,
    code: str,
    ack_control_id: str,
    *,
    error: tuple[tuple[str, str], str, str] | None = None,
    now: datetime | None = None,
) -> bytes:
    """An ACK for `header` (or, when the MSH itself was unreadable, a generic one).

    `error` is (table-0357 condition, user message, ERR-2 location).
    """
    fs, enc = (header.field_separator, header.encoding_characters) if header else ("|", "^~\\&")
    comp = enc[:1]
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S+0000")
    version = header.version if header else "2.5.1"
    trigger = header.trigger_event if header else ""
    msh = fs.join(
        [
            "MSH",
            enc,
            RECEIVING_APPLICATION,
            RECEIVING_FACILITY,
            header.sending_application if header else "",
            header.sending_facility if header else "",
            stamp,
            "",
            f"ACK{comp}{trigger}{comp}ACK",
            ack_control_id,
            (header.processing_id if header else "") or "P",
            version,
        ]
    )
    segments = [msh, fs.join(["MSA", code, header.control_id if header else ""])]
    if error:
        (err_code, err_text), message, location = error
        severity = "E"
        segments.append(
            fs.join(
                [
                    "ERR",
                    "",
                    location,
                    f"{err_code}{comp}{err_text}{comp}HL70357",
                    severity,
                    "",
                    "",
                    "",
                    _escape(message, fs, enc),
                ]
            )
        )
    return ("\r".join(segments) + "\r").encode()
