"""Kubernetes workloads: each service has its Deployment, Service, ServiceAccount, PDB and HPA;
probes on /readyz and /healthz; resources; locked-down security contexts; time to drain on
shutdown; the public doors (Ingress, MLLP load balancer); the migration Jobs."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.support import (
    OVERLAYS,
    PRESTOP_S,
    ROOT,
    SERVICES,
    config_data,
    find,
    of_kind,
    pod_spec,
    render,
    shutdown_budget_s,
)

RENDERINGS = ("base", *OVERLAYS)
WORKLOADS = ("Deployment", "StatefulSet", "Job")
#: Containers allowed a writable root filesystem, and why.
WRITABLE_ROOT = {
    ("dev", "kafka"): "apache/kafka's start script writes the broker configuration into /opt/kafka/config",
}


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) selects `labels`."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if not {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    result: list[dict[str, Any]] = spec["containers"] + spec.get("initContainers", [])
    return result


@pytest.mark.parametrize("name", RENDERINGS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_its_deployment_service_account_pdb_and_autoscaler(name: str, service: str) -> None:
    resources = render(name)
    deployment = find(resources, "Deployment", service)
    labels = pod_labels(deployment)
    spec = pod_spec(deployment)
    assert matches(deployment["spec"]["selector"], labels)
    # The autoscaler owns the replica count.
    assert "replicas" not in deployment["spec"]
    account = find(resources, "ServiceAccount", service)
    assert account["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == service and spec["automountServiceAccountToken"] is False
    kube_service = find(resources, "Service", service)
    assert matches({"matchLabels": kube_service["spec"]["selector"]}, labels)
    port_names = {port["name"] for port in spec["containers"][0]["ports"]}
    assert {port["targetPort"] for port in kube_service["spec"]["ports"]} <= port_names
    pdb = find(resources, "PodDisruptionBudget", service)
    assert matches(pdb["spec"]["selector"], labels)
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") is not None
    hpa = find(resources, "HorizontalPodAutoscaler", service)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert spec["containers"][0]["args"] == [f"services.{service}"]


@pytest.mark.parametrize("name", RENDERINGS)
@pytest.mark.parametrize("service", SERVICES)
def test_readiness_asks_readyz_and_liveness_asks_healthz(name: str, service: str) -> None:
    container = pod_spec(find(render(name), "Deployment", service))["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


@pytest.mark.parametrize("name", ["dev", "prod", "prod-migrate"])
def test_every_container_has_resource_requests_and_limits(name: str) -> None:
    for workload in of_kind(render(name), *WORKLOADS):
        for container in containers(workload):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), workload["metadata"]["name"]
            assert "memory" in resources["limits"], workload["metadata"]["name"]


@pytest.mark.parametrize("name", ["dev", "prod", "prod-migrate"])
def test_no_container_runs_as_root_or_can_gain_privileges(name: str) -> None:
    for workload in of_kind(render(name), *WORKLOADS):
        spec = pod_spec(workload)
        pod_context = spec["securityContext"]
        assert pod_context["runAsNonRoot"] is True, workload["metadata"]["name"]
        assert pod_context["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        for container in containers(workload):
            context = container["securityContext"]
            user = context.get("runAsUser", pod_context.get("runAsUser"))
            assert user is not None and user > 0, (workload["metadata"]["name"], container["name"])
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert not context["capabilities"].get("add")
            assert not context.get("privileged")
            if (name, container["name"]) not in WRITABLE_ROOT:
                assert context["readOnlyRootFilesystem"] is True, (
                    workload["metadata"]["name"],
                    container["name"],
                )


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_carebridge_pods_run_as_the_images_user(name: str) -> None:
    dockerfile_user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert dockerfile_user is not None
    for service in SERVICES:
        context = pod_spec(find(render(name), "Deployment", service))["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == tuple(map(int, dockerfile_user.groups()))


@pytest.mark.parametrize("service", SERVICES)
def test_the_grace_period_covers_the_consumer_drain(service: str) -> None:
    for name in RENDERINGS:
        spec = pod_spec(find(render(name), "Deployment", service))
        budget = PRESTOP_S + shutdown_budget_s(service)
        grace = spec["terminationGracePeriodSeconds"]
        assert budget <= grace <= budget + 30, (name, service, grace, budget)
        pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop == ["python", "-c", f"import time; time.sleep({PRESTOP_S})"]


def test_the_public_doors_lead_to_the_gateway_only() -> None:
    for name in RENDERINGS:
        resources = render(name)
        gateway = config_data(resources)["carebridge-gateway"]
        (ingress,) = of_kind(resources, "Ingress")
        paths = {
            (path["path"], path["backend"]["service"]["name"], path["backend"]["service"]["port"]["name"])
            for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]
        }
        assert paths == {("/fhir", "gateway", "http"), ("/hl7v2", "gateway", "http")}, name
        balancers = [s for s in of_kind(resources, "Service") if s["spec"].get("type") == "LoadBalancer"]
        assert [s["metadata"]["name"] for s in balancers] == ["gateway-mllp"], name
        (mllp,) = balancers
        assert mllp["spec"]["selector"] == {
            "app.kubernetes.io/name": "gateway",
            "app.kubernetes.io/component": "api",
        }
        assert [(p["port"], p["targetPort"]) for p in mllp["spec"]["ports"]] == [
            (int(gateway["GATEWAY_MLLP_PORT"]), "mllp")
        ]
        assert mllp["spec"]["loadBalancerSourceRanges"], "MLLP open to any address"
        assert [s for s in of_kind(resources, "Service") if s["spec"].get("type") == "NodePort"] == []


def test_production_serves_https_only() -> None:
    (ingress,) = of_kind(render("prod"), "Ingress")
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    assert hosts <= {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"


@pytest.mark.parametrize("name", ["migrate", "prod-migrate"])
def test_a_migration_job_per_service_runs_the_shipped_script_with_the_services_secret(name: str) -> None:
    jobs = of_kind(render(name), "Job")
    assert sorted(job["metadata"]["name"] for job in jobs) == sorted(f"migrate-{s}" for s in SERVICES)
    for service in SERVICES:
        job = find(jobs, "Job", f"migrate-{service}")
        spec = pod_spec(job)
        assert spec["restartPolicy"] == "Never"
        (container,) = spec["containers"]
        assert container["command"] == ["python", "/opt/carebridge/bin/migrate.py", service]
        secrets = [source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source]
        assert secrets == [f"carebridge-{service}"]
        # The service's network policies apply to its Job (they select app.kubernetes.io/name).
        assert pod_labels(job)["app.kubernetes.io/name"] == service
        assert pod_labels(job)["app.kubernetes.io/component"] == "migration"
        assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0
