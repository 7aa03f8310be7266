"""Settings of the referral service: `ReferralSettings`, read from `REFERRAL_*` environment variables
(`REFERRAL_PORT`, `REFERRAL_DATABASE_URL`, ...) plus the shared, unprefixed ones (`KAFKA_BOOTSTRAP_SERVERS`,
`REDIS_URL`, ...). All service settings classes live together in `shared.settings`, so the local
stack and the docs see every setting in one place."""

from shared.settings import ReferralSettings as Settings

__all__ = ["Settings"]
