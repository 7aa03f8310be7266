"""The consumer runner and DLQ replay against a real broker (Tansu) and a real SQLite store.

A group join costs about half the session timeout on Tansu (1.5 s here), so most tests share one
running consumer (`pipeline`): each test uses its own events and tells the handler, per event
id, which failures to raise before it succeeds.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord, RecordMetadata
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared import devstack
from shared.errors import BusinessRuleViolation, DependencyUnavailable
from shared.events import CloudEvent, topics
from shared.events.consumer import ConsumerRunner
from shared.events.dlq import replay_dlq
from shared.events.producer import ensure_topics, start_producer
from shared.events.relay import OutboxRelay
from shared.events.topics import dlq_of
from shared.settings import ServiceSettings
from shared.store import Store, Transaction
from shared.telemetry import kafka_headers_from_context, tracer
from tests.conftest import unique
from tests.integration.shared.test_events_relay import read_topic

EFFECTS = "applied"
MAX_ATTEMPTS = 3
_versions = itertools.count(1)


@dataclass
class Pipeline:
    """A store, a relay and one running consumer of PATIENT and ENCOUNTER with a scripted handler."""

    settings: ServiceSettings
    store: Store
    producer: AIOKafkaProducer
    relay: OutboxRelay
    runner: ConsumerRunner
    #: Per event id, the exceptions the handler raises (one per call) before it succeeds.
    failures: dict[str, list[BaseException]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    async def handle(self, event: CloudEvent, tx: Transaction) -> None:
        self.calls[event.id] = self.calls.get(event.id, 0) + 1
        pending = self.failures.get(event.id)
        if pending:
            raise pending.pop(0)
        # Not idempotent on purpose: every committed call bumps change_count.
        await tx.put_projection(EFFECTS, event.id, next(_versions), event.to_json())

    async def effects(self, event_id: str) -> int:
        projection = await self.store.get_projection(EFFECTS, event_id)
        return 0 if projection is None else projection.change_count

    async def publish(self, topic: str, value: bytes, key: bytes = b"patient-1") -> RecordMetadata:
        sent = await self.producer.send(self.settings.topic(topic), value, key=key)
        return await sent


def an_event() -> CloudEvent:
    return CloudEvent(type=topics.resource_event_type("Encounter", "updated"), source="test", data={"x": 1})


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {within_s}s: {check}")
        await asyncio.sleep(0.02)


async def applied(pipeline: Pipeline, event_id: str, within_s: float = 10.0) -> None:
    async def done() -> bool:
        return await pipeline.effects(event_id) > 0

    await eventually(done, within_s)


async def dead_letter_of(
    settings: ServiceSettings, topic: str, offset: int, partition: int, within_s: float = 10.0
) -> ConsumerRecord[Any, Any]:
    """The DLQ record of the record at (partition, offset) of `topic`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for record in await read_topic(settings, dlq_of(settings.topic(topic)), 10_000, within_s=0.3):
            headers = dict(record.headers)
            if (
                headers["x-dlq-original-offset"] == str(offset).encode()
                and headers["x-dlq-original-partition"] == str(partition).encode()
            ):
                return record
    raise AssertionError(f"no dead letter for {topic}[{partition}]@{offset}")


def settings_for_module(broker: devstack.Broker, database: Path, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "service_name": "careplan",
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "kafka_topic_prefix": unique("t") + ".",
        "database_url": f"sqlite+aiosqlite:///{database}",
        # Tansu makes a joining member wait half the session timeout: 3 s keeps joins at 1.5 s
        # and is still six heartbeats long.
        "kafka_session_timeout_ms": 3000,
        "kafka_heartbeat_interval_ms": 500,
        "kafka_fetch_max_wait_ms": 20,
        "outbox_poll_interval_ms": 50,
        "consumer_backoff_initial_ms": 20,
        "consumer_backoff_max_ms": 200,
        "consumer_max_attempts": MAX_ATTEMPTS,
    }
    values.update(overrides)
    return ServiceSettings(**values)


@pytest.fixture(scope="module")
async def pipeline(
    broker: devstack.Broker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    settings = settings_for_module(broker, tmp_path_factory.mktemp("consumer") / "careplan.db")
    await ensure_topics(settings, [topics.PATIENT, topics.ENCOUNTER])
    store = await Store.open(settings.database_url)
    producer = await start_producer(settings)
    relay = OutboxRelay(store, producer, settings)
    store.outbox_listener = relay.notify
    await relay.start()
    holder: dict[str, Pipeline] = {}

    async def handler(event: CloudEvent, tx: Transaction) -> None:
        await holder["pipeline"].handle(event, tx)

    runner = ConsumerRunner(
        settings,
        store,
        group_id="careplan.events",
        topics=[topics.PATIENT, topics.ENCOUNTER],
        handler=handler,
    )
    holder["pipeline"] = Pipeline(settings, store, producer, relay, runner)
    await runner.start()
    await asyncio.wait_for(runner.ready.wait(), 20)
    yield holder["pipeline"]
    await runner.stop()
    await relay.stop()
    await producer.stop()
    await store.close()


async def test_the_same_event_published_twice_has_one_effect(pipeline: Pipeline) -> None:
    event, marker = an_event(), an_event()
    await pipeline.publish(topics.PATIENT, event.to_json())
    await pipeline.publish(topics.PATIENT, event.to_json())
    await pipeline.publish(topics.PATIENT, marker.to_json())  # same key: consumed after both copies
    await applied(pipeline, marker.id)
    assert await pipeline.effects(event.id) == 1
    assert pipeline.calls[event.id] == 1
    assert await pipeline.store.inbox_contains("careplan.events", event.id)


async def test_a_record_that_is_not_json_goes_to_the_dead_letter_topic_with_the_error(
    pipeline: Pipeline,
) -> None:
    sent = await pipeline.publish(topics.PATIENT, b"MSH|^~\\&|not a cloud event", key=b"patient-2")
    dead = await dead_letter_of(pipeline.settings, topics.PATIENT, sent.offset, sent.partition)
    headers = dict(dead.headers)
    assert headers["x-dlq-error"].startswith(b"PoisonMessage: Record value is not JSON")
    assert headers["x-dlq-original-topic"] == pipeline.settings.topic(topics.PATIENT).encode()
    assert headers["x-dlq-consumer-group"] == pipeline.settings.topic("careplan.events").encode()
    assert headers["x-dlq-attempts"] == b"1"
    assert (dead.key, dead.value) == (b"patient-2", b"MSH|^~\\&|not a cloud event")


async def test_a_handler_raising_a_non_retriable_carebridge_error_dead_letters_at_once(
    pipeline: Pipeline,
) -> None:
    event = an_event()
    pipeline.failures[event.id] = [BusinessRuleViolation("Encounter has no patient")]
    sent = await pipeline.publish(topics.PATIENT, event.to_json())
    dead = await dead_letter_of(pipeline.settings, topics.PATIENT, sent.offset, sent.partition)
    assert dict(dead.headers)["x-dlq-error"] == b"BusinessRuleViolation: Encounter has no patient"
    assert pipeline.calls[event.id] == 1
    assert await pipeline.effects(event.id) == 0


async def test_an_unexpected_error_is_retried_max_attempts_times_then_dead_lettered(
    pipeline: Pipeline,
) -> None:
    event = an_event()
    pipeline.failures[event.id] = [ValueError("bug")] * 10
    sent = await pipeline.publish(topics.PATIENT, event.to_json())
    dead = await dead_letter_of(pipeline.settings, topics.PATIENT, sent.offset, sent.partition)
    assert dict(dead.headers)["x-dlq-attempts"] == str(MAX_ATTEMPTS).encode()
    assert pipeline.calls[event.id] == MAX_ATTEMPTS
    assert await pipeline.effects(event.id) == 0


async def test_a_transient_failure_is_retried_until_it_succeeds_and_nothing_is_dead_lettered(
    pipeline: Pipeline,
) -> None:
    event = an_event()
    # More failures than max attempts: transient errors are retried without limit.
    pipeline.failures[event.id] = [DependencyUnavailable("database busy")] * (MAX_ATTEMPTS + 3)
    sent = await pipeline.publish(topics.PATIENT, event.to_json(), key=b"patient-3")
    await applied(pipeline, event.id)
    assert pipeline.calls[event.id] == MAX_ATTEMPTS + 4
    dlq = await read_topic(
        pipeline.settings, dlq_of(pipeline.settings.topic(topics.PATIENT)), 10_000, within_s=0.5
    )
    assert not [
        r
        for r in dlq
        if dict(r.headers)["x-dlq-original-offset"] == str(sent.offset).encode()
        and r.partition == sent.partition
    ]


async def test_replaying_the_dlq_after_a_fix_applies_the_record_once_even_when_replayed_twice(
    pipeline: Pipeline,
) -> None:
    event = an_event()
    pipeline.failures[event.id] = [BusinessRuleViolation("CarePlan template missing")]
    sent = await pipeline.publish(topics.ENCOUNTER, event.to_json(), key=b"patient-4")
    await dead_letter_of(pipeline.settings, topics.ENCOUNTER, sent.offset, sent.partition)
    assert pipeline.failures[event.id] == []  # the fix: the handler now succeeds

    replayed = await replay_dlq(
        pipeline.settings, topics.ENCOUNTER, group_id=unique("replay"), idle_timeout_s=0.5
    )
    assert replayed == 1
    await applied(pipeline, event.id)

    again = await replay_dlq(
        pipeline.settings, topics.ENCOUNTER, group_id=unique("replay"), idle_timeout_s=0.5
    )
    assert again == 1  # a fresh replay group reads the dead letter again
    marker = an_event()
    await pipeline.publish(topics.ENCOUNTER, marker.to_json(), key=b"patient-4")
    await applied(pipeline, marker.id)
    assert await pipeline.effects(event.id) == 1
    assert pipeline.calls[event.id] == 2  # the failed call and the first replay; the second was a duplicate


async def test_replaying_a_record_that_fails_again_puts_it_back_on_the_dlq_once_and_ends(
    pipeline: Pipeline,
) -> None:
    dlq = dlq_of(pipeline.settings.topic(topics.ENCOUNTER))
    sent = await pipeline.publish(topics.ENCOUNTER, b"{not json", key=b"patient-6")
    await dead_letter_of(pipeline.settings, topics.ENCOUNTER, sent.offset, sent.partition)
    before = len(await read_topic(pipeline.settings, dlq, 10_000, within_s=0.3))

    replayed = await replay_dlq(
        pipeline.settings, topics.ENCOUNTER, group_id=unique("replay"), idle_timeout_s=0.5
    )

    assert replayed == before  # not the copies that came back while it ran
    copies = await read_topic(pipeline.settings, dlq, 10_000, within_s=0.5)
    assert [r.value for r in copies].count(b"{not json") == 2


async def test_one_trace_runs_from_the_writing_request_through_the_relay_to_the_consumer(
    pipeline: Pipeline, span_exporter: InMemorySpanExporter
) -> None:
    event = an_event()
    with tracer().start_as_current_span("POST /fhir/Encounter") as request_span:
        async with pipeline.store.transaction() as tx:
            await tx.add_outbox(
                event_id=event.id,
                topic=pipeline.settings.topic(topics.ENCOUNTER),
                key=b"patient-5",
                value=event.to_json(),
                headers=kafka_headers_from_context(),
            )
    await applied(pipeline, event.id)
    trace_id = request_span.get_span_context().trace_id
    spans = [s for s in span_exporter.get_finished_spans() if s.context and s.context.trace_id == trace_id]
    [publish] = [s for s in spans if s.kind == SpanKind.PRODUCER]
    [consume] = [s for s in spans if s.kind == SpanKind.CONSUMER]
    assert publish.parent is not None and publish.parent.span_id == request_span.get_span_context().span_id
    assert consume.parent is not None and publish.context is not None
    assert consume.parent.span_id == publish.context.span_id
    assert consume.name == f"consume {pipeline.settings.topic(topics.ENCOUNTER)}"
    attributes = dict(consume.attributes or {})
    assert attributes["carebridge.service"] == "careplan"
    assert attributes["messaging.message.id"] == event.id


async def test_committed_offsets_keep_a_new_consumer_in_the_same_group_from_reprocessing(
    broker: devstack.Broker, tmp_path: Path
) -> None:
    settings = settings_for_module(broker, tmp_path / "first.db")
    await ensure_topics(settings, [topics.PATIENT])
    seen: list[str] = []

    async def record(event: CloudEvent, tx: Transaction) -> None:
        seen.append(event.id)

    async def consume_with(database: Path, events: Sequence[CloudEvent]) -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{database}")
        runner = ConsumerRunner(
            settings, store, group_id="careplan.offsets", topics=[topics.PATIENT], handler=record
        )
        await runner.start()
        try:
            producer = await start_producer(settings)
            for event in events:
                await (await producer.send(settings.topic(topics.PATIENT), event.to_json(), key=b"k"))
            await producer.stop()
            await eventually(lambda: _contains(seen, events[-1].id), 15)
        finally:
            await runner.stop()
            await store.close()

    first = [an_event() for _ in range(3)]
    await consume_with(tmp_path / "first.db", first)
    later = an_event()
    # A fresh database has an empty inbox: only the committed offsets stop a second application.
    await consume_with(tmp_path / "second.db", [later])
    assert seen == [e.id for e in first] + [later.id]


async def _contains(items: Sequence[str], item: str) -> bool:
    return item in items


@pytest.mark.postgres
async def test_when_a_group_member_leaves_mid_stream_the_other_applies_every_event_once_in_key_order(
    broker: devstack.Broker, tmp_path: Path, postgres_url: str
) -> None:
    settings = settings_for_module(broker, tmp_path / "unused.db", database_url=postgres_url)
    await ensure_topics(settings, [topics.PATIENT])
    # Two replicas of one service share its PostgreSQL database, as in production.
    store = await Store.open(settings.database_url)
    applied_order: list[tuple[bytes, int]] = []

    async def record(event: CloudEvent, tx: Transaction) -> None:
        applied_order.append((str(event.subject).encode(), int(event.data["n"])))

    first, second = (
        ConsumerRunner(settings, store, group_id="careplan.replicas", topics=[topics.PATIENT], handler=record)
        for _ in range(2)
    )
    producer = await start_producer(settings)
    sent: list[tuple[bytes, int]] = []
    producing = asyncio.Event()

    async def produce() -> None:
        n = 0
        while not producing.is_set():
            key = f"patient-{n % 5}".encode()
            event = CloudEvent(type="t", source="test", subject=key.decode(), data={"n": n})
            await producer.send(settings.topic(topics.PATIENT), event.to_json(), key=key)
            sent.append((key, n))
            n += 1
            await asyncio.sleep(0.01)

    try:
        await first.start()
        stream = asyncio.create_task(produce())
        await asyncio.wait_for(first.ready.wait(), 20)
        await second.start()
        await asyncio.wait_for(second.ready.wait(), 20)
        await asyncio.sleep(0.3)
        await first.stop()  # leaves mid-stream: its partitions move to `second`
        await asyncio.sleep(0.3)
        producing.set()
        await stream
        await producer.flush()
        await eventually(lambda: _all_applied(sent, applied_order), 20)
    finally:
        await first.stop()
        await second.stop()
        await producer.stop()
        await store.close()
    assert sorted(applied_order) == sorted(sent)  # each exactly once
    for key in {k for k, _ in sent}:
        numbers = [n for k, n in applied_order if k == key]
        assert numbers == sorted(numbers)


async def _all_applied(sent: Sequence[tuple[bytes, int]], applied_order: Sequence[tuple[bytes, int]]) -> bool:
    return len(applied_order) >= len(sent)


async def test_stopping_a_consumer_that_is_still_joining_its_group_returns_at_once(
    broker: devstack.Broker, tmp_path: Path
) -> None:
    settings = settings_for_module(broker, tmp_path / "joining.db")
    store = await Store.open(settings.database_url)
    runner = ConsumerRunner(
        settings, store, group_id="careplan.joining", topics=[topics.PATIENT], handler=_never
    )
    await runner.start()
    started = time.monotonic()
    await runner.stop()
    await store.close()
    assert time.monotonic() - started < 1.0


async def test_stopping_a_consumer_in_the_middle_of_transient_retries_is_prompt_and_commits_nothing(
    broker: devstack.Broker, tmp_path: Path
) -> None:
    settings = settings_for_module(broker, tmp_path / "outage.db", consumer_backoff_max_ms=5000)
    await ensure_topics(settings, [topics.PATIENT])
    store = await Store.open(settings.database_url)
    attempts: list[str] = []

    async def database_down(event: CloudEvent, tx: Transaction) -> None:
        attempts.append(event.id)
        raise DependencyUnavailable("database unreachable")

    group = "careplan.outage"
    runner = ConsumerRunner(settings, store, group_id=group, topics=[topics.PATIENT], handler=database_down)
    await runner.start()
    producer = await start_producer(settings)
    try:
        sent = await (await producer.send(settings.topic(topics.PATIENT), an_event().to_json(), key=b"k"))
        await eventually(lambda: _at_least(attempts, 5), 20)
        started = time.monotonic()
        await runner.stop()
        assert time.monotonic() - started < 1.0
    finally:
        await runner.stop()
        await producer.stop()
        await store.close()
    tp = TopicPartition(settings.topic(topics.PATIENT), sent.partition)
    assert await committed_offset(settings, settings.topic(group), tp) is None  # it will come again


async def committed_offset(settings: ServiceSettings, group_id: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


async def _never(event: CloudEvent, tx: Transaction) -> None:
    raise AssertionError("no event expected")


async def _at_least(items: Sequence[str], count: int) -> bool:
    return len(items) >= count
