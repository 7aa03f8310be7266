"""HL7 v2 header reading and ACKs, checked against the public corpus and hand-made bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.gateway import domain
from tests.corpus import CorpusMessage, hl7_messages

CORPUS = hl7_messages()


def segments(ack: bytes) -> list[list[str]]:
    return [seg.split("|") for seg in ack.decode().strip("\r").split("\r")]


@pytest.mark.parametrize("message", CORPUS, ids=lambda m: m.id)
def test_every_corpus_message_header_is_read_and_acknowledged(message: CorpusMessage) -> None:
    raw = domain.normalize(message.path.read_bytes())
    header = domain.read_header(raw)
    assert f"{header.message_type}^{header.trigger_event}" == message.msg_type
    assert header.version == message.version
    ack = segments(domain.build_ack(header, domain.ACCEPT, "ack-1"))
    assert ack[0][0] == "MSH" and ack[0][9] == "ack-1"
    assert ack[1] == ["MSA", "AA", header.control_id]


def test_bom_and_line_feeds_are_normalized_to_segment_terminators() -> None:
    raw = b"\xef\xbb\xbfMSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5.1\nPID|1\r\n"
    assert domain.normalize(raw) == b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5.1\rPID|1\r"


def test_ack_returns_to_the_sender_and_echoes_its_control_id_and_version() -> None:
    raw = b"MSH|^~\\&|EPIC|NORTH HOSP|CB|CB|20240101120000||ADT^A03^ADT_A03|MSG-77|P|2.5.1\rPID|1\r"
    header = domain.read_header(raw)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    msh, msa = segments(domain.build_ack(header, domain.ACCEPT, "A1", now=now))
    assert msh[2:6] == ["CAREBRIDGE", "CAREBRIDGE", "EPIC", "NORTH HOSP"]
    assert msh[6] == "20260102030405+0000"
    assert msh[8] == "ACK^A03^ACK" and msh[11] == "2.5.1"
    assert msa == ["MSA", "AA", "MSG-77"]


@pytest.mark.parametrize(
    ("raw", "code", "location"),
    [
        (b"PID|1||123\r", "100", "MSH"),
        (b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5.1\r", "101", "MSH^1^10"),
        (b"MSH|^~\\&|A|B|C|D|20240101|||X1|P|2.5.1\r", "101", "MSH^1^9"),
        (b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|Q|2.5.1\r", "202", "MSH^1^11"),
        (b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|9.9\r", "203", "MSH^1^12"),
    ],
    ids=["no-msh", "no-control-id", "no-message-type", "bad-processing-id", "bad-version"],
)
def test_unacceptable_header_gets_an_ar_with_an_err_naming_the_condition(
    raw: bytes, code: str, location: str
) -> None:
    with pytest.raises(domain.HeaderError) as caught:
        domain.read_header(raw)
    try:
        header = domain.parse_header(raw)
    except domain.HeaderError:
        header = None
    exc = caught.value
    ack = segments(
        domain.build_ack(header, domain.REJECT, "A2", error=(exc.condition, exc.detail, exc.location))
    )
    assert ack[1][:2] == ["MSA", "AR"]
    err = ack[2]
    assert err[0] == "ERR" and err[2] == location
    assert err[3].split("^")[0] == code and err[3].endswith("^HL70357")
    assert err[4] == "E" and err[8]


def test_user_message_in_err_escapes_hl7_delimiters() -> None:
    header = domain.read_header(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5.1\r")
    ack = domain.build_ack(
        header, domain.ERROR, "A3", error=(domain.ERR_APPLICATION_INTERNAL, "a|b^c&d~e\\f", "")
    )
    err = ack.decode().split("\r")[2]
    assert err.endswith("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f")


def test_control_characters_in_echoed_fields_never_reach_the_ack() -> None:
    header = domain.read_header(b"MSH|^~\\&|A\x1c|B|C|D|1||ADT^A01|X\x1c\x0b1|P|2.5.1\r")
    ack = domain.build_ack(header, domain.ACCEPT, "A4")
    assert b"\x1c" not in ack and b"\x0b" not in ack
    assert segments(ack)[1] == ["MSA", "AA", "X1"]
