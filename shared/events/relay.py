"""The outbox relay: publishes the rows a transaction wrote to the store's outbox, then marks them.

A write and the events it causes commit together (transactional outbox). The relay reads the
pending rows in sequence order, publishes a batch, waits for every acknowledgement (`acks=all`)
and only then marks the batch published. All state lives in the database, so a relay that stops
or crashes at any point resumes with the unmarked rows on its next start. A crash between the
broker's acknowledgement and the marking publishes those rows again: delivery is at least once
and consumers deduplicate by event id.

Outbox rows hold the topic name on the broker, prefix included (the writer adds it with
`settings.topic(...)`, see `shared.fhir.events`). Rows carry the trace context of the request
that wrote them; each publish is a PRODUCER span in that trace, and the record's `traceparent`
names that span.

Several replicas of a service may run a relay: only the one holding the store's outbox
leadership (a PostgreSQL advisory lock) publishes; the others stand by. Published rows are
kept for `OUTBOX_RETENTION` (for inspection and replays), then pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from shared.settings import ServiceSettings
from shared.telemetry import (
    EVENTS_PUBLISHED,
    SERVICE_ATTRIBUTE,
    context_from_kafka_headers,
    count_event,
    replace_trace_headers,
    tracer,
)

if TYPE_CHECKING:
    from shared.store import Store

log = logging.getLogger(__name__)

#: How long `stop()` lets the in-flight batch finish before cancelling it.
STOP_GRACE_S = 15.0
_BACKOFF_INITIAL_S = 0.2
_BACKOFF_MAX_S = 5.0
#: Consecutive failures after which the relay logs at ERROR: events are piling up.
_FAILURES_BEFORE_ERROR = 10
CRASH_AFTER_PUBLISH = "crash_after_publish"
#: How long published rows stay in the outbox, and how often the relay prunes older ones.
OUTBOX_RETENTION = timedelta(days=7)
_PRUNE_EVERY_S = 600.0


class OutboxRelay:
    def __init__(self, store: Store, producer: AIOKafkaProducer, settings: ServiceSettings) -> None:
        self._store = store
        self._producer = producer
        self._settings = settings
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: True while this relay holds the outbox leadership (a standby waits for it).
        self.leading = False

    async def start(self) -> None:
        """Start publishing in the background (rows left from a previous run go first)."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self._settings.service_name}")

    def notify(self) -> None:
        """Wake the relay now (the store calls this after a commit that added outbox rows)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop after the in-flight batch (cancel it if it takes longer than STOP_GRACE_S)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        self._wake.set()
        # A standby has no batch in flight: stop its wait for the leadership at once.
        leading = self.leading
        done, _ = await asyncio.wait({task}, timeout=STOP_GRACE_S if leading else 0.05)
        if not done:
            if leading:
                log.warning("outbox relay did not stop within %.0fs; cancelling its batch", STOP_GRACE_S)
            task.cancel()
            await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox relay failed", exc_info=task.exception())

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - callers pass a plain number
        """Wait until every outbox row is published and marked (tests, graceful shutdown)."""
        async with asyncio.timeout(timeout):
            while await self._store.outbox_pending_count() > 0:
                self.notify()
                await asyncio.sleep(0.01)

    async def flush(self) -> None:
        await self.drain()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self._store.outbox_leadership():
                    self.leading = True
                    try:
                        await self._publish_until_stopped()
                    finally:
                        self.leading = False
            except Exception as exc:  # the leadership connection failed: stand by and retry
                log.warning("outbox relay: lost or could not take leadership (%s)", type(exc).__name__)
                await self._wait(self._stopping, _BACKOFF_MAX_S)

    async def _publish_until_stopped(self) -> None:
        failures = 0
        last_prune = 0.0
        batch_size = self._settings.outbox_batch_size
        idle_s = self._settings.outbox_poll_interval_ms / 1000
        linger_s = self._settings.outbox_linger_ms / 1000
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                published = await self._publish_batch(batch_size)
            except Exception as exc:  # broker or database trouble: never drop a row, try again
                failures += 1
                delay = min(_BACKOFF_INITIAL_S * 2 ** min(failures - 1, 10), _BACKOFF_MAX_S)
                log.log(
                    logging.WARNING if failures < _FAILURES_BEFORE_ERROR else logging.ERROR,
                    "outbox relay: publishing failed (%s: %s); retrying in %.1fs",
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await self._wait(self._stopping, delay)
                continue
            failures = 0
            if published < batch_size:
                last_prune = await self._maybe_prune(last_prune)
                await self._wait(self._wake, idle_s)
                if self._wake.is_set() and linger_s > 0:
                    await asyncio.sleep(linger_s)  # gather the rest of a burst into one batch

    async def _maybe_prune(self, last_prune: float) -> float:
        now = asyncio.get_running_loop().time()
        if now - last_prune < _PRUNE_EVERY_S:
            return last_prune
        try:
            pruned = await self._store.outbox_prune(datetime.now(UTC) - OUTBOX_RETENTION)
        except Exception as exc:  # pruning is housekeeping; publishing goes on
            log.warning("outbox relay: pruning failed (%s)", type(exc).__name__)
            return last_prune
        if pruned:
            log.info("outbox relay: pruned %d published rows", pruned)
        return now

    @staticmethod
    async def _wait(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    async def _publish_batch(self, limit: int) -> int:
        records = await self._store.outbox_pending(limit)
        if not records:
            return 0
        spans: list[Span] = []
        futures: list[asyncio.Future[Any]] = []
        try:
            for record in records:
                span = self._start_span(record)
                spans.append(span)
                headers = replace_trace_headers(record.headers, trace.set_span_in_context(span))
                sent = await self._producer.send(record.topic, record.value, key=record.key, headers=headers)
                futures.append(sent)
            results = await asyncio.gather(*futures, return_exceptions=True)
        except BaseException as exc:
            for span in spans:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.end()
            raise
        self._finish_spans(records, spans, results)
        if self._settings.fault_injection == CRASH_AFTER_PUBLISH:
            log.warning("fault injection: killing this process after publishing, before marking")
            os.kill(os.getpid(), signal.SIGKILL)
        await self._store.outbox_mark_published([record.seq for record in records])
        for record in records:
            count_event(EVENTS_PUBLISHED, record.topic, self._settings.service_name)
        return len(records)

    def _start_span(self, record: Any) -> Span:
        return tracer().start_span(
            f"publish {record.topic}",
            context=context_from_kafka_headers(record.headers),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "publish",
                "messaging.destination.name": record.topic,
                "messaging.message.id": record.event_id,
                "carebridge.outbox.seq": record.seq,
                SERVICE_ATTRIBUTE: self._settings.service_name,
            },
        )

    @staticmethod
    def _finish_spans(records: Sequence[Any], spans: Sequence[Span], results: Sequence[Any]) -> None:
        """End each record's span with its partition and offset; raise the first failure."""
        first_error: BaseException | None = None
        for record, span, result in zip(records, spans, results, strict=True):
            if isinstance(result, BaseException):
                span.record_exception(result)
                span.set_status(Status(StatusCode.ERROR, type(result).__name__))
                if first_error is None:
                    first_error = result
                    log.warning("outbox relay: seq %d to %s failed: %s", record.seq, record.topic, result)
            else:
                span.set_attribute("messaging.destination.partition.id", str(result.partition))
                span.set_attribute("messaging.kafka.offset", result.offset)
            span.end()
        if first_error is not None:
            raise first_error
