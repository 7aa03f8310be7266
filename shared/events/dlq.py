"""Replaying a dead-letter topic once the cause of its failures is fixed (`carebridge dlq replay`).

Each dead-lettered record goes back to the topic it came from with its original key, value and
headers (the `x-dlq-*` ones removed, `x-replayed-from-dlq: 1` added). The replay group commits a
DLQ offset only after the broker acknowledged the republished record, so an interrupted replay
loses nothing; it may republish a record twice, which the consumers' inboxes absorb (a record
that was applied before it was dead-lettered, or replayed twice, still has one effect).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.events.consumer import DLQ_HEADER_PREFIX
from shared.events.producer import producer_for
from shared.events.topics import DLQ_SUFFIX, dlq_of
from shared.settings import ServiceSettings

if TYPE_CHECKING:
    from aiokafka.structs import ConsumerRecord

log = logging.getLogger(__name__)

REPLAYED_HEADER = "x-replayed-from-dlq"
ORIGINAL_TOPIC_HEADER = "x-dlq-original-topic"


async def replay_dlq(
    settings: ServiceSettings,
    topic: str,
    *,
    group_id: str = "carebridge-dlq-replay",
    max_records: int | None = None,
    idle_timeout_s: float = 2.0,
) -> int:
    """Republish the dead letters of logical `topic`; returns how many were republished.

    Stops after `max_records`, or when no record arrived for `idle_timeout_s`. The replay group
    (prefixed like every group) remembers its position, so a second run only replays records
    dead-lettered since the first.
    """
    dlq = dlq_of(settings.topic(topic))
    consumer = AIOKafkaConsumer(
        dlq,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"carebridge-{settings.service_name}-dlq-replay",
        group_id=settings.topic(group_id),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    producer = producer_for(settings)
    await producer.start()
    try:
        await consumer.start()  # joins the replay group (Tansu: about half the session timeout)
        try:
            count = await _replay(consumer, producer, max_records, idle_timeout_s)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    log.info("replayed %d record(s) from %s", count, dlq)
    return count


async def _replay(
    consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, max_records: int | None, idle_timeout_s: float
) -> int:
    """Replay what was dead-lettered before the replay began.

    A replayed record that fails again comes straight back to the DLQ; replaying it again in the
    same run would loop for as long as the consumer keeps up. So a partition stops at its first
    record newer than the start (end offsets would say the same, but Tansu miscounts them).
    """
    started_ms = int(time.time() * 1000)
    count = 0
    while max_records is None or count < max_records:
        remaining = None if max_records is None else max_records - count
        batch = await consumer.getmany(timeout_ms=int(idle_timeout_s * 1000), max_records=remaining)
        for tp, records in batch.items():
            due = list(itertools.takewhile(lambda r: r.timestamp < started_ms, records))
            if len(due) < len(records):
                consumer.pause(tp)
            if due:
                await _republish(producer, due)
                await consumer.commit({TopicPartition(tp.topic, tp.partition): due[-1].offset + 1})
                count += len(due)
        if not batch or consumer.assignment() <= consumer.paused():
            break
    return count


async def _republish(producer: AIOKafkaProducer, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
    """Send the records to their original topics and wait until every one is acknowledged."""
    futures = []
    for record in records:
        target = original_topic(record)
        sent = await producer.send(target, record.value, key=record.key, headers=replay_headers(record))
        futures.append(sent)
        log.info("replaying %s[%d]@%d to %s", record.topic, record.partition, record.offset, target)
    await asyncio.gather(*futures)


def original_topic(record: ConsumerRecord[Any, Any]) -> str:
    for key, value in record.headers or ():
        if key == ORIGINAL_TOPIC_HEADER and value:
            return bytes(value).decode()
    return record.topic.removesuffix(DLQ_SUFFIX)


def replay_headers(record: ConsumerRecord[Any, Any]) -> list[tuple[str, bytes]]:
    kept = [(key, value) for key, value in record.headers or () if not key.startswith(DLQ_HEADER_PREFIX)]
    return [*kept, (REPLAYED_HEADER, b"1")]
