"""docker-compose.yml: valid Compose, every setting set and valid, every topic created, every
service waiting for what it needs, nobody root, and time enough to stop cleanly."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared.events.producer import max_event_bytes
from shared.events.topics import ALL_TOPICS, dlq_of
from shared.settings import SETTINGS_BY_SERVICE
from tests.deploy.support import (
    COMPOSE_TEST_ENV,
    ROOT,
    SERVICES,
    MissingVariable,
    compose_environment,
    created_topics,
    deployed_env_names,
    env_names,
    interpolate,
    load_compose,
    seconds,
    settings_from_env,
    shutdown_budget_s,
)

COMPOSE_SCHEMA = Path(__file__).parent / "compose-spec.json"
TOPIC_INIT = "kafka-topics"
#: Containers others may wait for only until they start, and why.
NO_HEALTHCHECK = {
    "otel-collector": "its image is a single static binary: no shell or client to run a check with",
    "jaeger": "its image has no HTTP client to run a check with",
}
ROOT_USERS = {"", "0", "root"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def test_the_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert errors == [], "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_database_password_must_be_given() -> None:
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        load_compose(env={})


def test_interpolation_follows_compose() -> None:
    env = {"SET": "value", "EMPTY": ""}
    assert (
        interpolate("${SET:-x} ${EMPTY:-x} ${EMPTY-x} ${UNSET-x} $SET $$SET", env) == "value x  x value $SET"
    )
    assert interpolate("${SET:+alt}${UNSET:+alt}", env) == "alt"
    with pytest.raises(MissingVariable):
        interpolate("${EMPTY:?required}", env)


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_the_service_reads_is_set(service: str, services: dict[str, Any]) -> None:
    environment = compose_environment(services[service])
    missing = deployed_env_names(service) - set(environment)
    assert not missing, f"{service} reads these but docker-compose.yml does not set them: {sorted(missing)}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_settings_are_valid_and_production_shaped(
    service: str, services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from_env(service, compose_environment(services[service]), monkeypatch)
    assert settings.kafka_idempotent_producer is True
    assert settings.host == "0.0.0.0"
    assert settings.database_url == (
        f"postgresql+asyncpg://carebridge:{COMPOSE_TEST_ENV['POSTGRES_PASSWORD']}@postgres:5432/{service}"
    )
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.otel_exporter_otlp_endpoint == "http://otel-collector:4318"
    assert settings.redis_url.startswith("redis://redis:6379/")
    assert settings.outbox_relay_enabled


def test_variables_in_the_environment_are_settings_of_that_service(services: dict[str, Any]) -> None:
    """A misspelt or misplaced variable is set but never read: every CareBridge variable in a
    service's environment is one its settings read (or another service's body limit)."""
    body_limits = {f"{s.upper()}_MAX_BODY_BYTES" for s in SERVICES}
    for service in SERVICES:
        known = set(env_names(SETTINGS_BY_SERVICE[service])) | body_limits
        unknown = set(compose_environment(services[service])) - known - deployed_env_names(service)
        assert not unknown, f"{service}: {sorted(unknown)}"


def test_the_gateway_reaches_each_service_at_its_compose_name_and_port(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = settings_from_env("gateway", compose_environment(services["gateway"]), monkeypatch)
    for service, url in gateway.service_urls().items():
        port = settings_from_env(service, compose_environment(services[service]), monkeypatch).port
        assert url == f"http://{service}:{port}", (service, url)


def test_the_gateway_does_not_use_the_development_token_secret(services: dict[str, Any]) -> None:
    environment = compose_environment(services["gateway"])
    assert environment["GATEWAY_JWT_HS256_SECRET"] == ""
    # Unset unless exported: an empty audience would refuse every token.
    assert environment["GATEWAY_JWT_AUDIENCE"] is None


# --- topics ----------------------------------------------------------------------------------


def test_topic_creation_runs_the_shipped_script_before_every_service(services: dict[str, Any]) -> None:
    init = services[TOPIC_INIT]
    assert init["entrypoint"] == ["python", "/opt/carebridge/bin/create_topics.py"]
    assert init["restart"] == "no"
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    for service in SERVICES:
        assert services[service]["depends_on"][TOPIC_INIT]["condition"] == "service_completed_successfully"


def test_topic_creation_sees_the_kafka_settings_and_body_limits_the_services_see(
    services: dict[str, Any],
) -> None:
    init_env = compose_environment(services[TOPIC_INIT])
    for service in SERVICES:
        service_env = compose_environment(services[service])
        for name, value in service_env.items():
            if name.startswith("KAFKA_") or name.endswith("_MAX_BODY_BYTES"):
                assert init_env.get(name) == value, (service, name)


def test_topic_creation_creates_every_topic_with_the_configured_partitions(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    init_env = compose_environment(services[TOPIC_INIT])
    service_settings = [settings_from_env(s, compose_environment(services[s]), monkeypatch) for s in SERVICES]
    created = created_topics(init_env, monkeypatch)
    prefix = init_env["KAFKA_TOPIC_PREFIX"] or ""
    expected = {prefix + topic for topic in ALL_TOPICS} | {dlq_of(prefix + topic) for topic in ALL_TOPICS}
    assert sorted(topic.name for topic in created) == sorted(expected)
    assert {topic.partitions for topic in created} == {int(init_env["KAFKA_TOPIC_PARTITIONS"] or 0)}
    # Sized for the largest event any service may publish (each sizes its own topics the same way).
    assert {topic.max_message_bytes for topic in created} == {max(map(max_event_bytes, service_settings))}


# --- the service graph -----------------------------------------------------------------------


def hosts_in(text: str, names: set[str]) -> set[str]:
    """Compose service names used as host names (`name:port`, `//name`, `@name`) in a text."""
    found = re.findall(r"(?:^|[/@,\s])([a-z][a-z0-9_-]*)(?=:\d)", text)
    return {host for host in found if host in names}


def needs(name: str, service: dict[str, Any], names: set[str]) -> set[str]:
    """What a container needs running first: the services its environment and its mounted
    configuration name as hosts, and topic creation before anything that uses Kafka."""
    texts = [str(value) for value in compose_environment(service).values() if value]
    for volume in service.get("volumes", []):
        source = volume.split(":", 1)[0]
        if source.startswith("./") and (ROOT / source).is_file():
            texts.append((ROOT / source).read_text())
    wanted = set().union(*(hosts_in(text, names) for text in texts)) - {name}
    if "kafka" in wanted and name != TOPIC_INIT:
        wanted.add(TOPIC_INIT)
    return wanted


def has_healthcheck(service: dict[str, Any]) -> bool:
    # Images built here have a HEALTHCHECK (test_dockerfile.py); the others need one in compose.
    check = service.get("healthcheck")
    if check is not None:
        return not check.get("disable", False)
    return "build" in service


def test_every_container_waits_for_what_it_needs_in_the_right_way(services: dict[str, Any]) -> None:
    names = set(services)
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions"
        for needed in needs(name, service, names):
            assert needed in depends_on, f"{name} needs {needed} but does not wait for it"
            condition = depends_on[needed]["condition"]
            target = services[needed]
            if target.get("restart") == "no":
                expected = "service_completed_successfully"
            elif has_healthcheck(target):
                expected = "service_healthy"
            else:
                assert needed in NO_HEALTHCHECK, f"{needed} has no health check to wait for"
                expected = "service_started"
            assert condition == expected, f"{name} waits for {needed} to be {condition}, not {expected}"


def test_the_dependency_graph_has_no_cycle_and_the_gateway_comes_last(services: dict[str, Any]) -> None:
    graph = {name: set(service.get("depends_on", {})) for name, service in services.items()}
    for name, targets in graph.items():
        assert targets <= set(graph), (name, targets - set(graph))
    order: list[str] = []
    pending = dict(graph)
    while pending:
        ready = sorted(name for name, targets in pending.items() if targets <= set(order))
        assert ready, f"dependency cycle among {sorted(pending)}"
        order += ready
        for name in ready:
            del pending[name]

    def waits_for(name: str) -> set[str]:
        direct = graph[name]
        return direct.union(*(waits_for(target) for target in direct)) if direct else set()

    assert waits_for("gateway") == set(services) - {"gateway"}


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_healthy_only_when_ready(service: str, services: dict[str, Any]) -> None:
    check = services[service]["healthcheck"]
    assert check["test"] == ["CMD", "python", "/opt/carebridge/bin/healthcheck.py", "--ready"]
    assert services[service]["command"] == [f"services.{service}"]


def test_postgres_is_healthy_only_once_its_init_scripts_have_run(services: dict[str, Any]) -> None:
    test = services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in test and test[test.index("-h") + 1] == "127.0.0.1", test


def test_postgres_creates_a_database_for_every_service(services: dict[str, Any]) -> None:
    mounts = [v.split(":") for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert len(mounts) == 1
    script = (ROOT / mounts[0][0]).read_text()
    databases = re.search(r"for database in ([^;]+);", script)
    assert databases is not None and set(databases.group(1).split()) == set(SERVICES)


# --- security --------------------------------------------------------------------------------


def test_no_container_runs_as_root(services: dict[str, Any]) -> None:
    for name, service in services.items():
        user = str(service.get("user", ""))
        assert user.split(":")[0] not in ROOT_USERS, f"{name} runs as {user or 'the image default'}"
        assert not service.get("privileged"), name
        assert not service.get("cap_add"), name


def test_carebridge_containers_are_locked_down(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if "build" not in service:
            continue
        assert service["user"] == "10001:10001", name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_only_the_gateway_is_published_beyond_this_host(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            if name != "gateway":
                assert str(port).startswith("127.0.0.1:"), (name, port)
    assert compose["networks"]["backend"]["internal"] is True
    for name, service in services.items():
        if service.get("ports"):
            assert "edge" in service["networks"], name
        else:
            assert service.get("networks") == ["backend"], name


def test_the_gateway_publishes_its_http_and_mllp_ports(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = settings_from_env("gateway", compose_environment(services["gateway"]), monkeypatch)
    published = {str(p) for p in services["gateway"]["ports"]}
    assert published == {f"{gateway.port}:{gateway.port}", f"{gateway.mllp_port}:{gateway.mllp_port}"}


# --- Kafka and shutdown ----------------------------------------------------------------------


def test_kafka_is_apache_kafka_in_kraft_mode_ready_for_idempotent_producers(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = compose_environment(kafka)
    assert set((env["KAFKA_PROCESS_ROLES"] or "").split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in name for name in env)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # One node: every internal topic, including the transaction state log idempotent producers
    # need, has one replica.
    for name in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert env[name] == "1", name


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_time_to_stop_cleanly(service: str, services: dict[str, Any]) -> None:
    grace = seconds(services[service]["stop_grace_period"])
    budget = shutdown_budget_s(service)
    assert budget <= grace <= budget + 30, (service, grace, budget)
