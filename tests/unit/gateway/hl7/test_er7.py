"""The ER7 reader: delimiters, line ends, character sets, escapes, timestamps, and the whole corpus."""

from __future__ import annotations

import pytest

from services.gateway.hl7.er7 import (
    Encoding,
    Message,
    ParseError,
    decode_bytes,
    read_timestamp,
    unescape,
)
from shared.mllp import split_messages
from tests.corpus import CorpusMessage, hl7_messages

ADT = (
    b"MSH|^~\\&|EPIC|NORTH HOSP|CB|CB|20240301101500||ADT^A01^ADT_A01|MSG1|P|2.5.1\r"
    b"EVN|A01|20240301101500\r"
    b"PID|1||MRN123^^^NORTH&1.2.3.4&ISO^MR~999-00-1234^^^SSA^SS||EVERYPERSON^ALEX^J||19800102|F\r"
    b"PV1|1|I|PSY^201^A\r"
    b"ZXY|custom|data\r"
)


@pytest.mark.parametrize("message", hl7_messages(), ids=lambda m: m.id)
def test_every_corpus_message_is_read(message: CorpusMessage) -> None:
    for raw in split_messages(message.path.read_bytes()):
        parsed = Message.parse(raw)
        assert parsed.msh.name == "MSH"
        assert [s.name for s in parsed][: len(message_ids(message))] == message_ids(message)


def message_ids(message: CorpusMessage) -> list[str]:
    return [s.name for s in Message.parse(split_messages(message.path.read_bytes())[0])]


def test_fields_repetitions_components_and_subcomponents_are_numbered_as_in_the_standard() -> None:
    m = Message.parse(ADT)
    assert m.msh.get(3) == "EPIC" and m.msh.get(9, 2) == "A01" and m.msh.get(10) == "MSG1"
    assert m.msh.field(1).text == "|" and m.msh.field(2).text == "^~\\&"
    pid = m.first("PID")
    assert pid is not None
    reps = pid.repetitions(3)
    assert [r.text for r in reps] == ["MRN123", "999-00-1234"]
    assert reps[0].get(4, 1) == "NORTH" and reps[0].get(4, 2) == "1.2.3.4" and reps[0].get(5) == "MR"
    assert pid.get(5, 2) == "ALEX" and pid.get(8) == "F"
    assert pid.get(40) == "" and pid.repetitions(40) == []


def test_z_segments_are_kept() -> None:
    zxy = Message.parse(ADT).first("ZXY")
    assert zxy is not None and zxy.get(2) == "data"


def test_segments_remember_which_fields_were_read() -> None:
    pid = Message.parse(ADT).first("PID")
    assert pid is not None
    pid.get(5, 1)
    assert pid.accessed == {5}
    assert pid.populated() == [1, 3, 5, 7, 8]


@pytest.mark.parametrize("ending", [b"\r", b"\n", b"\r\n"])
def test_any_line_ending_ends_a_segment(ending: bytes) -> None:
    m = Message.parse(ADT.replace(b"\r", ending))
    assert [s.name for s in m] == ["MSH", "EVN", "PID", "PV1", "ZXY"]


def test_bom_is_dropped_and_other_delimiters_are_read_from_msh() -> None:
    raw = b"\xef\xbb\xbfMSH#*@!%#A#B#C#D#2024##ADT*A08#X#P#2.4\rPID#1##ID1*  *  *AUTH#\r"
    m = Message.parse(raw)
    assert m.encoding == Encoding("#", "*", "@", "!", "%")
    assert m.msh.get(9, 2) == "A08"
    pid = m.first("PID")
    assert pid is not None and pid.get(3, 4) == "AUTH"


def test_doubled_escape_character_in_msh2_is_read_as_one() -> None:
    m = Message.parse(b"MSH|^~\\\\&|A|B|C|D|2024||ADT^A01|X|P|2.3\rPID|1||A\\T\\B\r")
    assert m.encoding.escape == "\\" and m.encoding.subcomponent == "&"
    pid = m.first("PID")
    assert pid is not None and pid.get(3) == "A&B"


def test_truncation_character_is_accepted() -> None:
    m = Message.parse(b"MSH|^~\\&#|A|B|C|D|2024||ADT^A01|X|P|2.7\r")
    assert m.encoding.truncation == "#"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("A\\F\\B", "A|B"),
        ("A\\S\\B", "A^B"),
        ("A\\T\\B", "A&B"),
        ("A\\R\\B", "A~B"),
        ("A\\E\\B", "A\\B"),
        ("line1\\.br\\line2", "line1\nline2"),
        ("\\X4142\\", "AB"),
        ("caf\\XC3A9\\", "café"),
        ("\\H\\bold\\N\\", "bold"),
        ("a\\.sp2\\b", "a\n\nb"),
        ("trailing\\", "trailing\\"),
    ],
)
def test_escape_sequences_are_decoded(raw: str, expected: str) -> None:
    assert unescape(raw) == expected


def test_escapes_decode_after_splitting_so_an_escaped_separator_stays_text() -> None:
    m = Message.parse(b"MSH|^~\\&|A|B|C|D|2024||ORU^R01|X|P|2.5.1\rOBX|1|ST|C^D||5\\S\\10 mg\\F\\day\r")
    obx = m.first("OBX")
    assert obx is not None and obx.get(5) == "5^10 mg|day"


def test_explicit_null_reads_as_empty() -> None:
    m = Message.parse(b'MSH|^~\\&|A|B|C|D|2024||ADT^A08|X|P|2.5.1\rPID|1||""\r')
    pid = m.first("PID")
    assert pid is not None and pid.get(3) == "" and pid.field(3).is_null and not pid.field(3)


def test_character_set_comes_from_msh18_with_fallbacks() -> None:
    latin = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P|2.5||||||8859/1\rPID|1||1||MÜLLER\r".encode("latin-1")
    text, codec = decode_bytes(latin)
    assert codec == "latin-1" and "MÜLLER" in text
    utf8 = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P|2.5\rPID|1||1||MÜLLER\r".encode()
    assert decode_bytes(utf8) == (utf8.decode(), "utf-8")
    undeclared_latin = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P|2.5\rPID|1||1||MÜLLER\r".encode("latin-1")
    text, codec = decode_bytes(undeclared_latin)
    assert codec == "cp1252" and "MÜLLER" in text


@pytest.mark.parametrize(
    "raw",
    [b"", b"PID|1\r", b"MSH", b"MSHA^~\\&|x\r", b"MSH|^~|A\r"],
)
def test_what_is_not_a_message_is_a_parse_error(raw: bytes) -> None:
    with pytest.raises(ParseError):
        Message.parse(raw)


@pytest.mark.parametrize(
    "text, zone, date, moment",
    [
        ("2024", "UTC", "2024", None),
        ("202403", "UTC", "2024-03", None),
        ("20240315", "UTC", "2024-03-15", None),
        ("202403150830", "UTC", "2024-03-15", "2024-03-15T08:30:00Z"),
        ("20240315083015.1234", "UTC", "2024-03-15", "2024-03-15T08:30:15.1234Z"),
        ("20240315083000-0500", "UTC", "2024-03-15", "2024-03-15T08:30:00-05:00"),
        ("20240315083000+0000", "UTC", "2024-03-15", "2024-03-15T08:30:00Z"),
        # No offset: the sender's zone, daylight saving included (EDT on 15 March, EST in January).
        ("20240315083000", "America/New_York", "2024-03-15", "2024-03-15T08:30:00-04:00"),
        ("20240115083000", "America/New_York", "2024-01-15", "2024-01-15T08:30:00-05:00"),
        ("20240115083000", "Asia/Kolkata", "2024-01-15", "2024-01-15T08:30:00+05:30"),
    ],
)
def test_timestamps_become_fhir_dates_and_instants(
    text: str, zone: str, date: str, moment: str | None
) -> None:
    ts = read_timestamp(text, zone)
    assert ts is not None and ts.date == date and ts.datetime == moment


@pytest.mark.parametrize("text", ["", "yesterday", "20241345", "00000000", "2024021530", "202402301200"])
def test_what_is_not_a_timestamp_is_none(text: str) -> None:
    assert read_timestamp(text) is None
