"""Create every CareBridge topic, and its dead-letter topic, on the broker; then exit.

    python /opt/carebridge/bin/create_topics.py [--wait SECONDS]

`docker-compose.yml` runs this (service `kafka-topics`) once Kafka is healthy and before any
CareBridge service starts, so every consumer group subscribes to topics that already have their
final partition count. (Kubernetes production creates the same topics as Strimzi `KafkaTopic`
resources: `deploy/k8s/overlays/prod/kafka-topics.yaml`.)

What it creates comes from the project, not from a list kept here:

- the topics: `shared.events.topics.ALL_TOPICS`, each with its `<topic>.dlq`, named on the broker
  with `KAFKA_TOPIC_PREFIX` (`settings.topic(name)`);
- partitions: `KAFKA_TOPIC_PARTITIONS`; replication: three, or as many brokers as there are;
- `max.message.bytes`: sized for the largest request any service accepts (`*_MAX_BODY_BYTES`),
  as the services themselves size it (`shared.events.producer.max_event_bytes`).

It is the services' own start-up code (`shared.events.producer.ensure_topics`), so the two can
not disagree. Topics that exist already are left as they are: Kafka can add partitions but that
moves patients' keys to other partitions, so a changed partition count is a deliberate
operation (deploy/README.md, "Scaling").
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence

from aiokafka.errors import KafkaError

from shared.events.producer import ensure_topics
from shared.events.topics import ALL_TOPICS, dlq_of
from shared.settings import SETTINGS_BY_SERVICE, ServiceSettings

log = logging.getLogger("carebridge.create_topics")

_RETRY_S = 2.0


def topic_settings() -> ServiceSettings:
    """The shared settings from the environment, with the largest body any service accepts."""
    largest = max(settings_class().max_body_bytes for settings_class in SETTINGS_BY_SERVICE.values())
    return ServiceSettings(service_name="topic-init", max_body_bytes=largest)


def planned_topics(settings: ServiceSettings) -> list[str]:
    """Every topic name on the broker this creates: each topic and its dead-letter topic."""
    names = [settings.topic(name) for name in ALL_TOPICS]
    return sorted({*names, *(dlq_of(name) for name in names)})


async def create_topics(settings: ServiceSettings, wait_s: float) -> None:
    """Create the topics, trying again while the broker is not reachable, for up to `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            await ensure_topics(settings, ALL_TOPICS)
            return
        except (KafkaError, OSError) as exc:
            if time.monotonic() + _RETRY_S > deadline:
                raise
            log.warning("broker not ready (%s); retrying in %.0fs", type(exc).__name__, _RETRY_S)
            await asyncio.sleep(_RETRY_S)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--wait", type=float, default=60.0, help="seconds to keep trying to reach the broker (default: 60)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = topic_settings()
    try:
        asyncio.run(create_topics(settings, args.wait))
    except (KafkaError, OSError) as exc:
        print(f"cannot create topics on {settings.kafka_bootstrap_servers}: {exc!r}", file=sys.stderr)
        return 1
    topics = planned_topics(settings)
    print(
        f"{len(topics)} topics present on {settings.kafka_bootstrap_servers} "
        f"({settings.kafka_topic_partitions} partitions each when created here): {', '.join(topics)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
