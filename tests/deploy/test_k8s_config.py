"""Kubernetes configuration: every setting a service reads comes from its ConfigMaps or Secret
and is valid; addresses agree with the Services; every topic exists as a KafkaTopic in prod;
partitions bound the replicas that consume."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.events.producer import MAX_REPLICATION_FACTOR, max_event_bytes
from shared.events.topics import ALL_TOPICS, dlq_of
from shared.settings import SETTINGS_BY_SERVICE, ServiceSettings
from tests.deploy.support import (
    K8S,
    KUSTOMIZATIONS,
    OVERLAYS,
    ROOT,
    SECRET_TEMPLATE,
    SERVICES,
    config_data,
    container_env,
    deployed_env_names,
    env_names,
    find,
    load_script,
    of_kind,
    pod_spec,
    render,
    runtime,
    secret_templates,
    settings_from_env,
)

RENDERINGS = ("base", *OVERLAYS)


def env_from_config(name: str, service: str) -> dict[str, str | None]:
    """What `service`'s container reads from its ConfigMaps and Secret (envFrom only)."""
    resources = render(name)
    container = pod_spec(find(resources, "Deployment", service))["containers"][0]
    return container_env(resources, {"envFrom": container["envFrom"]}, secret_templates())


def settings_in(name: str, service: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    resources = render(name)
    container = pod_spec(find(resources, "Deployment", service))["containers"][0]
    return settings_from_env(service, container_env(resources, container, secret_templates()), monkeypatch)


def service_port(resources: list[dict[str, Any]], name: str) -> set[int]:
    return {port["port"] for port in find(resources, "Service", name)["spec"]["ports"]}


@pytest.mark.parametrize("name", RENDERINGS)
@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_the_service_reads_is_in_its_configmaps_or_secret(name: str, service: str) -> None:
    missing = deployed_env_names(service) - set(env_from_config(name, service))
    assert not missing, (
        f"{name}: {service} reads these but no ConfigMap or Secret sets them: {sorted(missing)}"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_configmaps_and_secrets_hold_only_settings_the_service_reads(service: str) -> None:
    """A misspelt variable is set but never read."""
    unknown = set(env_from_config("base", service)) - set(deployed_env_names(service))
    assert not unknown, f"{service}: {sorted(unknown)}"


@pytest.mark.parametrize("name", RENDERINGS)
@pytest.mark.parametrize("service", SERVICES)
def test_the_settings_are_valid_and_agree_with_the_manifests(
    name: str, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = render(name)
    settings = settings_in(name, service, monkeypatch)
    assert settings.kafka_idempotent_producer is True
    assert settings.host == "0.0.0.0"
    container = pod_spec(find(resources, "Deployment", service))["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["http"] == settings.port
    assert service_port(resources, service) == {settings.port}
    assert urlsplit(settings.redis_url).hostname == "redis"
    assert urlsplit(settings.redis_url).port in service_port(resources, "redis")
    endpoint = urlsplit(settings.otel_exporter_otlp_endpoint or "")
    assert endpoint.hostname == "otel-collector" and endpoint.port in service_port(
        resources, "otel-collector"
    )


@pytest.mark.parametrize("name", RENDERINGS)
def test_the_gateway_reaches_each_service_at_its_service_name_and_port(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = render(name)
    gateway = settings_in(name, "gateway", monkeypatch)
    for service, url in gateway.service_urls().items():
        assert url == f"http://{service}:{settings_in(name, service, monkeypatch).port}"
        assert urlsplit(url).port in service_port(resources, service)
    container = pod_spec(find(resources, "Deployment", "gateway"))["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["mllp"] == gateway.mllp_port
    assert gateway.jwt_hs256_secret == ""  # no development tokens unless a Secret says so


def test_the_dev_services_reach_the_dev_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    resources = render("dev")
    host, port = settings_in("dev", "intake", monkeypatch).kafka_bootstrap_servers.split(":")
    assert host == "kafka" and int(port) in service_port(resources, "kafka")


def test_the_prod_services_reach_strimzis_bootstrap_service(monkeypatch: pytest.MonkeyPatch) -> None:
    resources = render("prod")
    kafka = find(resources, "Kafka", "carebridge")
    (plain,) = [listener for listener in kafka["spec"]["kafka"]["listeners"] if not listener["tls"]]
    expected = f"{kafka['metadata']['name']}-kafka-bootstrap:{plain['port']}"
    for service in SERVICES:
        assert settings_in("prod", service, monkeypatch).kafka_bootstrap_servers == expected


def test_prod_speaks_mllp_over_mutual_tls_from_a_mounted_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    resources = render("prod")
    gateway = settings_in("prod", "gateway", monkeypatch)
    spec = pod_spec(find(resources, "Deployment", "gateway"))
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for path in (gateway.mllp_tls_certfile, gateway.mllp_tls_keyfile, gateway.mllp_tls_cafile):
        assert path, "MLLP TLS is off in prod"
        (volume,) = [name for name, mount in mounts.items() if path.startswith(mount + "/")]
        secret = volumes[volume]["secret"]["secretName"]
        key = path.rsplit("/", 1)[1]
        assert key in find(secret_templates(), "Secret", secret)["stringData"], (secret, key)


# --- secrets ---------------------------------------------------------------------------------


def test_the_secret_templates_hold_placeholders_only() -> None:
    for secret in secret_templates():
        for key, value in secret["stringData"].items():
            assert value == "" or "REPLACE" in value or ".invalid" in value, (secret["metadata"]["name"], key)
    for path in K8S.rglob("kustomization.yaml"):
        listed = yaml.safe_load(path.read_text()).get("resources", [])
        assert not any(entry.endswith(SECRET_TEMPLATE.name) for entry in listed), path


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_reads_only_its_own_secret(service: str) -> None:
    for name in ("dev", "prod"):
        container = pod_spec(find(render(name), "Deployment", service))["containers"][0]
        secrets = {source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source}
        assert secrets == {f"carebridge-{service}"}
    template = find(secret_templates(), "Secret", f"carebridge-{service}")
    assert set(template["stringData"]) <= set(env_names(SETTINGS_BY_SERVICE[service]))


def test_dev_postgres_creates_a_database_for_every_service() -> None:
    init = find(render("dev"), "ConfigMap", "postgres-init")
    (script,) = init["data"].values()
    databases = re.search(r"for database in ([^;]+);", script)
    assert databases is not None and set(databases.group(1).split()) == set(SERVICES)
    compose_script = (ROOT / "deploy" / "compose" / "postgres" / "10-carebridge-databases.sh").read_text()
    compose_databases = re.search(r"for database in ([^;]+);", compose_script)
    assert compose_databases is not None and compose_databases.group(1) == databases.group(1)


# --- Kafka and topics ------------------------------------------------------------------------


def _partitions(name: str) -> int:
    return int(config_data(render(name))["carebridge-shared"]["KAFKA_TOPIC_PARTITIONS"])


def _largest_body(name: str) -> int:
    data = config_data(render(name))
    return max(int(data[f"carebridge-{s}"][f"{s.upper()}_MAX_BODY_BYTES"]) for s in SERVICES)


def test_prod_has_a_kafka_topic_for_every_topic_and_dead_letter_topic() -> None:
    resources = render("prod")
    shared = config_data(resources)["carebridge-shared"]
    prefix = shared["KAFKA_TOPIC_PREFIX"]
    expected = {prefix + t for t in ALL_TOPICS} | {dlq_of(prefix + t) for t in ALL_TOPICS}
    topics = of_kind(resources, "KafkaTopic")
    assert sorted(t["spec"]["topicName"] for t in topics) == sorted(expected)
    kafka = find(resources, "Kafka", "carebridge")
    max_bytes = max_event_bytes(ServiceSettings(max_body_bytes=_largest_body("prod")))
    for topic in topics:
        spec = topic["spec"]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert spec["partitions"] == _partitions("prod"), topic["metadata"]["name"]
        assert spec["replicas"] == MAX_REPLICATION_FACTOR
        assert spec["config"]["min.insync.replicas"] < spec["replicas"]
        assert spec["config"]["max.message.bytes"] == max_bytes


def test_the_kafka_topics_file_is_what_the_generator_writes_for_prod() -> None:
    generator = load_script(K8S / "generate_kafka_topics.py")
    prefix = config_data(render("prod"))["carebridge-shared"]["KAFKA_TOPIC_PREFIX"]
    expected = generator.render(_partitions("prod"), prefix, _largest_body("prod"))
    current = generator.OUTPUT.read_text()
    assert current == expected, (
        "deploy/k8s/overlays/prod/kafka-topics.yaml is out of date: run "
        f".venv/bin/python deploy/k8s/generate_kafka_topics.py --partitions {_partitions('prod')} "
        f"--prefix '{prefix}' --max-body-bytes {_largest_body('prod')}"
    )


def test_the_strimzi_cluster_has_three_kraft_brokers_and_safe_replication() -> None:
    resources = render("prod")
    kafka = find(resources, "Kafka", "carebridge")
    (pool,) = of_kind(resources, "KafkaNodePool")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert pool["spec"]["replicas"] >= MAX_REPLICATION_FACTOR
    config = kafka["spec"]["kafka"]["config"]
    assert config["auto.create.topics.enable"] is False
    assert config["default.replication.factor"] == MAX_REPLICATION_FACTOR
    assert config["min.insync.replicas"] == MAX_REPLICATION_FACTOR - 1
    # Idempotent and transactional producers keep their state in the transaction log.
    assert config["transaction.state.log.replication.factor"] == MAX_REPLICATION_FACTOR
    assert config["transaction.state.log.min.isr"] == MAX_REPLICATION_FACTOR - 1
    # These CRs must not carry the label CareBridge's deny-all selects: Strimzi copies labels to pods.
    for resource in (kafka, pool):
        assert "app.kubernetes.io/part-of" not in resource["metadata"].get("labels", {})


@pytest.mark.parametrize("name", RENDERINGS)
@pytest.mark.parametrize("service", SERVICES)
def test_a_service_never_scales_past_the_partitions_its_consumers_share(name: str, service: str) -> None:
    hpa = find(render(name), "HorizontalPodAutoscaler", service)
    if runtime(service).consumers:
        assert hpa["spec"]["maxReplicas"] <= _partitions(name), (name, service)


@pytest.mark.parametrize("service", SERVICES)
def test_production_runs_at_least_two_replicas_of_each_service(service: str) -> None:
    assert find(render("prod"), "HorizontalPodAutoscaler", service)["spec"]["minReplicas"] >= 2


def test_every_kustomization_is_tested() -> None:
    found = {path.parent for path in K8S.rglob("kustomization.yaml")}
    components = {
        path.parent for path in K8S.rglob("kustomization.yaml") if "kind: Component" in path.read_text()
    }
    assert found - components == set(KUSTOMIZATIONS.values())
