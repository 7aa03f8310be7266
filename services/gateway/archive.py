"""The HL7 v2 message archive: every message the gateway receives, accepted or not, with its ACK.

A message is acknowledged only after its row is committed (DESIGN.md, HL7 v2: ACK after durable
store). Accepted messages are unique on (sending facility, MSH-10): the database constraint is
the authority, and Redis remembers recent ACKs so a resend is answered without a write.
Rejected messages are kept too (never dropped) so they can be inspected and re-processed.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.gateway import domain
from shared.settings import ServiceSettings
from shared.store import Migration, Store, UtcDateTime, create_tables

log = logging.getLogger(__name__)

_ACK_CACHE_TTL_S = 7 * 24 * 3600

metadata = sa.MetaData()

hl7_messages = sa.Table(
    "hl7_messages",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # accepted | rejected
    # Set only for accepted messages: a rejected message may be corrected and resent.
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
    sa.Column("ack", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("dedup_facility", "dedup_control_id", name="uq_hl7_messages_dedup"),
)


MIGRATIONS = (Migration("gateway.hl7", 1, create_tables(hl7_messages), "HL7 v2 message archive"),)


@dataclass(frozen=True, slots=True)
class Received:
    ack: bytes
    status: str  # accepted | rejected | duplicate
    archive_id: str | None


class MessageArchive:
    def __init__(self, store: Store, redis: aioredis.Redis, settings: ServiceSettings):
        self._store = store
        self._redis = redis
        self._settings = settings

    def _ack_key(self, header: domain.MessageHeader) -> str:
        return self._settings.redis_key("hl7", "ack", header.sending_facility, header.control_id)

    async def receive(self, raw: bytes, transport: str) -> Received:
        """Archive one message and return its ACK; a resend returns the first ACK again."""
        message = domain.normalize(raw)
        try:
            header = domain.parse_header(message)
        except domain.HeaderError as exc:
            return await self._reject(message, transport, None, exc)
        try:
            domain.check_header(header)
        except domain.HeaderError as exc:
            return await self._reject(message, transport, header, exc)
        cached = await self._redis.get(self._ack_key(header))
        if isinstance(cached, bytes):  # the client is not in decode_responses mode
            return Received(cached, "duplicate", None)
        archive_id = str(uuid.uuid4())
        ack = domain.build_ack(header, domain.ACCEPT, archive_id)
        try:
            async with self._store.transaction() as tx:
                await tx.connection.execute(
                    hl7_messages.insert().values(
                        **_row(archive_id, header, message, ack, transport),
                        status="accepted",
                        dedup_facility=header.sending_facility,
                        dedup_control_id=header.control_id,
                    )
                )
        except IntegrityError:
            return await self._duplicate(header)
        await self._remember(header, ack)
        log.info(
            "hl7 accepted type=%s^%s archive_id=%s", header.message_type, header.trigger_event, archive_id
        )
        return Received(ack, "accepted", archive_id)

    async def _duplicate(self, header: domain.MessageHeader) -> Received:
        query = sa.select(hl7_messages.c.ack).where(
            hl7_messages.c.dedup_facility == header.sending_facility,
            hl7_messages.c.dedup_control_id == header.control_id,
        )
        async with self._store.engine.connect() as conn:
            ack = (await conn.execute(query)).scalar_one()
        await self._remember(header, ack)
        return Received(ack, "duplicate", None)

    async def _remember(self, header: domain.MessageHeader, ack: bytes) -> None:
        try:
            await self._redis.set(self._ack_key(header), ack, ex=_ACK_CACHE_TTL_S)
        except aioredis.RedisError:
            log.warning("could not cache an HL7 ACK in Redis; the database still deduplicates")

    async def _reject(
        self, message: bytes, transport: str, header: domain.MessageHeader | None, exc: domain.HeaderError
    ) -> Received:
        archive_id = str(uuid.uuid4())
        ack = domain.build_ack(
            header, domain.REJECT, archive_id, error=(exc.condition, exc.detail, exc.location)
        )
        async with self._store.transaction() as tx:
            await tx.connection.execute(
                hl7_messages.insert().values(
                    **_row(archive_id, header, message, ack, transport), status="rejected", error=exc.detail
                )
            )
        log.info("hl7 rejected archive_id=%s condition=%s", archive_id, exc.condition[0])
        return Received(ack, "rejected", archive_id)


def _row(
    archive_id: str, header: domain.MessageHeader | None, message: bytes, ack: bytes, transport: str
) -> dict[str, object]:
    return {
        "id": archive_id,
        "received_at": datetime.now(UTC),
        "sending_application": header.sending_application if header else None,
        "sending_facility": header.sending_facility if header else None,
        "control_id": header.control_id if header else None,
        "message_type": header.message_type if header else None,
        "trigger_event": header.trigger_event if header else None,
        "version": header.version if header else None,
        "transport": transport,
        "raw": message,
        "ack": ack,
    }
