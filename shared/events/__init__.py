"""Events: topic names, the CloudEvents envelope, the outbox relay and the consumer runner.

- `topics`: every topic name and event type (the only place topic strings live).
- `CloudEvent`: the record value envelope.
- `OutboxRelay`: publishes the store's outbox to Kafka, marks rows published; survives restarts.
- `ConsumerRunner`: group consumer with manual commits after the effect commits, inbox
  idempotency, retry with backoff and a dead-letter topic; `replay_dlq` re-publishes a DLQ.
"""

from shared.events import topics
from shared.events.envelope import CloudEvent

__all__ = ["CloudEvent", "topics"]
