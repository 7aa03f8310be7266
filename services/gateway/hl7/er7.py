"""A tolerant, fast reader of HL7 v2 messages in their usual encoding (ER7, "pipe and hat").

Why not hl7apy or python-hl7 here: on the ADT corpus `make bench` measured hl7apy at 21.5
messages/s (~46 ms each) and python-hl7 at 535/s (~1.9 ms), while splitting into fields runs at
148,000/s (~7 µs) and this reader plus the whole translation at 2,240/s (DESIGN.md, HL7 v2). This
module splits, and splits further only what a mapper asks for.

What it tolerates, as real interfaces send it (HL7 v2.5.1 Chapter 2, 2.5-2.7):

- delimiters are read from MSH-1 and MSH-2, whatever they are (2.5.4); a doubled escape
  character in MSH-2 (`^~\\\\&`, a copy/paste defect in public samples) is taken as one;
  a fifth encoding character (the v2.7 truncation character `#`) is accepted;
- a UTF-8 byte-order mark before MSH is dropped; CR, LF or CRLF end segments (2.5.3);
- the character set comes from MSH-18 (table 0211), with UTF-8 then Windows-1252 as fallbacks;
- escape sequences (2.7) are decoded at the leaf: `\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\`, `\\Xhh..\\`
  (bytes in the message's character set), formatting `\\.br\\` `\\.sp\\` (new lines), and the
  highlighting and character-set switches `\\H\\ \\N\\ \\Cxxyy\\ \\Mxxyyzz\\ \\Zxx\\` (dropped);
- Z-segments are kept like any other segment.

Numbering follows the standard: `segment.field(3)` is PID-3; for MSH, `field(1)` is the field
separator and `field(2)` the encoding characters, as in the standard. Repetitions, components and
subcomponents are 1-based too. Every segment remembers which of its fields were read, which is
how the conversion report knows what was mapped (see `services.gateway.hl7.report`).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

_UTF8_BOM = b"\xef\xbb\xbf"

#: MSH-18 character sets (HL7 table 0211) and the Python codec that reads them.
CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
    "ISO IR6": "ascii",
    "ISO IR100": "latin-1",
    "ISO IR192": "utf-8",
    "ISO IR87": "iso2022_jp",
    "ISO IR159": "iso2022_jp_2",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "CNS 11643-1992": "big5",
    "BIG-5": "big5",
    "WINDOWS-1252": "cp1252",
}


class ParseError(Exception):
    """The bytes are not an HL7 v2 message this reader can split (no MSH, no delimiters)."""

    def __init__(self, detail: str, location: str = "MSH"):
        super().__init__(detail)
        self.detail = detail
        self.location = location


@dataclass(frozen=True, slots=True)
class Encoding:
    """The message's delimiters (MSH-1, MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def characters(self) -> str:
        """MSH-2 as it would be written."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


DEFAULT_ENCODING = Encoding()


def decode_bytes(raw: bytes) -> tuple[str, str]:
    """The message text and the codec used: MSH-18's if it names a known one, else UTF-8, else
    Windows-1252 (which maps every byte, so nothing is refused for its character set)."""
    raw = raw.removeprefix(_UTF8_BOM)
    codec = _declared_codec(raw)
    if codec:
        try:
            return raw.decode(codec), codec
        except (UnicodeDecodeError, LookupError):
            pass
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), "cp1252"


def _declared_codec(raw: bytes) -> str | None:
    end = len(raw)
    for terminator in (b"\r", b"\n"):
        at = raw.find(terminator)
        if at != -1:
            end = min(end, at)
    msh = raw[:end]
    if not msh.startswith(b"MSH") or len(msh) < 4:
        return None
    fields = msh.split(msh[3:4])
    if len(fields) <= 17:
        return None
    # MSH-18 repeats; the first repetition is the default character set of the message.
    declared = fields[17].split(b"~")[0].decode("ascii", "replace").strip().upper()
    return CHARSETS.get(declared) if declared else None


def split_segments(text: str) -> list[str]:
    """Segments of a message, whatever ends them (CR, LF, CRLF), blank lines dropped."""
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    return [s for s in text.split("\r") if s.strip()]


def read_encoding(msh: str) -> Encoding:
    if not msh.startswith("MSH") or len(msh) < 5:
        raise ParseError("The message does not begin with an MSH segment")
    fs = msh[3]
    if fs.isalnum() or fs.isspace():
        raise ParseError(f"MSH-1 field separator {fs!r} is not a delimiter", "MSH^1^1")
    chars = msh[4:].split(fs, 1)[0]
    # A doubled escape character (^~\\&) comes from text that was escaped twice on its way here.
    if len(chars) == 5 and chars[2] == chars[3] == "\\":
        chars = chars[:3] + chars[4:]
    if len(chars) < 4:
        raise ParseError(
            f"MSH-2 encoding characters {chars!r} are incomplete (need component, repetition, "
            "escape and subcomponent separators)",
            "MSH^1^2",
        )
    return Encoding(fs, chars[0], chars[1], chars[2], chars[3], chars[4:5])


# --- escape sequences (v2.5.1 2.7) ------------------------------------------------------------

_FORMATTING_NEWLINE = {".br", ".sp"}


def unescape(text: str, enc: Encoding = DEFAULT_ENCODING, codec: str = "utf-8") -> str:
    """Decode the escape sequences in one leaf value (a field, component or subcomponent)."""
    esc = enc.escape
    if esc not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != esc:
            out.append(ch)
            i += 1
            continue
        end = text.find(esc, i + 1)
        if end == -1:  # a lone escape character: keep it as text
            out.append(text[i:])
            break
        out.append(_escape_value(text[i + 1 : end], enc, codec))
        i = end + 1
    return "".join(out)


def _escape_value(seq: str, enc: Encoding, codec: str) -> str:
    simple = {
        "F": enc.field,
        "S": enc.component,
        "T": enc.subcomponent,
        "R": enc.repetition,
        "E": enc.escape,
        "P": enc.truncation or "#",
    }
    if seq in simple:
        return simple[seq]
    if not seq:
        return ""
    head = seq[0]
    if head == "X":  # hexadecimal data, bytes in the message's character set
        try:
            return bytes.fromhex(seq[1:]).decode(codec, errors="replace")
        except ValueError:
            return ""
    lowered = seq.lower()
    if lowered in _FORMATTING_NEWLINE or lowered.startswith(".sp"):
        count = lowered[3:].strip()
        return "\n" * (int(count) if count.isdigit() and int(count) > 0 else 1)
    if head in "HNCMZ" or head == ".":  # highlighting, character-set switches, other formatting
        return ""
    return ""


# --- the message model -------------------------------------------------------------------------


class Value:
    """A piece of a field at some depth: a repetition (level 0), a component (1) or a
    subcomponent (2). `v[i]` is the i-th part one level down (1-based); `str(v)` / `v.text` is
    the decoded text of its first leaf, which is what a single-valued read wants."""

    __slots__ = ("_level", "_msg", "_raw")

    def __init__(self, raw: str, level: int, msg: Message):
        self._raw = raw
        self._level = level
        self._msg = msg

    @property
    def raw(self) -> str:
        return self._raw

    def __bool__(self) -> bool:
        return bool(self._raw) and self._raw != '""'

    def _separator(self) -> str | None:
        enc = self._msg.encoding
        return enc.component if self._level == 0 else enc.subcomponent if self._level == 1 else None

    def parts(self) -> list[Value]:
        sep = self._separator()
        if sep is None:
            return [self]
        return [Value(p, self._level + 1, self._msg) for p in self._raw.split(sep)]

    def __getitem__(self, index: int) -> Value:
        sep = self._separator()
        if sep is None:
            return self if index == 1 else Value("", 3, self._msg)
        parts = self._raw.split(sep)
        raw = parts[index - 1] if 0 < index <= len(parts) else ""
        return Value(raw, self._level + 1, self._msg)

    def get(self, *path: int) -> str:
        """Decoded text at a component path: `v.get(4, 2)` is component 4, subcomponent 2."""
        value = self
        for index in path:
            value = value[index]
        return value.text

    @property
    def text(self) -> str:
        raw = self._raw
        enc = self._msg.encoding
        if self._level == 0:
            raw = raw.split(enc.component, 1)[0]
        if self._level <= 1:
            raw = raw.split(enc.subcomponent, 1)[0]
        if raw == '""':  # the explicit null (2.5.3.1): "delete the value"; read as empty
            return ""
        return unescape(raw, enc, self._msg.codec).strip()

    @property
    def full_text(self) -> str:
        """The whole value with its separators decoded too, for free text (FT, TX, ST)."""
        return unescape(self._raw, self._msg.encoding, self._msg.codec)

    @property
    def is_null(self) -> bool:
        """The explicit HL7 null `""`: the sender says the value is to be removed."""
        return self._raw == '""'

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Value(level={self._level}, raw={self._raw!r})"


class Segment:
    """One segment; fields split on first use. `accessed` records the fields a mapper read."""

    __slots__ = ("_fields", "_msg", "accessed", "index", "name")

    def __init__(self, raw: str, msg: Message, index: int):
        self._msg = msg
        self.index = index  # position in the message, 1-based (for ERR-2 and the report)
        fs = msg.encoding.field
        parts = raw.split(fs)
        self.name = parts[0].strip()
        if self.name == "MSH":
            # MSH-1 is the field separator itself; parts[1] is MSH-2.
            parts = [parts[0], fs, *parts[1:]]
        self._fields = parts
        self.accessed: set[int] = set()

    @property
    def field_count(self) -> int:
        return len(self._fields) - 1

    def raw(self, n: int) -> str:
        self.accessed.add(n)
        fields = self._fields
        return fields[n] if n < len(fields) else ""

    def field(self, n: int) -> Value:
        """Field n's first repetition."""
        raw = self.raw(n)
        if self.name == "MSH" and n <= 2:
            return Value(raw, 3, self._msg)
        rep = self._msg.encoding.repetition
        return Value(raw.split(rep, 1)[0] if rep in raw else raw, 0, self._msg)

    def repetitions(self, n: int) -> list[Value]:
        """Every non-empty repetition of field n."""
        raw = self.raw(n)
        if not raw:
            return []
        if self.name == "MSH" and n <= 2:
            return [Value(raw, 3, self._msg)]
        return [Value(r, 0, self._msg) for r in raw.split(self._msg.encoding.repetition) if r]

    def __getitem__(self, n: int) -> Value:
        return self.field(n)

    def get(self, n: int, *path: int) -> str:
        """Decoded text of field n (first repetition), at an optional component path."""
        return self.field(n).get(*path) if path else self.field(n).text

    def populated(self) -> list[int]:
        """The field numbers that carry a value."""
        start = 3 if self.name == "MSH" else 1
        return [i for i in range(start, len(self._fields)) if self._fields[i] and self._fields[i] != '""']

    def __repr__(self) -> str:
        return f"Segment({self.name}, {self.field_count} fields)"


class Message:
    """A parsed message: its delimiters, character set and segments in order."""

    __slots__ = ("codec", "encoding", "segments")

    def __init__(self, text: str, codec: str = "utf-8"):
        seg_texts = split_segments(text.lstrip("\ufeff"))
        if not seg_texts:
            raise ParseError("The message is empty")
        self.encoding = read_encoding(seg_texts[0])
        self.codec = codec
        self.segments = [Segment(s, self, i) for i, s in enumerate(seg_texts, start=1)]

    @classmethod
    def parse(cls, raw: bytes) -> Message:
        text, codec = decode_bytes(raw)
        return cls(text, codec)

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def first(self, name: str) -> Segment | None:
        for segment in self.segments:
            if segment.name == name:
                return segment
        return None

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)


# --- timestamps (DTM, v2.5.1 2.A.22; TS 2.A.77) -------------------------------------------------

_DTM = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<f>\d{1,4}))?(?P<tz>[+-]\d{4})?$"
)


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A DTM read into FHIR's shapes: `date` (YYYY, YYYY-MM or YYYY-MM-DD) when the value stops
    at the day, else `datetime` with seconds and an offset. A value without an offset takes
    the sender's time zone (a gateway setting per sending facility), so FHIR's rule that a
    dateTime with a time has an offset (R4 datatypes.html#dateTime) is kept honestly."""

    date: str | None = None
    datetime: str | None = None

    @property
    def value(self) -> str | None:
        """What goes in a FHIR dateTime element: the date, or the date and time."""
        return self.datetime or self.date


def read_timestamp(text: str, default_tz: str = "UTC") -> Timestamp | None:
    """A DTM/TS value (`TS` has the time in its first component, so pass `.text`) or None
    when it is empty or not a DTM (the caller reports an unreadable one)."""
    text = text.strip()
    if not text:
        return None
    m = _DTM.match(text)
    if m is None:
        return None
    y, mo, d, h = m["y"], m["mo"], m["d"], m["h"]
    if y == "0000":  # zero year: an unknown date some senders write as 00000000
        return None
    if not _valid(int(y), int(mo or 1), int(d or 1), int(h or 0), int(m["mi"] or 0), int(m["s"] or 0)):
        return None
    if not mo:
        return Timestamp(date=y)
    if not d:
        return Timestamp(date=f"{y}-{mo}")
    date = f"{y}-{mo}-{d}"
    if not h:
        return Timestamp(date=date)
    clock = f"{h}:{m['mi'] or '00'}:{m['s'] or '00'}"
    if m["f"]:
        clock += "." + m["f"]
    tz = m["tz"]
    if tz:
        offset = f"{tz[:3]}:{tz[3:]}"
        if offset in ("+00:00", "-00:00"):
            offset = "Z"
    else:
        offset = _offset_in(default_tz, date, clock)
    return Timestamp(date=date, datetime=f"{date}T{clock}{offset}")


def _valid(year: int, month: int, day: int, hour: int, minute: int, second: int) -> bool:
    try:
        _dt.date(year, month, day)
    except ValueError:
        return False
    return hour < 24 and minute < 60 and second < 61


def _offset_in(zone: str, date: str, clock: str) -> str:
    """The UTC offset of a local wall-clock time in `zone` (DST-aware), as FHIR writes it."""
    if zone in ("UTC", "Z", ""):
        return "Z"
    try:
        local = _dt.datetime.fromisoformat(f"{date}T{clock[:8]}").replace(tzinfo=ZoneInfo(zone))
    except (ValueError, KeyError):
        return "Z"
    delta = local.utcoffset() or _dt.timedelta(0)
    if not delta:
        return "Z"
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
