"""The benchmark harness's own pieces (bench/): request building, response reading, the corpus
rewriting that keeps every MSH-10 unique, and the report. No servers: `make bench` runs those."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

from bench import fhir_bench, hl7_bench, loadgen
from bench.report import Baseline, Metric, format_table, write_json
from shared.fhir.validation import validate_resource
from shared.mllp import MLLPDecoder, control_id


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 0.50) == 50.0
    assert loadgen.percentile(values, 0.99) == 99.0
    assert loadgen.percentile([], 0.99) is None


def test_http_request_carries_host_headers_and_content_length() -> None:
    request = loadgen.http_request("POST", "127.0.0.1", 8080, "/fhir/Patient", {"Accept": "x"}, b"{}")
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"POST /fhir/Patient HTTP/1.1",
        b"Host: 127.0.0.1:8080",
        b"Accept: x",
        b"Content-Length: 2",
    ]
    assert body == b"{}"


async def test_http_response_reader_consumes_exactly_one_response() -> None:
    first = b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello"
    second = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    reader = _reader(first + second)
    assert await loadgen._read_http(reader) == ("201", True)
    assert await loadgen._read_http(reader) == ("404", False)


async def test_http_response_reader_follows_chunked_bodies() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    reader = _reader(chunked + b"HTTP/1.1 204 No Content\r\n\r\n")
    assert await loadgen._read_http(reader) == ("200", True)
    assert await loadgen._read_http(reader) == ("204", True)


async def test_mllp_reader_reports_the_ack_code() -> None:
    ack = b"\x0bMSH|^~\\&|CAREBRIDGE|CAREBRIDGE|A|F|20240101||ACK^A01^ACK|1|P|2.5.1\rMSA|AE|X\r\x1c\r"
    assert await loadgen._read_mllp(_reader(ack)) == ("AE", True)


def test_sequence_marker_becomes_a_same_width_number_and_the_budget_is_kept() -> None:
    spec = loadgen.LoadSpec("127.0.0.1", 1, (b"id=" + loadgen.SEQ_MARKER,), max_requests=2, seq_start=41)
    run = loadgen._Run(spec)
    assert run.take() == (0, b"id=000000000041")
    assert run.take() == (1, b"id=000000000042")
    assert run.take() is None
    assert run.exhausted


def test_mllp_templates_give_each_message_its_own_control_id() -> None:
    messages = hl7_bench.load_adt_messages()
    assert messages and all(m.text.startswith("MSH") for m in messages)
    templates = hl7_bench.mllp_templates(messages, "Babc1234")
    sent = [
        t.replace(loadgen.SEQ_MARKER, str(n).zfill(loadgen.SEQ_WIDTH).encode())
        for n, t in enumerate(templates)
    ]
    decoded = [MLLPDecoder().feed(s)[0] for s in sent]
    ids = [control_id(m) for m in decoded]
    assert len(set(ids)) == len(ids)
    assert all(len(i) <= 20 for i in ids)  # HL7 v2.5 MSH-10 is at most 20 characters
    # Everything after MSH is untouched.
    assert [d.partition(b"\r")[2] for d in decoded] == [m.text.encode().partition(b"\r")[2] for m in messages]


def test_parse_floor_splits_segments_and_fields() -> None:
    fields = hl7_bench.split_fields("MSH|^~\\&|A\rPID|1||123\r")
    assert fields == [["MSH", "^~\\&", "A"], ["PID", "1", "", "123"]]


def test_synthetic_patients_are_valid_fhir() -> None:
    rng = random.Random(1)
    for n in range(20):
        validate_resource(fhir_bench.synthetic_patient(rng, f"BENCH-{n}"), "Patient")


def test_report_keeps_the_baseline_next_to_each_figure(tmp_path: Path) -> None:
    metrics = [
        Metric("fhir.read.bare.rps", 4321.98, "req/s", None, "the floor"),
        Metric("fhir.read.gateway.rps", 171.234, "req/s", Baseline("fhir.read.bare.rps", 4321.98, "req/s")),
        Metric("hl7.parse.python_hl7.msgs_per_s", None, "msgs/s", None, "not installed"),
    ]
    table = format_table(metrics)
    assert "fhir.read.gateway.rps" in table and "4,322 req/s  fhir.read.bare.rps" in table
    assert "n/a" in table
    path = tmp_path / "results.json"
    write_json(path, {"cpu": "x"}, metrics)
    document = json.loads(path.read_text())
    assert document["machine"] == {"cpu": "x"}
    assert document["metrics"][1] == {
        "name": "fhir.read.gateway.rps",
        "value": 171.2,
        "unit": "req/s",
        "baseline": {"name": "fhir.read.bare.rps", "value": 4322.0, "unit": "req/s"},
        "notes": "",
    }
