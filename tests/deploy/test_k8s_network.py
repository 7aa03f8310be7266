"""Network policies, evaluated as Kubernetes evaluates them: every CareBridge pod is denied by
default both ways; only the gateway is reachable from outside; intake, careplan and referral only
from the gateway and each other; the services reach Kafka, PostgreSQL, Redis, the collector, each
other and DNS (and the gateway its identity provider), and nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.deploy.support import OVERLAYS, SERVICES, config_data, find, of_kind, render
from tests.deploy.test_k8s_workloads import matches, pod_labels

RENDERINGS = ("base", *OVERLAYS)
BACKENDS = ("intake", "careplan", "referral")
#: Where the services' pods may open connections: infrastructure by workload name, and
#: destinations outside the cluster by what they are.
ALLOWED_EGRESS = {*SERVICES, "kafka", "postgres", "redis", "otel-collector", "dns"}
GATEWAY_ONLY_EGRESS = {"identity-provider"}
#: Destinations outside the namespace, recognised by port (ipBlock peers).
EXTERNAL_BY_PORT = {5432: "postgres", 443: "identity-provider"}


@dataclass(frozen=True)
class Pod:
    workload: str
    name: str  # app.kubernetes.io/name
    labels: tuple[tuple[str, str], ...]

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def pods(resources: list[dict[str, Any]]) -> list[Pod]:
    """Every pod the manifests make, plus the broker pods Strimzi makes for a Kafka resource
    (with the labels Strimzi gives them)."""
    found = []
    for workload in of_kind(resources, "Deployment", "StatefulSet", "Job"):
        labels = pod_labels(workload)
        found.append(
            Pod(workload["metadata"]["name"], labels["app.kubernetes.io/name"], tuple(labels.items()))
        )
    for kafka in of_kind(resources, "Kafka"):
        cluster = kafka["metadata"]["name"]
        labels = {
            "app.kubernetes.io/name": "kafka",
            "app.kubernetes.io/instance": cluster,
            "app.kubernetes.io/part-of": f"strimzi-{cluster}",
            "strimzi.io/cluster": cluster,
            "strimzi.io/kind": "Kafka",
            "strimzi.io/broker-role": "true",
            "strimzi.io/controller-role": "true",
        }
        found.append(Pod(f"{cluster}-dual-role", "kafka", tuple(labels.items())))
    return found


def policies_for(resources: list[dict[str, Any]], pod: Pod, direction: str) -> list[dict[str, Any]]:
    return [
        policy
        for policy in of_kind(resources, "NetworkPolicy")
        if direction in policy["spec"].get("policyTypes", ["Ingress"])
        and matches(policy["spec"]["podSelector"], pod.label_map)
    ]


def rules(resources: list[dict[str, Any]], pod: Pod, direction: str) -> list[dict[str, Any]]:
    key = "ingress" if direction == "Ingress" else "egress"
    return [
        rule for policy in policies_for(resources, pod, direction) for rule in policy["spec"].get(key, [])
    ]


def peers(rule: dict[str, Any], direction: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = rule.get("from" if direction == "Ingress" else "to", [])
    return found


def ports(rule: dict[str, Any]) -> set[int] | None:
    """The rule's ports, or None for every port."""
    return {port["port"] for port in rule["ports"]} if rule.get("ports") else None


def allowed(resources: list[dict[str, Any]], source: Pod, destination: Pod, port: int) -> bool:
    """Whether a connection from one pod to another in the namespace on `port` is allowed."""

    def side(pod: Pod, other: Pod, direction: str) -> bool:
        if not policies_for(resources, pod, direction):
            return True  # no policy selects the pod: all allowed
        for rule in rules(resources, pod, direction):
            if ports(rule) is not None and port not in ports(rule):  # type: ignore[operator]
                continue
            for peer in peers(rule, direction):
                if set(peer) == {"podSelector"} and matches(peer["podSelector"], other.label_map):
                    return True
        return False

    return side(source, destination, "Egress") and side(destination, source, "Ingress")


def the_pod(resources: list[dict[str, Any]], name: str) -> Pod:
    (pod,) = [p for p in pods(resources) if p.workload == name]
    return pod


def carebridge_pods(resources: list[dict[str, Any]]) -> list[Pod]:
    return [pod for pod in pods(resources) if pod.label_map.get("app.kubernetes.io/part-of") == "carebridge"]


@pytest.mark.parametrize("name", RENDERINGS)
def test_every_carebridge_pod_is_denied_by_default_both_ways(name: str) -> None:
    resources = render(name)
    deny = find(resources, "NetworkPolicy", "default-deny")["spec"]
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    # Every pod these manifests make carries the label (Strimzi's pods have policies of their own).
    for workload in of_kind(resources, "Deployment", "StatefulSet", "Job"):
        assert pod_labels(workload).get("app.kubernetes.io/part-of") == "carebridge", workload["metadata"][
            "name"
        ]
    for pod in carebridge_pods(resources):
        assert matches(deny["podSelector"], pod.label_map), pod.workload


@pytest.mark.parametrize("name", RENDERINGS)
def test_only_the_gateway_is_reachable_from_outside_the_namespace(name: str) -> None:
    resources = render(name)
    exposed = set()
    for pod in pods(resources):
        for rule in rules(resources, pod, "Ingress"):
            sources = peers(rule, "Ingress")
            if not sources or any("ipBlock" in peer or "namespaceSelector" in peer for peer in sources):
                exposed.add(pod.workload)
    assert exposed == {"gateway"}
    gateway = the_pod(resources, "gateway")
    gateway_config = config_data(resources)["carebridge-gateway"]
    open_ports = {
        port
        for rule in rules(resources, gateway, "Ingress")
        if any("ipBlock" in peer or "namespaceSelector" in peer for peer in peers(rule, "Ingress"))
        for port in ports(rule) or {0}
    }
    assert open_ports == {int(gateway_config["GATEWAY_PORT"]), int(gateway_config["GATEWAY_MLLP_PORT"])}


@pytest.mark.parametrize("name", RENDERINGS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_services_accept_connections_only_from_the_gateway_and_each_other(
    name: str, backend: str
) -> None:
    resources = render(name)
    pod = the_pod(resources, backend)
    assert rules(resources, pod, "Ingress"), f"{backend} has no ingress rule"
    everyone = pods(resources)
    for rule in rules(resources, pod, "Ingress"):
        for peer in peers(rule, "Ingress"):
            assert set(peer) == {"podSelector"}, peer
            sources = {p.name for p in everyone if matches(peer["podSelector"], p.label_map)}
            assert sources <= set(SERVICES), sources
    port = int(config_data(resources)[f"carebridge-{backend}"][f"{backend.upper()}_PORT"])
    for source in SERVICES:
        if source != backend:
            assert allowed(resources, the_pod(resources, source), pod, port), (source, backend)
    for outsider in ("redis", "otel-collector"):
        assert not allowed(resources, the_pod(resources, outsider), pod, port), (outsider, backend)


def egress_destinations(resources: list[dict[str, Any]], pod: Pod) -> set[str]:
    """What a pod may connect to, as destination names; fails on a rule that allows more."""
    everyone = pods(resources)
    found = set()
    for rule in rules(resources, pod, "Egress"):
        destinations = peers(rule, "Egress")
        assert destinations and ports(rule), f"{pod.workload}: an egress rule open to everything: {rule}"
        for peer in destinations:
            if set(peer) == {"podSelector"}:
                names = {p.name for p in everyone if matches(peer["podSelector"], p.label_map)}
                if not names:  # a pod another overlay runs (the base has no Kafka): named by its label
                    named = peer["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
                    assert named, f"{pod.workload}: an egress rule to no pod: {peer}"
                    names = {named}
                found |= names
            elif "namespaceSelector" in peer:
                is_dns = peer["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}} and ports(rule) == {
                    53
                }
                assert is_dns, f"{pod.workload}: egress to another namespace: {peer}"
                found.add("dns")
            else:
                assert set(peer) == {"ipBlock"}, peer
                (port,) = ports(rule)  # type: ignore[misc]
                assert port in EXTERNAL_BY_PORT, f"{pod.workload}: egress to {peer} on {port}"
                found.add(EXTERNAL_BY_PORT[port])
    return found


@pytest.mark.parametrize("name", [*RENDERINGS, "prod-migrate"])
def test_the_services_reach_only_kafka_postgres_redis_the_collector_and_each_other(name: str) -> None:
    resources = render(name)
    if name == "prod-migrate":
        resources = resources + render("prod")  # the Jobs run under prod's policies
    for pod in pods(resources):
        if pod.name not in SERVICES:
            continue
        assert policies_for(resources, pod, "Egress"), f"{pod.workload}: egress unrestricted"
        destinations = egress_destinations(resources, pod)
        allowed_here = ALLOWED_EGRESS | (GATEWAY_ONLY_EGRESS if pod.name == "gateway" else set())
        assert destinations <= allowed_here, (pod.workload, destinations - allowed_here)
        assert {"postgres", "dns"} <= destinations, pod.workload
        if pod.workload in SERVICES:
            assert {"kafka", "redis", "otel-collector"} <= destinations, pod.workload


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_services_reach_the_infrastructure_the_overlay_runs(name: str) -> None:
    resources = render(name)
    infrastructure = {"redis": 6379, "otel-collector": 4318, "kafka": 9092, "postgres": 5432}
    running = {pod.workload: pod for pod in pods(resources)}
    for service in SERVICES:
        source = running[service]
        for workload, port in infrastructure.items():
            destination = next((p for p in pods(resources) if p.name == workload), None)
            if destination is None:
                continue  # outside the cluster in this overlay (checked by egress_destinations)
            assert allowed(resources, source, destination, port), (service, workload)
    if "jaeger" in running:
        assert allowed(resources, running["otel-collector"], running["jaeger"], 4317)
        assert not allowed(resources, running["intake"], running["jaeger"], 16686)


def test_strimzi_admits_only_the_carebridge_services_to_its_listener() -> None:
    resources = render("prod")
    kafka = find(resources, "Kafka", "carebridge")
    for listener in kafka["spec"]["kafka"]["listeners"]:
        admitted = listener["networkPolicyPeers"]
        assert admitted, f"listener {listener['name']} open to every pod"
        for peer in admitted:
            assert set(peer) == {"podSelector"}
            names = {p.name for p in pods(resources) if matches(peer["podSelector"], p.label_map)}
            assert names == set(SERVICES), names
