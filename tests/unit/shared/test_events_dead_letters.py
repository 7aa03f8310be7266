"""Dead-letter and replay headers: what a DLQ record says about its failure, and how it goes back."""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from shared.errors import BusinessRuleViolation
from shared.events.consumer import DLQ_ERROR_MAX_CHARS, dead_letter_headers
from shared.events.dlq import original_topic, replay_headers


def _record(topic: str, headers: list[tuple[str, bytes]]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=2,
        offset=41,
        timestamp=0,
        timestamp_type=0,
        key=b"patient-1",
        value=b'{"secret": "body"}',
        checksum=None,
        serialized_key_size=9,
        serialized_value_size=18,
        headers=tuple(headers),
    )


def test_dead_letter_headers_keep_the_originals_and_say_what_failed_where() -> None:
    record = _record("p.carebridge.patient.v1", [("traceparent", b"00-abc-def-01")])
    failure = BusinessRuleViolation("no such plan")
    headers = dead_letter_headers(record, failure, group_id="p.careplan", attempts=3)
    as_dict = dict(headers)
    assert headers[0] == ("traceparent", b"00-abc-def-01")
    assert as_dict["x-dlq-error"] == b"BusinessRuleViolation: no such plan"
    assert as_dict["x-dlq-original-topic"] == b"p.carebridge.patient.v1"
    assert as_dict["x-dlq-original-partition"] == b"2"
    assert as_dict["x-dlq-original-offset"] == b"41"
    assert as_dict["x-dlq-consumer-group"] == b"p.careplan"
    assert as_dict["x-dlq-attempts"] == b"3"
    assert as_dict["x-dlq-failed-at"].startswith(b"20")
    assert not any(b"secret" in value for _, value in headers)


def test_dead_letter_error_is_truncated_and_earlier_dlq_headers_are_replaced() -> None:
    record = _record("t", [("x-dlq-error", b"old"), ("x-dlq-attempts", b"9")])
    headers = dead_letter_headers(record, ValueError("x" * 5000), group_id="g", attempts=1)
    assert [value for key, value in headers if key == "x-dlq-attempts"] == [b"1"]
    [error] = [value for key, value in headers if key == "x-dlq-error"]
    assert len(error) == DLQ_ERROR_MAX_CHARS
    assert error.startswith(b"ValueError: xxx")


def test_replay_goes_to_the_original_topic_without_dlq_headers_and_marked_as_replayed() -> None:
    record = _record(
        "p.carebridge.patient.v1.dlq",
        [
            ("traceparent", b"tp"),
            ("x-dlq-original-topic", b"p.carebridge.patient.v1"),
            ("x-dlq-error", b"boom"),
        ],
    )
    assert original_topic(record) == "p.carebridge.patient.v1"
    assert replay_headers(record) == [("traceparent", b"tp"), ("x-replayed-from-dlq", b"1")]


def test_replay_without_an_original_topic_header_uses_the_dlq_name_minus_its_suffix() -> None:
    assert original_topic(_record("p.carebridge.encounter.v1.dlq", [])) == "p.carebridge.encounter.v1"
