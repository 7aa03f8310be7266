"""Settings of the gateway: `GatewaySettings`, read from `GATEWAY_*` environment variables
(`GATEWAY_PORT`, `GATEWAY_MLLP_PORT`, `GATEWAY_INTAKE_URL`, `GATEWAY_JWT_HS256_SECRET`, ...) plus
the shared, unprefixed ones. All settings classes live together in `shared.settings`."""

from shared.settings import GatewaySettings as Settings

__all__ = ["Settings"]
