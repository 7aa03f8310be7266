"""Every kustomization under deploy/k8s renders, and every document validates offline: against
the Kubernetes JSON schemas (strict: unknown fields fail) that kubernetes-validate ships, or, for
Strimzi's kinds, against the hand-written schemas of strimzi_schemas.py."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy import strimzi_schemas
from tests.deploy.kustomize import image_name
from tests.deploy.support import KUSTOMIZATIONS, find, of_kind, pod_spec, render, secret_templates

#: The Kubernetes version the manifests target (the oldest the README supports).
KUBERNETES_VERSION = "1.30"
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def validate(document: dict[str, Any]) -> None:
    kind = document["kind"]
    if document["apiVersion"].startswith("kafka.strimzi.io/"):
        jsonschema.Draft202012Validator(strimzi_schemas.SCHEMAS[kind]).validate(document)
        return
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def _describe(document: dict[str, Any]) -> str:
    return f"{document['kind']}/{document['metadata']['name']}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_kustomization_renders_and_every_document_validates(name: str) -> None:
    resources = render(name)
    assert resources, name
    failures = []
    for document in resources:
        try:
            validate(document)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
            path = ".".join(str(part) for part in exc.absolute_path)
            failures.append(f"{_describe(document)}: {path}: {exc.message}")
    assert failures == [], "\n".join(failures)


def test_the_secret_templates_validate() -> None:
    for document in secret_templates():
        validate(document)


def test_the_strimzi_schemas_refuse_a_misplaced_field() -> None:
    kafka = find(render("prod"), "Kafka", "carebridge")
    broken = {**kafka, "spec": {**kafka["spec"], "kafka": {**kafka["spec"]["kafka"], "replicas": 3}}}
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_overlays_put_everything_in_their_namespace(name: str) -> None:
    resources = render(name)
    (namespace,) = of_kind(resources, "Namespace")
    for resource in resources:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace["metadata"]["name"], _describe(resource)


def images(resources: list[dict[str, Any]]) -> set[str]:
    return {
        container["image"]
        for workload in of_kind(resources, *WORKLOADS)
        for container in pod_spec(workload)["containers"] + pod_spec(workload).get("initContainers", [])
    }


@pytest.mark.parametrize("name", ["dev", "prod", "prod-migrate"])
def test_every_image_is_pinned_to_a_tag(name: str) -> None:
    for image in images(render(name)):
        tag = image[len(image_name(image)) :]
        assert tag.startswith((":", "@")) and tag not in (":latest", ":"), image


def test_production_and_its_migrations_run_the_same_carebridge_release() -> None:
    def carebridge(name: str) -> set[str]:
        return {image for image in images(render(name)) if image_name(image).endswith("/carebridge")}

    assert len(carebridge("prod")) == 1
    assert carebridge("prod") == carebridge("prod-migrate")


def test_no_kustomization_renders_a_secret() -> None:
    for name in KUSTOMIZATIONS:
        assert of_kind(render(name), "Secret") == [], name
