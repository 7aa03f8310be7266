"""Settings for every CareBridge service.

Fields every service shares (Kafka, Redis, telemetry) live in `ServiceSettings` and are read from
unprefixed environment variables (`KAFKA_BOOTSTRAP_SERVERS`, `REDIS_URL`, ...), because one
machine runs one broker and one Redis for all services. Fields that belong to one service are
read with that service's prefix (`INTAKE_DATABASE_URL`, `GATEWAY_PORT`, ...).

Nothing here is instantiated at import time: `create_app(settings)` receives a settings object,
and tests build one explicitly.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _shared(default: object, env: str) -> object:
    """A field read from an unprefixed environment variable (or passed by its field name)."""
    return Field(default, validation_alias=AliasChoices(env.lower(), env))


class ServiceSettings(BaseSettings):
    """What every service needs: its store, the bus, Redis and telemetry."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    service_name: str = "carebridge"
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = "sqlite+aiosqlite:///.data/carebridge.db"

    # --- the bus -------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = _shared("127.0.0.1:9092", "KAFKA_BOOTSTRAP_SERVERS")  # type: ignore[assignment]
    #: Prepended to every topic name; tests use a unique prefix per run.
    kafka_topic_prefix: str = _shared("", "KAFKA_TOPIC_PREFIX")  # type: ignore[assignment]
    #: Idempotent producers: on for Apache Kafka in production; Tansu does not support them.
    kafka_idempotent_producer: bool = _shared(False, "KAFKA_IDEMPOTENT_PRODUCER")  # type: ignore[assignment]
    kafka_topic_partitions: int = _shared(3, "KAFKA_TOPIC_PARTITIONS")  # type: ignore[assignment]
    kafka_fetch_max_wait_ms: int = _shared(50, "KAFKA_FETCH_MAX_WAIT_MS")  # type: ignore[assignment]
    kafka_session_timeout_ms: int = _shared(6000, "KAFKA_SESSION_TIMEOUT_MS")  # type: ignore[assignment]
    kafka_heartbeat_interval_ms: int = _shared(500, "KAFKA_HEARTBEAT_INTERVAL_MS")  # type: ignore[assignment]

    # --- consumers -----------------------------------------------------------------------------
    consumer_max_attempts: int = _shared(5, "CONSUMER_MAX_ATTEMPTS")  # type: ignore[assignment]
    consumer_backoff_initial_ms: int = _shared(100, "CONSUMER_BACKOFF_INITIAL_MS")  # type: ignore[assignment]
    consumer_backoff_max_ms: int = _shared(5000, "CONSUMER_BACKOFF_MAX_MS")  # type: ignore[assignment]

    # --- outbox relay --------------------------------------------------------------------------
    outbox_relay_enabled: bool = True
    outbox_poll_interval_ms: int = 200
    outbox_batch_size: int = 200
    #: After a commit wakes the relay, wait this long for more rows so that a burst of writes
    #: is published (and marked) as one batch rather than one cycle per row.
    outbox_linger_ms: int = 5
    #: Test hook, never set in production: "crash_after_publish" makes the relay SIGKILL its own
    #: process after the broker acknowledged a batch and before the outbox rows are marked.
    fault_injection: str | None = None

    # --- Redis ---------------------------------------------------------------------------------
    redis_url: str = _shared("redis://127.0.0.1:6379/0", "REDIS_URL")  # type: ignore[assignment]
    #: Every key this service writes starts with this; tests use a unique prefix per run.
    redis_key_prefix: str = _shared("carebridge:", "REDIS_KEY_PREFIX")  # type: ignore[assignment]

    # --- telemetry -----------------------------------------------------------------------------
    otel_exporter_otlp_endpoint: str | None = _shared(None, "OTEL_EXPORTER_OTLP_ENDPOINT")  # type: ignore[assignment]
    otel_console: bool = _shared(False, "OTEL_CONSOLE")  # type: ignore[assignment]
    log_level: str = _shared("INFO", "LOG_LEVEL")  # type: ignore[assignment]

    # --- HTTP ----------------------------------------------------------------------------------
    #: Largest request body accepted, in bytes (FHIR resources and HL7 messages alike).
    max_body_bytes: int = 1_048_576

    def topic(self, name: str) -> str:
        """The full topic name on the broker for a topic constant from `shared.events.topics`."""
        return f"{self.kafka_topic_prefix}{name}"

    def redis_key(self, *parts: str) -> str:
        return self.redis_key_prefix + ":".join(parts)


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore", populate_by_name=True)
    service_name: str = "intake"
    port: int = 8081
    database_url: str = "sqlite+aiosqlite:///.data/intake.db"
    # Patient matching (services/intake/domain/matching.py has the score and its scale): at or
    # above `patient_match_threshold` a new record is the same person; from
    # `patient_possible_threshold` up it is kept apart and a review item is raised.
    patient_match_threshold: float = 0.9
    patient_possible_threshold: float = 0.6
    # Screening (services/intake/domain/scoring.py): prorate a PHQ-9/GAD-7 total when exactly one
    # scored item is missing (off: no total when any is missing); and what to do when a
    # response carries a total that is not the one computed: "reject" (422) or "flag" (kept,
    # the computed total stored, the mismatch noted on the total Observation).
    screening_prorate_one_missing: bool = False
    screening_client_total: Literal["reject", "flag"] = "reject"


class CareplanSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CAREPLAN_", extra="ignore", populate_by_name=True)
    service_name: str = "careplan"
    port: int = 8082
    database_url: str = "sqlite+aiosqlite:///.data/careplan.db"
    # Caseload limits per case-management model (clients per case manager). ACT 1:10 (DACTS H1,
    # SAMHSA ACT toolkit) and ICM 1:20 (Cochrane CD007906) are sourced; clinical and brokerage
    # are typical figures [K] (DOMAIN.md §4). A program may set its own limit.
    caseload_limit_act: int = Field(default=10, ge=1)
    caseload_limit_icm: int = Field(default=20, ge=1)
    caseload_limit_clinical: int = Field(default=30, ge=1)
    caseload_limit_brokerage: int = Field(default=50, ge=1)
    #: How often the follow-up scheduler looks for overdue plan activities.
    follow_up_scan_seconds: float = Field(default=60.0, gt=0)


class ReferralSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REFERRAL_", extra="ignore", populate_by_name=True)
    service_name: str = "referral"
    port: int = 8083
    database_url: str = "sqlite+aiosqlite:///.data/referral.db"
    #: Hours a sent referral (Task requested or received) may wait for the receiving organization
    #: to accept it before an escalation event is raised.
    acceptance_sla_hours: float = Field(default=72.0, gt=0)
    #: How often the SLA scan looks for referrals not accepted in time.
    sla_scan_seconds: float = Field(default=60.0, gt=0)

    # Topic-based Subscriptions (services/referral/subscriptions.py, subscription_delivery.py).
    #: Where rest-hook notifications may go: comma-separated URL prefixes (`https://host[:port][/path]`)
    #: or hosts (`clinic.example.org`, `*.example.org`), HTTPS only, except `http://` entries, the
    #: explicit plain-HTTP exceptions. The default allows loopback over HTTP for development and
    #: tests; deployments list their clinics' endpoints (empty: no Subscription can be created).
    subscription_endpoint_allowlist: str = "http://127.0.0.1,http://localhost"
    #: The public FHIR base URL (the gateway's) that notifications point at (fullUrl, focus).
    subscription_fhir_base_url: str = "http://127.0.0.1:8080/fhir"
    #: The longest a notification POST may take (a Subscription's backport-timeout may shorten it).
    subscription_delivery_timeout_s: float = Field(default=10.0, gt=0)
    #: Consecutive failed deliveries after which an active subscription's status becomes error.
    subscription_max_failures: int = Field(default=5, ge=1)
    #: Retry backoff: the first wait after a failure, doubling per consecutive failure up to the cap
    #: (the worker keeps retrying at the cap for as long as the subscription is live).
    subscription_retry_initial_s: float = Field(default=1.0, gt=0)
    subscription_max_backoff_s: float = Field(default=300.0, gt=0)
    #: How often the delivery worker looks for notifications, handshakes and heartbeats due.
    subscription_worker_interval_s: float = Field(default=0.25, gt=0)


#: The development HS256 secret. It is public (it is in this file), so the gateway refuses to
#: use it on anything but a loopback address.
DEVELOPMENT_JWT_SECRET = "carebridge-development-secret-change-me"


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)
    service_name: str = "gateway"
    port: int = 8080
    database_url: str = "sqlite+aiosqlite:///.data/gateway.db"

    intake_url: str = "http://127.0.0.1:8081"
    careplan_url: str = "http://127.0.0.1:8082"
    referral_url: str = "http://127.0.0.1:8083"
    #: Public base URL of the FHIR API, used in Location headers and Bundle links.
    public_base_url: str | None = None

    mllp_host: str = "127.0.0.1"
    mllp_port: int = 2575
    #: Largest HL7 v2 message accepted over MLLP or HTTP, in bytes.
    max_hl7_bytes: int = 1_048_576
    #: An MLLP connection that sends nothing for this long is closed (interface engines reconnect).
    mllp_idle_timeout_s: float = 300.0
    #: MLLP over TLS: both set turns TLS on for the listener; with a CA file, clients must
    #: present a certificate it signed (mutual TLS, as HIEs usually require).
    mllp_tls_certfile: str | None = None
    mllp_tls_keyfile: str | None = None
    mllp_tls_cafile: str | None = None
    #: Time zone (IANA name) of HL7 timestamps that carry no offset, by default and per sender
    #: (MSH-4 sending facility, or "APPLICATION^FACILITY"), e.g.
    #: GATEWAY_HL7_SENDER_TIMEZONES='{"NORTH HOSP": "America/Chicago"}'.
    hl7_timezone: str = "UTC"
    hl7_sender_timezones: dict[str, str] = Field(default_factory=dict)

    #: HS256 secret for development tokens (`carebridge token`). Empty disables HS256.
    jwt_hs256_secret: str = Field(
        default=DEVELOPMENT_JWT_SECRET,
        validation_alias=AliasChoices(
            "jwt_hs256_secret", "GATEWAY_JWT_HS256_SECRET", "CAREBRIDGE_DEV_JWT_SECRET"
        ),
    )
    #: JWKS document URL for RS256 tokens in production.
    jwt_jwks_url: str | None = None
    #: Expected `iss` claim; empty accepts any issuer (e.g. several IdPs behind one JWKS).
    jwt_issuer: str = "carebridge-dev"
    jwt_audience: str | None = None

    def timezone_of(self, facility: str, application: str = "") -> str:
        zones = self.hl7_sender_timezones
        if zones:
            return zones.get(f"{application}^{facility}") or zones.get(facility) or self.hl7_timezone
        return self.hl7_timezone

    def check_safe_to_serve(self) -> None:
        """Refuse the public development secret anywhere but on loopback."""
        if self.jwt_hs256_secret == DEVELOPMENT_JWT_SECRET and self.host not in (
            "127.0.0.1",
            "localhost",
            "::1",
        ):
            raise ValueError(
                "GATEWAY_JWT_HS256_SECRET is the public development secret but GATEWAY_HOST is "
                f"{self.host}: set a secret of your own, or leave it empty and use GATEWAY_JWT_JWKS_URL"
            )

    def service_urls(self) -> dict[str, str]:
        return {"intake": self.intake_url, "careplan": self.careplan_url, "referral": self.referral_url}


SETTINGS_BY_SERVICE: dict[str, type[ServiceSettings]] = {
    "intake": IntakeSettings,
    "careplan": CareplanSettings,
    "referral": ReferralSettings,
    "gateway": GatewaySettings,
}
