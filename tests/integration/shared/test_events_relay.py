"""The outbox relay against a real broker (Tansu) and a real SQLite store."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared.events import CloudEvent, topics
from shared.events.producer import ensure_topics, start_producer
from shared.events.relay import OutboxRelay
from shared.settings import ServiceSettings
from shared.store import Store
from shared.telemetry import kafka_headers_from_context, tracer


async def read_topic(
    settings: ServiceSettings, topic: str, count: int, within_s: float = 10.0
) -> list[ConsumerRecord[Any, Any]]:
    """The first `count` records of a topic, read without a consumer group (no join to wait for)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, fetch_max_wait_ms=20, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        records: list[ConsumerRecord[Any, Any]] = []
        deadline = time.monotonic() + within_s
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def enqueue(store: Store, settings: ServiceSettings, events: Sequence[tuple[str, CloudEvent]]) -> None:
    """Write events to the outbox in one transaction, as a service's write would."""
    async with store.transaction() as tx:
        for key, event in events:
            await tx.add_outbox(
                event_id=event.id,
                topic=settings.topic(topics.PATIENT),
                key=key.encode(),
                value=event.to_json(),
                headers=kafka_headers_from_context(),
            )


def patient_event(n: int) -> CloudEvent:
    return CloudEvent(type=topics.resource_event_type("Patient", "updated"), source="test", data={"n": n})


@pytest.fixture
def settings(make_settings: Callable[..., ServiceSettings]) -> ServiceSettings:
    return make_settings(ServiceSettings, service_name="intake")


@pytest.fixture
async def producer(settings: ServiceSettings) -> AsyncIterator[AIOKafkaProducer]:
    await ensure_topics(settings, [topics.PATIENT])
    producer = await start_producer(settings)
    yield producer
    await producer.stop()


async def test_relay_publishes_outbox_rows_in_order_with_trace_headers_and_marks_them(
    settings: ServiceSettings,
    producer: AIOKafkaProducer,
    database_url: str,
    span_exporter: InMemorySpanExporter,
) -> None:
    store = await Store.open(database_url)
    relay = OutboxRelay(store, producer, settings)
    store.outbox_listener = relay.notify
    await relay.start()
    try:
        with tracer().start_as_current_span("admit") as request_span:
            events = [(f"patient-{n % 2}", patient_event(n)) for n in range(10)]
            await enqueue(store, settings, events[:5])
            await enqueue(store, settings, events[5:])
        await relay.drain(timeout=10)
        records = await read_topic(settings, settings.topic(topics.PATIENT), 10)
    finally:
        await relay.stop()
        await store.close()

    assert len(records) == 10
    for key in ("patient-0", "patient-1"):
        got = [CloudEvent.from_json(r.value).id for r in records if r.key == key.encode()]
        assert got == [e.id for k, e in events if k == key]
    request = request_span.get_span_context()
    publish_spans = {
        format(span.context.span_id, "016x")
        for span in span_exporter.get_finished_spans()
        if span.kind == SpanKind.PRODUCER and span.context and span.context.trace_id == request.trace_id
    }
    for record in records:
        _version, trace_id, parent_id, _flags = dict(record.headers)["traceparent"].decode().split("-")
        assert trace_id == format(request.trace_id, "032x")
        assert parent_id in publish_spans  # the relay's "publish" span, child of the request's
    assert len(publish_spans) == 10


async def test_rows_written_before_the_relay_started_are_published_by_a_relay_on_a_reopened_store(
    settings: ServiceSettings, producer: AIOKafkaProducer, sqlite_url: str
) -> None:
    writer = await Store.open(sqlite_url)
    events = [("patient-9", patient_event(n)) for n in range(3)]
    await enqueue(writer, settings, events)
    await writer.close()  # the process that wrote them is gone

    store = await Store.open(sqlite_url)
    relay = OutboxRelay(store, producer, settings)
    await relay.start()
    try:
        await relay.drain(timeout=10)
        assert await store.outbox_pending_count() == 0
    finally:
        await relay.stop()
        await store.close()
    records = await read_topic(settings, settings.topic(topics.PATIENT), 3)
    assert [CloudEvent.from_json(r.value).id for r in records] == [e.id for _, e in events]


async def test_stopping_an_idle_relay_is_quick(
    settings: ServiceSettings, producer: AIOKafkaProducer, sqlite_url: str
) -> None:
    store = await Store.open(sqlite_url)
    relay = OutboxRelay(store, producer, settings)
    await relay.start()
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await relay.stop()
    await store.close()
    assert time.monotonic() - started < 1.0


async def test_ensure_topics_creates_each_topic_and_its_dead_letter_topic_and_tolerates_existing_ones(
    settings: ServiceSettings,
) -> None:
    await ensure_topics(settings, [topics.ENCOUNTER])
    await ensure_topics(settings, [topics.ENCOUNTER])  # already there: no error
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        names = set(await admin.list_topics())
        described = await admin.describe_topics([settings.topic(topics.ENCOUNTER)])
    finally:
        await admin.close()
    assert {settings.topic(topics.ENCOUNTER), settings.topic(topics.ENCOUNTER) + ".dlq"} <= names
    assert len(described[0]["partitions"]) == settings.kafka_topic_partitions


_CRASHING_RELAY = """
import asyncio, json, sys
from shared.events.producer import start_producer
from shared.events.relay import OutboxRelay
from shared.settings import ServiceSettings
from shared.store import Store

async def main():
    settings = ServiceSettings(**json.loads(sys.argv[1]))
    store = await Store.open(settings.database_url)
    relay = OutboxRelay(store, await start_producer(settings), settings)
    await relay.start()
    await asyncio.sleep(30)  # the relay kills this process long before

asyncio.run(main())
"""


async def test_a_crash_between_publishing_and_marking_republishes_the_rows_on_restart(
    settings: ServiceSettings, producer: AIOKafkaProducer, sqlite_url: str
) -> None:
    store = await Store.open(sqlite_url)
    events = [("patient-7", patient_event(n)) for n in range(2)]
    await enqueue(store, settings, events)
    crashing = settings.model_copy(
        update={"fault_injection": "crash_after_publish", "database_url": sqlite_url}
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CRASHING_RELAY, crashing.model_dump_json(), cwd=Path(__file__).parents[3]
    )
    assert await asyncio.wait_for(child.wait(), 30) == -signal.SIGKILL
    assert await store.outbox_pending_count() == 2  # published, never marked

    relay = OutboxRelay(store, producer, settings)
    await relay.start()
    try:
        await relay.drain(timeout=10)
    finally:
        await relay.stop()
        await store.close()
    records = await read_topic(settings, settings.topic(topics.PATIENT), 4)
    ids = [e.id for _, e in events]
    assert [CloudEvent.from_json(r.value).id for r in records] == ids + ids  # at least once


async def test_an_event_larger_than_kafkas_default_one_mib_limit_is_published(
    settings: ServiceSettings, producer: AIOKafkaProducer, sqlite_url: str
) -> None:
    store = await Store.open(sqlite_url)
    big = CloudEvent(type="t", source="test", data={"text": "x" * 3_000_000})
    await enqueue(store, settings, [("patient-8", big)])
    relay = OutboxRelay(store, producer, settings)
    await relay.start()
    try:
        await relay.drain(timeout=10)
    finally:
        await relay.stop()
        await store.close()
    [record] = await read_topic(settings, settings.topic(topics.PATIENT), 1)
    assert CloudEvent.from_json(record.value).id == big.id


async def test_only_one_relay_per_postgresql_database_publishes_and_a_standby_takes_over(
    settings: ServiceSettings, producer: AIOKafkaProducer, postgres_url: str
) -> None:
    # Two replicas of a service, each with its own store and relay, on one database.
    first, second = await Store.open(postgres_url), await Store.open(postgres_url)
    relays = [OutboxRelay(first, producer, settings), OutboxRelay(second, producer, settings)]
    topic = settings.topic(topics.PATIENT)
    await ensure_topics(settings, [topics.PATIENT])
    try:
        for relay in relays:
            await relay.start()
        await enqueue(first, settings, [("patient-1", patient_event(n)) for n in range(5)])
        await relays[0].drain()
        records = await read_topic(settings, topic, 5)
        assert len(records) == 5
        assert [r.leading for r in relays].count(True) == 1
        leader = relays[0] if relays[0].leading else relays[1]
        standby = relays[1] if leader is relays[0] else relays[0]
        await leader.stop()  # the leader goes; the standby must publish what comes next
        await enqueue(second, settings, [("patient-1", patient_event(n)) for n in range(5, 8)])
        await standby.drain(timeout=15)
        assert standby.leading
        await asyncio.sleep(0.5)  # anything published twice would show up now
        records = await read_topic(settings, topic, 9, within_s=2)
        assert len(records) == 8, "each outbox row published exactly once"
    finally:
        for relay in relays:
            await relay.stop()
        await first.close()
        await second.close()


async def test_published_rows_are_pruned_after_the_retention_and_pending_rows_never(
    settings: ServiceSettings, database_url: str
) -> None:
    from datetime import UTC, datetime, timedelta

    store = await Store.open(database_url)
    try:
        await enqueue(store, settings, [("patient-1", patient_event(n)) for n in range(3)])
        pending = await store.outbox_pending(10)
        await store.outbox_mark_published([pending[0].seq])
        assert await store.outbox_prune(datetime.now(UTC) - timedelta(days=1)) == 0  # too recent
        assert await store.outbox_prune(datetime.now(UTC) + timedelta(seconds=1)) == 1
        assert [r.seq for r in await store.outbox_pending(10)] == [r.seq for r in pending[1:]]
    finally:
        await store.close()
