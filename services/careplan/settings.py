"""Settings of the careplan service: `CareplanSettings`, read from `CAREPLAN_*` environment variables
(`CAREPLAN_PORT`, `CAREPLAN_DATABASE_URL`, ...) plus the shared, unprefixed ones (`KAFKA_BOOTSTRAP_SERVERS`,
`REDIS_URL`, ...). All service settings classes live together in `shared.settings`, so the local
stack and the docs see every setting in one place."""

from shared.settings import CareplanSettings as Settings

__all__ = ["Settings"]
