"""The consumer runner: applies each record once, in order per partition, and never loses one.

For each record: decode the CloudEvent, then in one database transaction claim the event id in
the consumer's inbox and run the handler, so the effect and the "processed" mark commit together
(a redelivered event finds its id claimed and is skipped). The Kafka offset is committed only
after that transaction, so a crash in between redelivers the record and the inbox absorbs it.

Failures are classified by `shared.errors.classify_failure`:

- poison (undecodable, invalid, a non-retriable CareBridgeError): to `<topic>.dlq` at once;
- transient (a dependency is down): retry with capped exponential backoff, without limit, so an
  outage does not drain a topic into its dead-letter topic;
- unknown (most likely a bug): retry `consumer_max_attempts` times, then to the DLQ.

A dead-lettered record keeps its key, value and headers and gains `x-dlq-*` headers saying what
failed and where it came from; it is acknowledged by the broker before its offset is committed.

Rebalances: the runner holds a lock while it works on a polled batch. When partitions are
revoked the listener interrupts that work (between records, or in a retry's backoff), lets the
runner commit what it finished, and only then lets the rebalance go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry.trace import SpanKind

from shared.errors import classify_failure
from shared.events.envelope import CloudEvent
from shared.events.producer import producer_for
from shared.events.topics import dlq_of
from shared.settings import ServiceSettings
from shared.telemetry import (
    EVENTS_CONSUMED,
    EVENTS_DLQ,
    SERVICE_ATTRIBUTE,
    context_from_kafka_headers,
    count_event,
    tracer,
)

if TYPE_CHECKING:
    from aiokafka.structs import ConsumerRecord

    from shared.store import Store, Transaction

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent, "Transaction"], Awaitable[None]]

#: Headers a dead-lettered record gains; `replay_dlq` strips everything with this prefix.
DLQ_HEADER_PREFIX = "x-dlq-"
DLQ_ERROR_MAX_CHARS = 1000
_POLL_TIMEOUT_MS = 200
#: How long `stop()` lets the record in hand finish before cancelling it (its transaction rolls back).
STOP_GRACE_S = 10.0


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._runner._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._runner._on_assigned(assigned)


class ConsumerRunner:
    """One consumer group member: `start()`, then `stop()`; `ready` is set once it has partitions."""

    def __init__(
        self,
        settings: ServiceSettings,
        store: Store,
        *,
        group_id: str,
        topics: Sequence[str],
        handler: Handler,
        consumer_name: str | None = None,
        accepts: Callable[[Sequence[tuple[str, bytes]]], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        #: The group on the broker carries the deployment prefix (tests run in one broker).
        self.group_id = settings.topic(group_id)
        #: The inbox name lives in the service's own database, so it needs no prefix.
        self.consumer_name = consumer_name or group_id
        self.topics = [settings.topic(name) for name in topics]
        self.handler = handler
        self.accepts = accepts
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()
        #: Set while partitions are being revoked (or on stop): abandon the batch in hand.
        self._interrupted = asyncio.Event()
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the dead-letter producer, then join the group and consume in the background."""
        if self._task is not None:
            return
        self._producer = producer_for(self.settings)
        await self._producer.start()
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.group_id}")
        self._task.add_done_callback(self._report_crash)

    def _report_crash(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("consumer %s stopped consuming", self.group_id, exc_info=task.exception())

    async def stop(self) -> None:
        """Finish the record in hand, commit, leave the group."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            self._interrupted.set()
            if not self.ready.is_set():
                task.cancel()  # still joining: nothing in hand
            done, _ = await asyncio.wait({task}, timeout=STOP_GRACE_S)
            if not done:
                log.warning("consumer %s did not stop within %.0fs; cancelling", self.group_id, STOP_GRACE_S)
                task.cancel()
                await asyncio.wait({task})
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()
        self._consumer = self._producer = None
        self.ready.clear()

    async def _run(self) -> None:
        consumer = await self._join()
        failures = 0
        while not self._stopping.is_set():
            try:
                batch = await consumer.getmany(timeout_ms=_POLL_TIMEOUT_MS)
            except KafkaError as exc:
                failures += 1
                log.warning("consumer %s: poll failed (%s); retrying", self.group_id, exc)
                await self._pause(self._backoff_s(failures))
                continue
            failures = 0
            if not batch:
                continue
            async with self._lock:
                for tp, records in batch.items():
                    if self._interrupted.is_set():
                        break
                    await self._process_partition(consumer, tp, records)

    async def _join(self) -> AIOKafkaConsumer:
        """Start a group consumer, trying again while the broker cannot be reached."""
        failures = 0
        while True:
            consumer = self._new_consumer()
            self._consumer = consumer
            try:
                await consumer.start()  # returns once the group assigned partitions
                return consumer
            except KafkaError as exc:
                failures += 1
                log.warning("consumer %s cannot join (%s); retrying", self.group_id, exc)
                await consumer.stop()
                await asyncio.sleep(self._backoff_s(failures))

    def _new_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            client_id=f"carebridge-{s.service_name}",
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
            fetch_max_wait_ms=s.kafka_fetch_max_wait_ms,
        )
        consumer.subscribe(self.topics, listener=_Rebalance(self))
        return consumer

    async def _on_revoked(self, revoked: Any) -> None:
        self._interrupted.set()
        async with self._lock:  # wait for the batch in hand to stop and commit
            pass
        log.info("consumer %s: partitions revoked: %s", self.group_id, sorted(map(str, revoked)))

    def _on_assigned(self, assigned: Any) -> None:
        if not self._stopping.is_set():
            self._interrupted.clear()
        log.info("consumer %s: partitions assigned: %s", self.group_id, sorted(map(str, assigned)))
        self.ready.set()

    # --- records -------------------------------------------------------------------------------

    async def _process_partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> None:
        """Process records in order; commit the offset after the last one finished."""
        done: int | None = None
        for record in records:
            if self._interrupted.is_set() or not await self._settle(record):
                break
            done = record.offset
        if done is not None:
            await self._commit(consumer, tp, done + 1)

    async def _settle(self, record: ConsumerRecord[Any, Any]) -> bool:
        """Apply the record or dead-letter it; False if interrupted first (it will come again)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._apply(record)
                return True
            except Exception as exc:
                kind = classify_failure(exc)
                where = f"{record.topic}[{record.partition}]@{record.offset}"
                if kind == "poison" or (kind == "unknown" and attempt >= self.settings.consumer_max_attempts):
                    log.warning(
                        "consumer %s: %s failed (%s, %s) after %d attempt(s): dead-lettering",
                        self.group_id,
                        where,
                        kind,
                        type(exc).__name__,
                        attempt,
                    )
                    return await self._dead_letter(record, exc, attempt)
                log.info(
                    "consumer %s: %s failed (%s, %s), attempt %d; retrying",
                    self.group_id,
                    where,
                    kind,
                    type(exc).__name__,
                    attempt,
                )
                log.debug("consumer %s: %s failure detail", self.group_id, where, exc_info=exc)
                if not await self._pause(self._backoff_s(attempt)):
                    return False

    async def _apply(self, record: ConsumerRecord[Any, Any]) -> None:
        """Decode, then claim the event id and run the handler in one transaction."""
        if self.accepts is not None and not self.accepts(record.headers):
            return  # not for this service: nothing to apply, so nothing to remember
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.consumer.group.name": self.group_id,
            SERVICE_ATTRIBUTE: self.settings.service_name,
        }
        with tracer().start_as_current_span(
            f"consume {record.topic}",
            context=context_from_kafka_headers(record.headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            event = CloudEvent.from_json(record.value)
            span.set_attribute("messaging.message.id", event.id)
            async with self.store.transaction() as tx:
                if not await tx.claim_event(self.consumer_name, event.id):
                    span.set_attribute("carebridge.event.duplicate", True)
                    span.add_event("duplicate event skipped")
                    return
                await self.handler(event, tx)
        count_event(EVENTS_CONSUMED, record.topic, self.settings.service_name)

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], exc: BaseException, attempts: int) -> bool:
        """Publish the record to its DLQ (acks=all), retrying until it is acknowledged."""
        assert self._producer is not None
        topic = dlq_of(record.topic)
        headers = dead_letter_headers(record, exc, group_id=self.group_id, attempts=attempts)
        failures = 0
        while True:
            try:
                with tracer().start_as_current_span(
                    f"publish {topic}",
                    context=context_from_kafka_headers(record.headers),
                    kind=SpanKind.PRODUCER,
                    attributes=self._span_attributes(topic),
                ):
                    sent = await self._producer.send(topic, record.value, key=record.key, headers=headers)
                    await sent
            except Exception as send_exc:  # the DLQ must get it: keep trying
                failures += 1
                log.warning(
                    "consumer %s: dead-letter publish to %s failed (%s); retrying",
                    self.group_id,
                    topic,
                    type(send_exc).__name__,
                )
                if not await self._pause(self._backoff_s(failures)):
                    return False
                continue
            count_event(EVENTS_DLQ, record.topic, self.settings.service_name)
            return True

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError) as exc:
            # The partition moved to another member; it resumes from the last commit, and the
            # inbox absorbs what this member already applied.
            log.info(
                "consumer %s: offset %d on %s not committed: %s",
                self.group_id,
                offset,
                tp,
                type(exc).__name__,
            )
        except KafkaError as exc:
            log.warning("consumer %s: commit of %s failed: %s", self.group_id, tp, exc)

    async def _pause(self, seconds: float) -> bool:
        """Back off; False when interrupted (stop or rebalance) before the time is up."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._interrupted.wait(), seconds)
        return not self._interrupted.is_set()

    def _backoff_s(self, attempt: int) -> float:
        s = self.settings
        delay_ms = min(s.consumer_backoff_initial_ms * 2 ** min(attempt - 1, 30), s.consumer_backoff_max_ms)
        return float(delay_ms) / 1000

    def _span_attributes(self, topic: str) -> dict[str, Any]:
        return {
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
            SERVICE_ATTRIBUTE: self.settings.service_name,
        }


def dead_letter_headers(
    record: ConsumerRecord[Any, Any], exc: BaseException, *, group_id: str, attempts: int
) -> list[tuple[str, bytes]]:
    """The record's own headers plus what failed and where (never any of the record's body)."""
    error = f"{type(exc).__name__}: {exc}"[:DLQ_ERROR_MAX_CHARS]
    kept = [(key, value) for key, value in record.headers or () if not key.startswith(DLQ_HEADER_PREFIX)]
    return [
        *kept,
        ("x-dlq-error", error.encode("utf-8", "replace")),
        ("x-dlq-original-topic", record.topic.encode()),
        ("x-dlq-original-partition", str(record.partition).encode()),
        ("x-dlq-original-offset", str(record.offset).encode()),
        ("x-dlq-consumer-group", group_id.encode()),
        ("x-dlq-failed-at", datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
        ("x-dlq-attempts", str(attempts).encode()),
    ]
