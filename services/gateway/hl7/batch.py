"""HL7 v2 batches over HTTP (v2.5.1 Chapter 2, 2.10.3: FHS/BHS ... BTS/FTS).

A request body holds one message, several MSH messages back to back, or a batch in its
envelope. The response holds one ACK per message in the same order; when the request came in a
batch envelope, the ACKs go back in one too, with BHS-12/FHS-12 (reference batch control id)
echoing the request's BHS-11/FHS-11 and BTS-1 counting the ACKs, so an interface engine can match
the acknowledgment batch to what it sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from services.gateway.domain import RECEIVING_APPLICATION, RECEIVING_FACILITY
from shared.errors import InvalidInput
from shared.mllp import normalize_segments

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Batch:
    messages: list[bytes]
    file_header: bytes | None = None  # FHS
    batch_header: bytes | None = None  # BHS


def read_batch(body: bytes) -> Batch:
    messages: list[list[bytes]] = []
    fhs = bhs = None
    for segment in normalize_segments(body.removeprefix(_BOM)).split(b"\r"):
        segment = segment.removeprefix(_BOM)
        if not segment.strip():
            continue
        name = segment[:3]
        if name == b"FHS":
            fhs = segment
        elif name == b"BHS":
            bhs = segment
        elif name in (b"BTS", b"FTS"):
            continue
        elif name == b"MSH":
            messages.append([segment])
        elif not messages:
            raise InvalidInput(
                f"A {name.decode('ascii', 'replace')!r} segment comes before any MSH segment: "
                "send HL7 v2 messages, optionally in an FHS/BHS batch"
            )
        else:
            messages[-1].append(segment)
    if not messages:
        raise InvalidInput("The body holds no HL7 v2 message (no MSH segment)")
    return Batch([b"\r".join(m) + b"\r" for m in messages], fhs, bhs)


def _header(segment: bytes, name: bytes) -> bytes:
    """An FHS or BHS answering `segment`: our application and facility as sender, theirs as
    receiver, their control id (field 11) as our reference (field 12)."""
    fs = segment[3:4] or b"|"
    fields = segment.split(fs)
    fields += [b""] * (12 - len(fields))
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000").encode()
    out = [
        name,
        fields[1] or b"^~\\&",
        RECEIVING_APPLICATION.encode(),
        RECEIVING_FACILITY.encode(),
        fields[2],
        fields[3],
        stamp,
        b"",
        b"",
        b"",
        b"",
        fields[10],
    ]
    return fs.join(out)


def write_acks(batch: Batch, acks: list[bytes]) -> bytes:
    body = b"".join(a if a.endswith(b"\r") else a + b"\r" for a in acks)
    if batch.batch_header is None and batch.file_header is None:
        return body
    fs = (batch.batch_header or batch.file_header or b"MSH|")[3:4]
    parts = []
    if batch.file_header is not None:
        parts.append(_header(batch.file_header, b"FHS") + b"\r")
    parts.append(_header(batch.batch_header or batch.file_header or b"BHS|", b"BHS") + b"\r")
    parts.append(body)
    parts.append(fs.join([b"BTS", str(len(acks)).encode()]) + b"\r")
    if batch.file_header is not None:
        parts.append(fs.join([b"FTS", b"1"]) + b"\r")
    return b"".join(parts)
