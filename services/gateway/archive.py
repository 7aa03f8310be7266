"""The HL7 v2 message archive: every message the gateway receives, accepted or not, with its ACKs
and its conversion report.

A message is acknowledged only after its row (and, when it was translated, its event in the
outbox) is committed (DESIGN.md, HL7 v2: ACK after durable store). Statuses:

- `processed`: stored, translated, its Bundle in the outbox; answered AA;
- `error`: stored, but it could not be translated (AE); kept with its error for `$reprocess`;
- `rejected`: refused (AR: no readable header, an unsupported type); kept, never dropped.

Processed and errored messages are unique on (sending application and facility, MSH-10): the
database constraint is the authority and Redis remembers recent ACKs, so a resend is answered
with the first ACKs and has no second effect. Rejected ones are not: a corrected message may come
back with the same control id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateColumn, CreateIndex

from shared.store import Migration, Store, UtcDateTime, create_tables

metadata = sa.MetaData()

PROCESSED, ERROR, REJECTED = "processed", "error", "rejected"
STATUSES = (PROCESSED, ERROR, REJECTED)

hl7_messages = sa.Table(
    "hl7_messages",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # Set for processed and errored messages: "<sending application>^<sending facility>" and MSH-10.
    sa.Column("dedup_facility", sa.String(255)),
    sa.Column("dedup_control_id", sa.String(255)),
    sa.Column("sending_application", sa.String(255)),
    sa.Column("sending_facility", sa.String(255)),
    sa.Column("control_id", sa.String(255)),
    sa.Column("message_type", sa.String(16)),
    sa.Column("trigger_event", sa.String(16)),
    sa.Column("version", sa.String(16)),
    sa.Column("transport", sa.String(8), nullable=False),  # mllp | http
    sa.Column("error", sa.Text),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    # The ACKs sent, each an HL7 message, joined by FS (0x1C, which no HL7 message contains).
    sa.Column("ack", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("dedup_facility", "dedup_control_id", name="uq_hl7_messages_dedup"),
)

#: Version 2: the conversion report, re-processing bookkeeping, and a status index for the list.
_V2_COLUMNS: tuple[sa.Column[Any], ...] = (
    sa.Column("report", sa.Text),
    sa.Column("processed_at", UtcDateTime()),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
)
for _column in _V2_COLUMNS:
    hl7_messages.append_column(_column)
_status_index = sa.Index("ix_hl7_messages_status", hl7_messages.c.status, hl7_messages.c.received_at)


async def _add_v2(connection: AsyncConnection) -> None:
    for column in _V2_COLUMNS:
        ddl = CreateColumn(column).compile(dialect=connection.dialect)
        await connection.execute(sa.text(f"ALTER TABLE hl7_messages ADD COLUMN {ddl}"))
    await connection.execute(
        sa.text(f"UPDATE hl7_messages SET status = '{PROCESSED}' WHERE status = 'accepted'")
    )
    await connection.execute(CreateIndex(_status_index))


def _v1_table() -> sa.Table:
    v2_names = {c.name for c in _V2_COLUMNS}
    columns = [c._copy() for c in hl7_messages.columns if c.name not in v2_names]
    return sa.Table(
        "hl7_messages",
        sa.MetaData(),
        *columns,
        sa.UniqueConstraint("dedup_facility", "dedup_control_id", name="uq_hl7_messages_dedup"),
    )


MIGRATIONS = (
    Migration("gateway.hl7", 1, create_tables(_v1_table()), "HL7 v2 message archive"),
    Migration("gateway.hl7", 2, _add_v2, "HL7 v2 conversion reports, re-processing, status index"),
)

ACK_SEPARATOR = b"\x1c"


def join_acks(acks: list[bytes]) -> bytes:
    return ACK_SEPARATOR.join(acks)


def split_acks(stored: bytes) -> list[bytes]:
    return [a for a in bytes(stored).split(ACK_SEPARATOR) if a]


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """What the archive API shows of a message: metadata, outcome and report, not the body."""

    id: str
    received_at: datetime
    status: str
    sending_application: str | None
    sending_facility: str | None
    control_id: str | None
    message_type: str | None
    trigger_event: str | None
    version: str | None
    transport: str
    error: str | None
    attempts: int
    processed_at: datetime | None
    report: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        kind = f"{self.message_type}^{self.trigger_event}" if self.message_type else None
        return {
            "id": self.id,
            "receivedAt": self.received_at.isoformat(),
            "status": self.status,
            "sendingApplication": self.sending_application,
            "sendingFacility": self.sending_facility,
            "controlId": self.control_id,
            "messageType": kind,
            "version": self.version,
            "transport": self.transport,
            "error": self.error,
            "attempts": self.attempts,
            "processedAt": self.processed_at.isoformat() if self.processed_at else None,
            "report": self.report,
        }


_SUMMARY_COLUMNS = [
    c for c in hl7_messages.c if c.name not in ("raw", "ack", "dedup_facility", "dedup_control_id")
]


def _summary(row: Any) -> MessageSummary:
    values = dict(row._mapping)
    report = values.pop("report")
    return MessageSummary(**values, report=orjson.loads(report) if report else None)


async def list_messages(
    store: Store, *, status: str | None, limit: int, before: tuple[datetime, str] | None = None
) -> list[MessageSummary]:
    """Newest first; `before` is the (received_at, id) of the last one of the previous page."""
    query = sa.select(*_SUMMARY_COLUMNS).order_by(hl7_messages.c.received_at.desc(), hl7_messages.c.id.desc())
    if status:
        query = query.where(hl7_messages.c.status == status)
    if before is not None:
        at, last_id = before
        query = query.where(
            sa.or_(
                hl7_messages.c.received_at < at,
                sa.and_(hl7_messages.c.received_at == at, hl7_messages.c.id < last_id),
            )
        )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query.limit(limit))).all()
    return [_summary(r) for r in rows]


async def get_message(store: Store, message_id: str) -> tuple[MessageSummary, bytes, list[bytes]] | None:
    query = sa.select(*_SUMMARY_COLUMNS, hl7_messages.c.raw, hl7_messages.c.ack).where(
        hl7_messages.c.id == message_id
    )
    async with store.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    values = dict(row._mapping)
    raw, ack = values.pop("raw"), values.pop("ack")
    report = values.pop("report")
    summary = MessageSummary(**values, report=orjson.loads(report) if report else None)
    return summary, bytes(raw), split_acks(ack)
