"""The Kafka producer every service uses, and topic creation at service start.

Producers wait for every in-sync replica (`acks="all"`). Idempotence is a setting: on for Apache
Kafka in production, off for Tansu, which rejects aiokafka's InitProducerId v0 (DESIGN.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from shared.events.topics import dlq_of
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

#: Wait this long for more records to fill a batch: small, so a lone event is not held back.
LINGER_MS = 2
#: Replicas per topic on a cluster large enough for them (production runs three brokers).
MAX_REPLICATION_FACTOR = 3
_MIB = 1024 * 1024


def max_event_bytes(settings: ServiceSettings) -> int:
    """The largest record producers send and topics accept.

    An event carries a whole resource or Bundle. A request body may be `max_body_bytes`, and a
    Bundle mapped from an HL7 message can be several times the message, so Kafka's 1 MiB default
    would let one large write stop the outbox relay (it never drops a row).
    """
    return max(8 * _MIB, 4 * settings.max_body_bytes)


def producer_for(settings: ServiceSettings, **overrides: object) -> AIOKafkaProducer:
    """A producer configured from settings (not started)."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": f"carebridge-{settings.service_name}",
        "acks": "all",
        "enable_idempotence": settings.kafka_idempotent_producer,
        "linger_ms": LINGER_MS,
        "compression_type": None,
        "max_request_size": max_event_bytes(settings),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def start_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    """A started producer; the caller stops it (the service lifespan does)."""
    producer = producer_for(settings)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()  # release its connections: the caller retries with a new one
        raise
    return producer


async def ensure_topics(settings: ServiceSettings, names: Iterable[str]) -> None:
    """Create the prefixed topics and their dead-letter topics if they do not exist yet.

    Tansu creates a topic with one partition on first produce, but a consumer that subscribes
    before the topic exists sees nothing until its next rebalance: services create their topics
    (with `kafka_topic_partitions` partitions) before starting producers and consumers.
    """
    topics = {settings.topic(logical) for logical in names}
    full = sorted(topics | {dlq_of(topic) for topic in topics})
    if not full:
        return
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"carebridge-{settings.service_name}-admin",
    )
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        replicas = max(1, min(MAX_REPLICATION_FACTOR, len(cluster.get("brokers") or ())))
        configs = {"max.message.bytes": str(max_event_bytes(settings))}
        new = [
            NewTopic(name, settings.kafka_topic_partitions, replicas, topic_configs=configs) for name in full
        ]
        response = await admin.create_topics(new)
    finally:
        await admin.close()
    for topic, code, *rest in response.topic_errors:
        if code == 0:
            log.info("created topic %s (%d partitions)", topic, settings.kafka_topic_partitions)
            continue
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            continue
        message = rest[0] if rest else None
        raise error(f"cannot create topic {topic}: {message or error.description}")
