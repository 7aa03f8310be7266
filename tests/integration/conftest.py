"""One in-process stack (four services on real HTTP, broker, Redis, SQLite) shared by the
integration tests that drive the system through the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import settings_factory
from tests.integration.stack import Stack, running_stack


@pytest.fixture(scope="session")
async def stack(
    broker: Any, redis_url: str, span_exporter: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    make = settings_factory(broker, redis_url, tmp_path_factory.mktemp("stack"))
    async with running_stack(make) as running:
        yield running
