"""What the deployment tests share: the settings the services read, the rendered manifests,
the compose file, and the services' runtimes (consumers, migrations) as their apps build them."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, ClassVar

import pytest
import yaml
from pydantic import AliasChoices

from shared.settings import SETTINGS_BY_SERVICE, ServiceSettings
from tests.deploy import kustomize

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SERVICES = tuple(SETTINGS_BY_SERVICE)

#: Every kustomization under deploy/k8s that must render, by a short name.
KUSTOMIZATIONS: dict[str, Path] = {
    "base": K8S / "base",
    "migrate": K8S / "migrate",
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
    "prod-migrate": K8S / "overlays" / "prod" / "migrate",
}
#: The environments a service runs in, and the kustomization of their migration Jobs (if any).
OVERLAYS = ("dev", "prod")
SECRET_TEMPLATE = K8S / "base" / "secret-template.yaml"

# --- settings --------------------------------------------------------------------------------

#: Settings a deployment does not set, and why. Everything else a service reads must be set.
NOT_DEPLOYED: dict[str, str] = {
    "service_name": (
        "the service's identity, fixed by its settings class: it names the consumer groups and "
        "inbox rows, so changing it per deployment would orphan committed offsets"
    ),
    "fault_injection": "a test hook that kills the process on purpose; never set outside tests",
}
#: Variables the services read outside their settings classes (standard OpenTelemetry names).
EXTRA_ENV: dict[str, str] = {
    "OTEL_EXPORTER_OTLP_PROTOCOL": "shared/telemetry.py picks the OTLP exporter by it",
}


def env_name(settings_class: type[ServiceSettings], field_name: str) -> str:
    """The environment variable a settings field is read from.

    Shared fields declare their unprefixed variable as an alias (`_shared(...)`); the first
    upper-case alias is the documented one. Other fields are read as env_prefix + NAME.
    """
    info = settings_class.model_fields[field_name]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        choices = [c for c in alias.choices if isinstance(c, str) and c != field_name]
        upper = [c for c in choices if c.isupper()]
        if not upper:
            raise AssertionError(f"{settings_class.__name__}.{field_name}: no upper-case alias in {choices}")
        return upper[0]
    if isinstance(alias, str):
        return alias
    prefix = settings_class.model_config.get("env_prefix", "")
    return (prefix + field_name).upper()


def env_names(settings_class: type[ServiceSettings]) -> dict[str, str]:
    """Environment variable -> field name, for every field the class reads."""
    return {env_name(settings_class, field): field for field in settings_class.model_fields}


def deployed_env_names(service: str) -> set[str]:
    """What a deployment must set for `service`: every setting it reads but NOT_DEPLOYED, and
    EXTRA_ENV."""
    names = env_names(SETTINGS_BY_SERVICE[service])
    return {env for env, field in names.items() if field not in NOT_DEPLOYED} | set(EXTRA_ENV)


def use_env(env: Mapping[str, str | None], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `env` the only settings in the environment (a None value is a variable left unset)."""
    known = {name for cls in SETTINGS_BY_SERVICE.values() for name in env_names(cls)} | set(env)
    for name in known:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, value)


def settings_from_env(service: str, env: Mapping[str, str | None], monkeypatch: pytest.MonkeyPatch) -> Any:
    """`service`'s settings (its own class: GatewaySettings, ...) as the service reads them with
    exactly `env` set."""
    use_env(env, monkeypatch)
    return SETTINGS_BY_SERVICE[service]()


# --- the services, as their apps build them --------------------------------------------------


@functools.cache
def runtime(service: str) -> Any:
    """The service's `ServiceRuntime` (consumers, migrations) from its `create_app`, not started."""
    # An empty HS256 secret: the gateway refuses the public development one off loopback.
    options: dict[str, Any] = {"jwt_hs256_secret": ""} if service == "gateway" else {}
    app = importlib.import_module(f"services.{service}.app").create_app(
        SETTINGS_BY_SERVICE[service](**options)
    )
    return app.state.runtime


#: Shutdown, from the code: uvicorn's HTTP drain (shared/service.py serve()), each consumer's
#: grace for its record in hand, stopped one after another (shared/events/consumer.py), and the
#: outbox relay's for its batch (shared/events/relay.py); plus time to flush the producer and
#: close connections; plus the preStop pause in Kubernetes.
SHUTDOWN_SLACK_S = 10
PRESTOP_S = 5


def http_drain_s() -> float:
    """uvicorn's `timeout_graceful_shutdown` as shared/service.py passes it."""
    source = (ROOT / "shared" / "service.py").read_text()
    match = re.search(r"timeout_graceful_shutdown=(\d+(?:\.\d+)?)", source)
    assert match, "shared/service.py no longer passes timeout_graceful_shutdown to uvicorn"
    return float(match.group(1))


def shutdown_budget_s(service: str) -> float:
    """Longest clean stop of `service` after SIGTERM (without Kubernetes' preStop pause)."""
    from shared.events import consumer, relay

    consumers = len(runtime(service).consumers)
    return http_drain_s() + consumers * consumer.STOP_GRACE_S + relay.STOP_GRACE_S + SHUTDOWN_SLACK_S


# --- Kubernetes ------------------------------------------------------------------------------


@functools.cache
def _rendered(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize.build(KUSTOMIZATIONS[name]))


def render(name: str) -> list[dict[str, Any]]:
    """The resources of one kustomization (cached; callers must not change them)."""
    return list(_rendered(name))


def secret_templates() -> list[dict[str, Any]]:
    return kustomize.load_documents(SECRET_TEMPLATE)


def find(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def of_kind(resources: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] in kinds]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def config_data(resources: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """ConfigMap name -> data."""
    return {r["metadata"]["name"]: r.get("data", {}) for r in of_kind(resources, "ConfigMap")}


def container_env(
    resources: list[dict[str, Any]], container: dict[str, Any], secrets: list[dict[str, Any]]
) -> dict[str, str | None]:
    """The environment a container gets from its envFrom (in order, later wins) and env.

    Values from `valueFrom` are None (they exist but are not known here)."""
    configmaps = config_data(resources)
    secret_data = {s["metadata"]["name"]: s.get("stringData", {}) for s in secrets}
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            ref = source["configMapRef"]
            if ref["name"] not in configmaps:
                assert ref.get("optional"), f"ConfigMap {ref['name']} is not rendered"
                continue
            env.update(configmaps[ref["name"]])
        else:
            ref = source["secretRef"]
            assert ref["name"] in secret_data, f"Secret {ref['name']} is not in {SECRET_TEMPLATE.name}"
            env.update(secret_data[ref["name"]])
    for variable in container.get("env", []):
        env[variable["name"]] = variable.get("value")
    return env


def service_deployment(resources: list[dict[str, Any]], service: str) -> dict[str, Any]:
    return find(resources, "Deployment", service)


# --- docker compose --------------------------------------------------------------------------

COMPOSE_FILE = ROOT / "docker-compose.yml"
#: What the tests pass for the variables docker-compose.yml requires.
COMPOSE_TEST_ENV = {"POSTGRES_PASSWORD": "compose-test-password"}

_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    pass


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, ${VAR:+other}, ${VAR+other}, and $$ for a literal $."""

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("named")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in env
        filled = present and env[name] != ""
        if op in (":-", "-"):
            return env[name] if (filled if op == ":-" else present) else arg
        if op in (":?", "?"):
            if not (filled if op == ":?" else present):
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if (filled if op == ":+" else present) else ""
        return env.get(name, "")

    return _INTERPOLATION.sub(substitute, value)


def _interpolate_all(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _interpolate_all(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate_all(item, env) for item in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def load_compose(env: Mapping[str, str] = COMPOSE_TEST_ENV) -> dict[str, Any]:
    """docker-compose.yml as `docker compose config` sees it: YAML merge keys resolved,
    variables interpolated from `env`."""
    with open(COMPOSE_FILE) as stream:
        raw = yaml.safe_load(stream)
    result: dict[str, Any] = _interpolate_all(raw, env)
    return result


def compose_environment(service: dict[str, Any]) -> dict[str, str | None]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in environment)
        return {key: value for key, value in pairs}
    return {key: None if value is None else str(value) for key, value in environment.items()}


def seconds(duration: str | int | float) -> float:
    """A compose duration ("1m30s", "45s", 40) in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


# --- deploy/ scripts ---------------------------------------------------------------------------

CREATE_TOPICS = ROOT / "deploy" / "image" / "create_topics.py"


@dataclass(frozen=True)
class CreatedTopic:
    name: str
    partitions: int
    replication_factor: int
    max_message_bytes: int


class FakeAdmin:
    """Stands in for aiokafka's admin client: a cluster of `brokers` brokers that records the
    topics it is asked to create."""

    brokers = 1
    created: ClassVar[list[CreatedTopic]] = []

    def __init__(self, **options: Any) -> None:
        self.options = options

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"node_id": n} for n in range(self.brokers)]}

    async def create_topics(self, new_topics: list[Any]) -> Any:
        for topic in new_topics:
            FakeAdmin.created.append(
                CreatedTopic(
                    topic.name,
                    topic.num_partitions,
                    topic.replication_factor,
                    int(topic.topic_configs["max.message.bytes"]),
                )
            )
        return SimpleNamespace(topic_errors=[(topic.name, 0, None) for topic in new_topics])


def created_topics(env: Mapping[str, str | None], monkeypatch: pytest.MonkeyPatch) -> list[CreatedTopic]:
    """The topics deploy/image/create_topics.py creates with exactly `env` set."""
    import shared.events.producer

    use_env(env, monkeypatch)
    FakeAdmin.created = []
    monkeypatch.setattr(shared.events.producer, "AIOKafkaAdminClient", FakeAdmin)
    assert load_script(CREATE_TOPICS).main(["--wait", "0"]) == 0
    return list(FakeAdmin.created)


def load_script(path: Path) -> ModuleType:
    """Import a script that is not in a package (deploy/image/*.py, deploy/k8s/*.py)."""
    spec = importlib.util.spec_from_file_location(f"carebridge_deploy_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
