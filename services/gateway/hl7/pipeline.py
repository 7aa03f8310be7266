"""Receiving one HL7 v2 message: read, translate, store durably, then acknowledge.

    bytes -> MSH (domain.parse_header) -> duplicate? (Redis, then the unique constraint)
          -> parse (er7) + translate (translate.py)      CPU only, before any I/O
          -> ONE transaction: archive row + the translated Bundle's event in the outbox
          -> ACK(s) by acknowledgment mode (domain.acknowledgements)

The ACK is built before the commit but sent only after it (DESIGN.md, HL7 v2: ACK after durable
store): AA when the message and its event are committed, AE when it was stored but could not be
translated, AR when it could not be accepted. If the commit fails nothing is sent and the
connection closes, so the sender resends.

Concurrent messages (from other connections) are committed together by `GroupWriter`: one
transaction for whatever is waiting, so the commit cost is shared; each message still gets its
ACK only after the transaction holding it committed. A message on one connection waits for the
one before it, so per-connection order holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.gateway import domain
from services.gateway.archive import (
    ERROR,
    PROCESSED,
    REJECTED,
    get_message,
    hl7_messages,
    join_acks,
    split_acks,
)
from services.gateway.hl7.context import TranslationError
from services.gateway.hl7.er7 import Message, ParseError
from services.gateway.hl7.translate import (
    ERR_UNSUPPORTED_EVENT_CODE,
    ERR_UNSUPPORTED_MESSAGE_TYPE,
    Translation,
    translate,
)
from shared.errors import Conflict, NotFound
from shared.events import CloudEvent, topics
from shared.settings import GatewaySettings
from shared.store import Store, Transaction
from shared.telemetry import kafka_headers_from_context, tracer

log = logging.getLogger(__name__)

_ACK_CACHE_TTL_S = 7 * 24 * 3600
#: Refusals, not failures: the sender must change something (AR, status rejected).
_REFUSALS = {ERR_UNSUPPORTED_MESSAGE_TYPE[0], ERR_UNSUPPORTED_EVENT_CODE[0]}


@dataclass(frozen=True, slots=True)
class Received:
    acks: list[bytes]
    status: str  # processed | error | rejected | duplicate
    archive_id: str | None


@dataclass(slots=True)
class Outcome:
    """What translating a message came to, before anything is stored."""

    code: str  # AA | AE | AR
    status: str  # processed | error | rejected
    translation: Translation | None = None
    error: tuple[tuple[str, str], str, str] | None = None  # (table-0357 condition, text, ERR-2)

    @property
    def error_text(self) -> str | None:
        return self.error[1] if self.error else None


def message_source(archive_id: str) -> str:
    """meta.source of every resource a message produced: the archived message it came from."""
    return f"urn:carebridge:hl7v2:message:{archive_id}"


def translate_message(message: bytes, archive_id: str, settings: GatewaySettings, facility: str) -> Outcome:
    """Parse and translate; every failure becomes an outcome, never an exception."""
    try:
        parsed = Message.parse(message)
    except ParseError as exc:
        return Outcome(
            domain.REJECT, REJECTED, error=(domain.ERR_REQUIRED_FIELD_MISSING, exc.detail, exc.location)
        )
    try:
        translation = translate(
            parsed, timezone=settings.timezone_of(facility), source=message_source(archive_id)
        )
    except TranslationError as exc:
        if exc.condition[0] in _REFUSALS:
            return Outcome(domain.REJECT, REJECTED, error=(exc.condition, exc.detail, exc.location))
        return Outcome(domain.ERROR, ERROR, error=(exc.condition, exc.detail, exc.location))
    except Exception as exc:  # a mapping bug: keep the message, say AE, log where (never what)
        where = traceback.extract_tb(exc.__traceback__)[-1]
        log.error(
            "hl7 translation failed: %s at %s:%d (archive_id=%s)",
            type(exc).__name__,
            where.filename.rsplit("/", 1)[-1],
            where.lineno or 0,
            archive_id,
        )
        return Outcome(
            domain.ERROR,
            ERROR,
            error=(
                domain.ERR_APPLICATION_INTERNAL,
                f"The message could not be translated ({type(exc).__name__})",
                "",
            ),
        )
    return Outcome(domain.ACCEPT, PROCESSED, translation=translation)


def translated_event(translation: Translation, archive_id: str) -> CloudEvent:
    return CloudEvent(
        type=topics.HL7_TRANSLATED_EVENT,
        source="carebridge/gateway",
        subject=f"hl7v2/{archive_id}",
        data_bytes=orjson.dumps(translation.bundle),
    )


@dataclass(slots=True)
class _Write:
    row: dict[str, Any]
    event: CloudEvent | None
    key: bytes | None
    headers: list[tuple[str, bytes]]
    done: asyncio.Future[bool] = field(init=False)


class GroupWriter:
    """Commits the archive rows (and outbox events) of concurrent messages in shared transactions.

    `write` returns True when the row is committed and False when its (sender, MSH-10) was
    already there (a resend). A batch that hits a duplicate is re-run one message at a time, so
    one resend never fails the others.
    """

    def __init__(self, store: Store, settings: GatewaySettings, max_batch: int = 64):
        self._store = store
        self._settings = settings
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Write] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def write(self, pending: _Write) -> bool:
        pending.done = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(pending)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="hl7-group-writer")
        # shield: a sender that hangs up mid-write does not cancel the commit of its message.
        return await asyncio.shield(pending.done)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except IntegrityError:
                for pending in batch:
                    await self._commit_alone(pending)
            except Exception as exc:
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(exc)
            else:
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_result(True)

    async def _commit(self, batch: list[_Write]) -> None:
        async with self._store.transaction() as tx:
            connection = await tx.sql_connection()
            await connection.execute(hl7_messages.insert(), [p.row for p in batch])
            for pending in batch:
                if pending.event is not None:
                    await self._enqueue(tx, pending)

    async def _commit_alone(self, pending: _Write) -> None:
        try:
            await self._commit([pending])
        except IntegrityError:
            pending.done.set_result(False)
        except Exception as exc:
            pending.done.set_exception(exc)
        else:
            pending.done.set_result(True)

    async def _enqueue(self, tx: Transaction, pending: _Write) -> None:
        assert pending.event is not None
        await tx.add_outbox(
            event_id=pending.event.id,
            topic=self._settings.topic(topics.HL7_TRANSLATED),
            key=pending.key,
            value=pending.event.to_json(),
            headers=pending.headers,
        )


class Hl7Pipeline:
    def __init__(self, store: Store, redis: aioredis.Redis, settings: GatewaySettings):
        self._store = store
        self._redis = redis
        self._settings = settings
        self._writer = GroupWriter(store, settings)

    async def close(self) -> None:
        await self._writer.close()

    def _ack_key(self, header: domain.MessageHeader) -> str:
        return self._settings.redis_key(
            "hl7", "ack", header.sending_application, header.sending_facility, header.control_id
        )

    async def receive(self, raw: bytes, transport: str) -> Received:
        """Store one message and return its ACKs; a resend returns the first ACKs again."""
        with tracer().start_as_current_span("hl7.receive") as span:
            message = domain.normalize(raw)
            try:
                header = domain.parse_header(message)
                domain.check_header(header)
            except domain.HeaderError as exc:
                parsed_header = _header_or_none(message)
                return await self._refuse(message, transport, parsed_header, exc)
            span.set_attribute("hl7.message_type", f"{header.message_type}^{header.trigger_event}")
            cached = await self._cached_ack(header)
            if cached is not None:
                span.set_attribute("hl7.status", "duplicate")
                return Received(cached, "duplicate", None)
            archive_id = str(uuid.uuid4())
            outcome = translate_message(message, archive_id, self._settings, header.sending_facility)
            acks = domain.acknowledgements(header, outcome.code, archive_id, error=outcome.error)
            row = _row(archive_id, header, message, acks, transport, outcome)
            if outcome.status != REJECTED:
                row["dedup_facility"] = _sender(header)
                row["dedup_control_id"] = header.control_id
            translation = outcome.translation
            pending = _Write(
                row,
                translated_event(translation, archive_id) if translation else None,
                translation.patient_key.encode() if translation and translation.patient_key else None,
                _event_headers(translation),
            )
            if not await self._writer.write(pending):
                span.set_attribute("hl7.status", "duplicate")
                return Received(await self._stored_acks(header), "duplicate", None)
            span.set_attribute("hl7.status", outcome.status)
            if outcome.status != REJECTED:
                await self._remember(header, acks)
            log.info(
                "hl7 %s type=%s^%s archive_id=%s",
                outcome.status,
                header.message_type,
                header.trigger_event,
                archive_id,
            )
            return Received(acks, outcome.status, archive_id)

    async def reprocess(self, archive_id: str) -> Received:
        """Translate a stored message again (after a fix) and, if it now translates, publish it.

        The row keeps its id; its status, report, error and ACKs become the new outcome's and
        `attempts` counts the tries. A processed message is not translated twice (409)."""
        found = await get_message(self._store, archive_id)
        if found is None:
            raise NotFound(f"No HL7 v2 message {archive_id}")
        summary, raw, _ = found
        if summary.status == PROCESSED:
            raise Conflict(f"HL7 v2 message {archive_id} is already processed")
        message = domain.normalize(raw)
        try:
            header: domain.MessageHeader | None = domain.read_header(message)
        except domain.HeaderError as exc:
            header = _header_or_none(message)
            outcome = Outcome(domain.REJECT, REJECTED, error=(exc.condition, exc.detail, exc.location))
        else:
            assert header is not None
            outcome = translate_message(message, archive_id, self._settings, header.sending_facility)
        acks = domain.acknowledgements(header, outcome.code, archive_id, error=outcome.error)
        values: dict[str, Any] = {
            "status": outcome.status,
            "error": outcome.error_text,
            "report": _report_json(outcome),
            "ack": join_acks(acks),
            "attempts": summary.attempts + 1,
            "processed_at": datetime.now(UTC) if outcome.status == PROCESSED else None,
        }
        if header is not None and outcome.status != REJECTED:
            values["dedup_facility"] = _sender(header)
            values["dedup_control_id"] = header.control_id
        try:
            async with self._store.transaction() as tx:
                connection = await tx.sql_connection()
                await connection.execute(
                    hl7_messages.update().where(hl7_messages.c.id == archive_id).values(**values)
                )
                translation = outcome.translation
                if translation is not None:
                    event = translated_event(translation, archive_id)
                    await tx.add_outbox(
                        event_id=event.id,
                        topic=self._settings.topic(topics.HL7_TRANSLATED),
                        key=translation.patient_key.encode() if translation.patient_key else None,
                        value=event.to_json(),
                        headers=_event_headers(translation),
                    )
        except IntegrityError:
            raise Conflict(
                f"Another message from the same sender with control id {summary.control_id} was accepted "
                "since; this one is left as it was"
            ) from None
        if header is not None and outcome.status != REJECTED:
            await self._remember(header, acks)
        log.info("hl7 reprocessed archive_id=%s status=%s", archive_id, outcome.status)
        return Received(acks, outcome.status, archive_id)

    async def _refuse(
        self,
        message: bytes,
        transport: str,
        header: domain.MessageHeader | None,
        exc: domain.HeaderError,
    ) -> Received:
        archive_id = str(uuid.uuid4())
        outcome = Outcome(domain.REJECT, REJECTED, error=(exc.condition, exc.detail, exc.location))
        acks = domain.acknowledgements(header, domain.REJECT, archive_id, error=outcome.error)
        await self._writer.write(
            _Write(_row(archive_id, header, message, acks, transport, outcome), None, None, [])
        )
        log.info("hl7 rejected archive_id=%s condition=%s", archive_id, exc.condition[0])
        return Received(acks, REJECTED, archive_id)

    async def _cached_ack(self, header: domain.MessageHeader) -> list[bytes] | None:
        try:
            cached = await self._redis.get(self._ack_key(header))
        except aioredis.RedisError:
            return None  # the database still deduplicates
        return split_acks(cached) if isinstance(cached, bytes) else None

    async def _stored_acks(self, header: domain.MessageHeader) -> list[bytes]:
        query = sa.select(hl7_messages.c.ack).where(
            hl7_messages.c.dedup_facility == _sender(header),
            hl7_messages.c.dedup_control_id == header.control_id,
        )
        async with self._store.engine.connect() as conn:
            stored = (await conn.execute(query)).scalar_one()
        acks = split_acks(stored)
        await self._remember(header, acks)
        return acks

    async def _remember(self, header: domain.MessageHeader, acks: list[bytes]) -> None:
        try:
            await self._redis.set(self._ack_key(header), join_acks(acks), ex=_ACK_CACHE_TTL_S)
        except aioredis.RedisError:
            log.warning("could not cache an HL7 ACK in Redis; the database still deduplicates")


def _event_headers(translation: Translation | None) -> list[tuple[str, bytes]]:
    """Trace context, and which services own something in the Bundle (the others skip it)."""
    headers = kafka_headers_from_context()
    if translation is not None:
        headers.append((topics.OWNERS_HEADER, ",".join(translation.owners).encode()))
    return headers


def _sender(header: domain.MessageHeader) -> str:
    """The duplicate key's sender part: MSH-3 and MSH-4 (a control id is unique per sender)."""
    return f"{header.sending_application}^{header.sending_facility}"


def _header_or_none(message: bytes) -> domain.MessageHeader | None:
    try:
        return domain.parse_header(message)
    except domain.HeaderError:
        return None


def _report_json(outcome: Outcome) -> str | None:
    return orjson.dumps(outcome.translation.report).decode() if outcome.translation else None


def _row(
    archive_id: str,
    header: domain.MessageHeader | None,
    message: bytes,
    acks: Iterable[bytes],
    transport: str,
    outcome: Outcome,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": archive_id,
        "received_at": now,
        "status": outcome.status,
        "dedup_facility": None,
        "dedup_control_id": None,
        "sending_application": header.sending_application if header else None,
        "sending_facility": header.sending_facility if header else None,
        "control_id": header.control_id if header else None,
        "message_type": header.message_type if header else None,
        "trigger_event": header.trigger_event if header else None,
        "version": header.version if header else None,
        "transport": transport,
        "error": outcome.error_text,
        "raw": message,
        "ack": join_acks(list(acks)),
        "report": _report_json(outcome),
        "processed_at": now if outcome.status == PROCESSED else None,
        "attempts": 1,
    }
