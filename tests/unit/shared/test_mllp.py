"""MLLP framing and the incremental decoder (HL7 v2 Transport Specification, MLLP Release 2)."""

from __future__ import annotations

import pytest

from shared.errors import PayloadTooLarge
from shared.mllp import FrameTooLarge, MLLPDecoder, frame, normalize_segments

ADT = b"MSH|^~\\&|ADT1|GOOD HEALTH|CAREBRIDGE|CB|20240101120000||ADT^A01|MSG00001|P|2.5\rPID|1||123\r"
ORU = b"MSH|^~\\&|LAB|LAB|CAREBRIDGE|CB|20240101120000||ORU^R01|MSG00002|P|2.5\rOBX|1|NM|8867-4||72\r"


def feed_in_pieces(decoder: MLLPDecoder, data: bytes, size: int) -> list[bytes]:
    messages: list[bytes] = []
    for start in range(0, len(data), size):
        messages += decoder.feed(data[start : start + size])
    return messages


def test_frame_wraps_a_message_in_start_and_end_blocks() -> None:
    assert frame(b"MSH|x\r") == b"\x0bMSH|x\r\x1c\r"


def test_frame_refuses_a_message_containing_block_characters() -> None:
    with pytest.raises(ValueError, match="0x0B or 0x1C"):
        frame(b"MSH|\x1c\r")
    with pytest.raises(ValueError):
        frame(b"\x0bMSH|\r")


def test_one_frame_in_one_read_decodes_to_the_message() -> None:
    assert MLLPDecoder().feed(frame(ADT)) == [ADT]


def test_coalesced_frames_in_one_read_decode_in_order() -> None:
    assert MLLPDecoder().feed(frame(ADT) + frame(ORU) + frame(ADT)) == [ADT, ORU, ADT]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_frames_split_at_every_boundary_decode_to_the_same_messages(size: int) -> None:
    stream = frame(ADT) + frame(ORU)
    assert feed_in_pieces(MLLPDecoder(), stream, size) == [ADT, ORU]


def test_end_block_split_between_reads_completes_the_frame() -> None:
    decoder = MLLPDecoder()
    assert decoder.feed(b"\x0b" + ADT + b"\x1c") == []
    assert decoder.buffered == len(ADT) + 1
    assert decoder.feed(b"\r") == [ADT]
    assert decoder.buffered == 0
    assert not decoder.in_frame


def test_bytes_outside_a_frame_are_discarded() -> None:
    decoder = MLLPDecoder()
    assert decoder.feed(b"garbage\r\n" + frame(ADT) + b"\n\n" + frame(ORU) + b"trailing") == [ADT, ORU]
    assert decoder.discarded == len(b"garbage\r\n") + 2 + len(b"trailing")


def test_a_lone_end_block_character_inside_a_frame_is_content() -> None:
    decoder = MLLPDecoder()
    assert decoder.feed(b"\x0bMSH|a\x1cb\r\x1c\r") == [b"MSH|a\x1cb\r"]


def test_a_new_start_block_inside_a_frame_abandons_the_partial_message() -> None:
    decoder = MLLPDecoder()
    assert decoder.feed(b"\x0bMSH|half a mess") == []
    assert decoder.feed(b"age" + frame(ORU)) == [ORU]
    assert decoder.abandoned == 1


def test_an_empty_frame_decodes_to_an_empty_message() -> None:
    assert MLLPDecoder().feed(b"\x0b\x1c\r") == [b""]


def test_a_message_of_exactly_the_limit_is_accepted_even_when_split() -> None:
    message = b"M" * 100
    assert feed_in_pieces(MLLPDecoder(max_message_bytes=100), frame(message), 101) == [message]
    assert feed_in_pieces(MLLPDecoder(max_message_bytes=100), frame(message), 1) == [message]


def test_an_oversized_frame_raises_frame_too_large_with_the_messages_before_it() -> None:
    decoder = MLLPDecoder(max_message_bytes=100)
    with pytest.raises(FrameTooLarge) as raised:
        decoder.feed(frame(b"ok\r") + b"\x0b" + b"x" * 101)
    assert raised.value.messages == [b"ok\r"]
    assert raised.value.limit == 100
    assert "100 bytes" in str(raised.value)
    assert isinstance(raised.value, PayloadTooLarge)


def test_an_oversized_frame_growing_over_many_reads_raises_once_the_limit_is_passed() -> None:
    decoder = MLLPDecoder(max_message_bytes=100)
    assert decoder.feed(b"\x0b" + b"x" * 60) == []
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"x" * 60)


def test_the_decoder_resynchronises_on_the_next_start_block_after_an_oversized_frame() -> None:
    decoder = MLLPDecoder(max_message_bytes=10)
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"\x0b" + b"x" * 20)
    assert decoder.feed(b"rest of the big one\x1c\r" + frame(b"small\r")) == [b"small\r"]


def test_normalize_segments_turns_lf_and_crlf_into_segment_terminators() -> None:
    assert normalize_segments(b"MSH|a\nPID|1\n") == b"MSH|a\rPID|1\r"
    assert normalize_segments(b"MSH|a\r\nPID|1\r\n") == b"MSH|a\rPID|1\r"
    assert normalize_segments(b"MSH|a\rPID|1\r") == b"MSH|a\rPID|1\r"
    assert normalize_segments(b"MSH|a\r\n\nPID|1") == b"MSH|a\r\rPID|1"


@pytest.mark.parametrize(
    ("msh15", "msh16", "wanted"),
    [
        ("", "", (False, True)),  # original mode: one application ACK
        ("AL", "AL", (True, True)),
        ("AL", "NE", (True, False)),
        ("NE", "NE", (False, False)),
        ("ER", "SU", (False, True)),
    ],
)
def test_a_sender_waits_for_the_acks_the_message_asks_for(
    msh15: str, msh16: str, wanted: tuple[bool, bool]
) -> None:
    from shared.mllp import acks_wanted

    message = f"MSH|^~\\&|A|B|C|D|2024||ADT^A01|X1|P|2.5.1|||{msh15}|{msh16}\rPID|1\r".encode()
    assert acks_wanted(message) == wanted
