"""Settings of the intake service: `IntakeSettings`, read from `INTAKE_*` environment variables
(`INTAKE_PORT`, `INTAKE_DATABASE_URL`, ...) plus the shared, unprefixed ones (`KAFKA_BOOTSTRAP_SERVERS`,
`REDIS_URL`, ...). All service settings classes live together in `shared.settings`, so the local
stack and the docs see every setting in one place."""

from shared.settings import IntakeSettings as Settings

__all__ = ["Settings"]
