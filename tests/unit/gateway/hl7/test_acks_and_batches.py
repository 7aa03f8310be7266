"""Acknowledgment modes (MSH-15/16, v2.5.1 2.9) and HTTP batches (2.10.3)."""

from __future__ import annotations

import pytest

from services.gateway import domain
from services.gateway.hl7.batch import read_batch, write_acks
from shared.errors import InvalidInput


def header(accept: str = "", application: str = "") -> domain.MessageHeader:
    raw = f"MSH|^~\\&|LAB|NORTH|CB|CB|20240101||ADT^A01|C1|P|2.5.1|||{accept}|{application}\r".encode()
    return domain.read_header(raw)


def msa(ack: bytes) -> list[str]:
    return next(s for s in ack.decode().split("\r") if s.startswith("MSA")).split("|")


def test_msh15_and_msh16_are_read() -> None:
    h = header("AL", "ne")
    assert (h.accept_ack_type, h.application_ack_type) == ("AL", "NE")
    assert domain.enhanced_mode(h) and not domain.enhanced_mode(header())


@pytest.mark.parametrize("code", ["AA", "AE", "AR"])
def test_original_mode_sends_one_application_ack(code: str) -> None:
    acks = domain.acknowledgements(header(), code, "ID1")
    assert [msa(a)[1:3] for a in acks] == [[code, "C1"]]


@pytest.mark.parametrize(
    "accept, application, code, expected",
    [
        ("AL", "AL", "AA", ["CA", "AA"]),
        ("AL", "NE", "AA", ["CA"]),
        ("NE", "AL", "AE", ["AE"]),
        ("NE", "NE", "AA", []),
        ("ER", "ER", "AA", []),
        ("ER", "ER", "AE", ["AE"]),  # stored (commit succeeded), but processing failed
        ("ER", "ER", "AR", ["CR", "AR"]),
        ("SU", "SU", "AA", ["CA", "AA"]),
        ("SU", "SU", "AR", []),
        ("AL", "", "AE", ["CA", "AE"]),  # an empty condition in enhanced mode is answered
    ],
)
def test_enhanced_mode_follows_the_conditions(
    accept: str, application: str, code: str, expected: list[str]
) -> None:
    error = (domain.ERR_APPLICATION_INTERNAL, "boom", "") if code != "AA" else None
    acks = domain.acknowledgements(header(accept, application), code, "ID1", error=error)
    assert [msa(a)[1] for a in acks] == expected
    assert all(msa(a)[2] == "C1" for a in acks)
    # Each ACK is a message of its own with its own control id.
    assert len({a.split(b"\r")[0].split(b"|")[9] for a in acks}) == len(acks)


def test_errors_carry_an_err_segment_with_table_0357_code_and_location() -> None:
    error = (domain.ERR_REQUIRED_FIELD_MISSING, "PID-3 has no identifier", "PID^1^3")
    (ack,) = domain.acknowledgements(header(), "AE", "ID1", error=error)
    err = next(s for s in ack.decode().split("\r") if s.startswith("ERR")).split("|")
    assert err[2] == "PID^1^3" and err[3] == "101^Required field missing^HL70357" and err[4] == "E"


BATCH = (
    b"FHS|^~\\&|LAB|NORTH|||20240101||||F1\r"
    b"BHS|^~\\&|LAB|NORTH|||20240101||||B7\r"
    b"MSH|^~\\&|LAB|NORTH|CB|CB|20240101||ADT^A01|M1|P|2.5.1\rPID|1||1\r"
    b"MSH|^~\\&|LAB|NORTH|CB|CB|20240101||ADT^A08|M2|P|2.5.1\rPID|1||1\r"
    b"BTS|2\rFTS|1\r"
)


def test_a_batch_is_split_into_its_messages() -> None:
    batch = read_batch(BATCH.replace(b"\r", b"\n"))
    assert [m.split(b"|")[9] for m in batch.messages] == [b"M1", b"M2"]
    assert all(m.endswith(b"PID|1||1\r") for m in batch.messages)
    assert batch.batch_header is not None and batch.file_header is not None


def test_acks_of_a_batch_go_back_in_a_batch_that_refers_to_it() -> None:
    batch = read_batch(BATCH)
    acks = [domain.build_ack(domain.read_header(m), "AA", f"A{i}") for i, m in enumerate(batch.messages)]
    out = write_acks(batch, acks).decode().strip("\r").split("\r")
    names = [s[:3] for s in out]
    assert names == ["FHS", "BHS", "MSH", "MSA", "MSH", "MSA", "BTS", "FTS"]
    assert out[1].split("|")[11] == "B7" and out[0].split("|")[11] == "F1"
    assert out[6] == "BTS|2"


def test_messages_back_to_back_get_their_acks_back_to_back() -> None:
    body = BATCH.split(b"BHS")[1].split(b"\r", 1)[1].split(b"BTS")[0]
    batch = read_batch(body)
    assert batch.batch_header is None and len(batch.messages) == 2
    acks = [b"MSH|a\rMSA|AA|M1\r", b"MSH|b\rMSA|AA|M2\r"]
    assert write_acks(batch, acks) == b"".join(acks)


@pytest.mark.parametrize("body", [b"", b"\r\n", b"PID|1\rMSH|^~\\&|A\r", b"hello"])
def test_a_body_without_messages_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        read_batch(body)


def test_services_skip_translated_messages_that_hold_nothing_of_theirs() -> None:
    from services.gateway.hl7.er7 import Message
    from services.gateway.hl7.translate import translate
    from shared.events import topics

    adt = Message.parse(
        b"MSH|^~\\&|EPIC|NORTH|CB|CB|20261101||ADT^A01^ADT_A01|C1|P|2.5.1\r"
        b"PID|1||M1^^^NORTHMRN^MR||EVERYPERSON^ALEX\rPV1|1|I|||||||||||||||||V1\r"
    )
    translation = translate(adt)
    assert translation.owners == ["intake"]
    headers = [("traceparent", b"00-x"), (topics.OWNERS_HEADER, ",".join(translation.owners).encode())]
    assert topics.concerns("intake")(headers)
    assert not topics.concerns("careplan")(headers) and not topics.concerns("referral")(headers)
    assert topics.concerns("careplan")([("traceparent", b"00-x")])  # no header: not filtered
