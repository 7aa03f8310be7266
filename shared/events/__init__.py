"""Events: topic names, the CloudEvents envelope, the outbox relay and the consumer runner.

- `topics`: every topic name and event type (the only place topic strings live).
- `CloudEvent`: the record value envelope.
- `start_producer`, `ensure_topics`: the producer every service uses (acks=all) and topic
  creation at service start (each topic with its `.dlq`).
- `OutboxRelay`: publishes the store's outbox to Kafka, marks rows published; survives restarts.
- `ConsumerRunner`: group consumer with manual commits after the effect commits, inbox
  idempotency, retry with backoff and a dead-letter topic; `replay_dlq` re-publishes a DLQ.

The Kafka parts are imported on first use, so `from shared.events import topics` (the CLI,
domain code) does not load aiokafka and the OpenTelemetry SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from shared.events import topics
from shared.events.envelope import CloudEvent

if TYPE_CHECKING:
    from shared.events.consumer import ConsumerRunner, Handler
    from shared.events.dlq import replay_dlq
    from shared.events.producer import ensure_topics, start_producer
    from shared.events.relay import OutboxRelay

_LAZY = {
    "ConsumerRunner": "shared.events.consumer",
    "Handler": "shared.events.consumer",
    "OutboxRelay": "shared.events.relay",
    "ensure_topics": "shared.events.producer",
    "start_producer": "shared.events.producer",
    "replay_dlq": "shared.events.dlq",
}

__all__ = [
    "CloudEvent",
    "ConsumerRunner",
    "Handler",
    "OutboxRelay",
    "ensure_topics",
    "replay_dlq",
    "start_producer",
    "topics",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
