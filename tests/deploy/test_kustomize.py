"""The test-side Kustomize renderer does what kustomize does for the features deploy/k8s uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.kustomize import KustomizeError, build, image_name, strategic_merge


def test_strategic_merge_merges_maps_deletes_nulls_and_keys_containers_env_and_volumes() -> None:
    original = {
        "spec": {
            "replicas": 2,
            "tls": [{"hosts": ["a"]}],
            "containers": [
                {
                    "name": "app",
                    "image": "x",
                    "env": [{"name": "A", "value": "1"}],
                    "ports": [{"containerPort": 80}],
                },
                {"name": "side", "image": "y"},
            ],
            "egress": [{"to": "old"}],
        }
    }
    patch = {
        "spec": {
            "tls": None,
            "containers": [
                {"name": "app", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "3"}]}
            ],
            "egress": [{"to": "new"}],
        }
    }
    merged = strategic_merge(original, patch)
    assert "tls" not in merged["spec"] and merged["spec"]["replicas"] == 2
    app, side = merged["spec"]["containers"]
    assert app["env"] == [{"name": "A", "value": "3"}, {"name": "B", "value": "2"}]
    assert app["image"] == "x" and app["ports"] == [{"containerPort": 80}] and side["name"] == "side"
    assert merged["spec"]["egress"] == [{"to": "new"}]
    assert original["spec"]["tls"] == [{"hosts": ["a"]}]


def test_image_names_ignore_tags_digests_and_registry_ports() -> None:
    assert image_name("carebridge") == "carebridge"
    assert image_name("registry.example.org:5000/carebridge:1.2") == "registry.example.org:5000/carebridge"
    assert image_name("carebridge@sha256:abc") == "carebridge"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_build_applies_resources_components_patches_namespace_and_images(tmp_path: Path) -> None:
    _write(tmp_path / "base/kustomization.yaml", "resources: [app.yaml]\n")
    _write(
        tmp_path / "base/app.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n"
        "spec: {template: {spec: {containers: [{name: app, image: app}]}}}\n"
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
    )
    _write(
        tmp_path / "overlay/release/kustomization.yaml",
        "kind: Component\nimages: [{name: app, newTag: '2'}]\n",
    )
    _write(
        tmp_path / "overlay/kustomization.yaml",
        "namespace: prod\nresources: [../base]\ncomponents: [release]\npatches: [{path: patch.yaml}]\n",
    )
    _write(
        tmp_path / "overlay/patch.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec: {replicas: 3}\n",
    )
    deployment, namespace = build(tmp_path / "overlay")
    assert deployment["metadata"]["namespace"] == "prod" and namespace["metadata"]["name"] == "prod"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "app:2"


def test_a_field_the_renderer_does_not_implement_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "kustomization.yaml", "resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(KustomizeError, match="commonLabels"):
        build(tmp_path)
