"""A small Kustomize renderer: `kustomize build` for the features deploy/k8s uses, in Python.

There is no kustomize binary on the machines that run the tests, so this renders the same
kustomizations the same way. It refuses every field and patch form it does not implement, so a
kustomization that starts using one fails here loudly instead of rendering differently:

- `resources`: YAML files (several documents each) and directories holding a kustomization;
- `components` (kind Component): their resources join, and their transformers apply to the
  including kustomization's resources (kustomize's order: resources, components, then its own);
- `patches` (`path:` or inline `patch:`) that are strategic-merge patches: a Kubernetes object
  patching the resource of the same kind and name;
- `namespace`: set on every namespaced resource (a Namespace object takes it as its name);
- `images`: `name` -> `newName` / `newTag` / `digest` in containers and init containers.

Strategic merge as Kubernetes defines it for the fields these manifests patch: maps merge
recursively, `null` deletes a key, lists of containers, volumes, env, ... merge by their merge key
(name, mountPath, containerPort or port), and any other list is replaced.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_FIELDS = {"apiVersion", "kind", "resources", "components", "patches", "namespace", "images"}
_KINDS = {"Kustomization", "Component"}
#: Kinds that live outside namespaces (those that could appear in these manifests).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "IngressClass",
    "PriorityClass",
}
#: Strategic-merge keys of the lists that have one (from the Kubernetes API's patchMergeKey).
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"),
}


class KustomizeError(Exception):
    pass


def build(directory: Path) -> list[Resource]:
    """The resources `kustomize build directory` prints, in order."""
    return _build(Path(directory).resolve(), expect="Kustomization")


def load_documents(path: Path) -> list[Resource]:
    """The non-empty YAML documents of a file."""
    with open(path) as stream:
        documents = [doc for doc in yaml.safe_load_all(stream) if doc is not None]
    for doc in documents:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise KustomizeError(f"{path}: a document without kind and apiVersion")
    return documents


def _kustomization(directory: Path) -> dict[str, Any]:
    for name in KUSTOMIZATION_FILES:
        path = directory / name
        if path.is_file():
            with open(path) as stream:
                kustomization = yaml.safe_load(stream) or {}
            unknown = set(kustomization) - _FIELDS
            if unknown:
                raise KustomizeError(f"{path}: fields this renderer does not implement: {sorted(unknown)}")
            if kustomization.get("kind", "Kustomization") not in _KINDS:
                raise KustomizeError(f"{path}: kind {kustomization.get('kind')!r}")
            return kustomization
    raise KustomizeError(f"{directory}: no kustomization file")


def _build(directory: Path, expect: str) -> list[Resource]:
    kustomization = _kustomization(directory)
    kind = kustomization.get("kind", "Kustomization")
    if kind != expect:
        raise KustomizeError(f"{directory}: a {kind} where a {expect} was expected")
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        resources += _load_resource(directory, entry)
    for entry in kustomization.get("components", []):
        component_dir = (directory / entry).resolve()
        resources += _build(component_dir, expect="Component")
        _transform(resources, _kustomization(component_dir), component_dir)
    _transform(resources, kustomization, directory)
    _check_unique(resources, directory)
    return resources


def _load_resource(directory: Path, entry: str) -> list[Resource]:
    path = (directory / entry).resolve()
    if path.is_dir():
        return _build(path, expect="Kustomization")
    if path.is_file():
        return load_documents(path)
    raise KustomizeError(f"{directory}: resource {entry!r} does not exist")


def _transform(resources: list[Resource], kustomization: dict[str, Any], directory: Path) -> None:
    """A kustomization's transformers, in kustomize's order: patches, namespace, images."""
    for patch in kustomization.get("patches", []):
        _apply_patch(resources, patch, directory)
    namespace = kustomization.get("namespace")
    if namespace:
        for resource in resources:
            if resource["kind"] == "Namespace":
                resource["metadata"]["name"] = namespace
            elif resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = namespace
    for image in kustomization.get("images", []):
        for resource in resources:
            _set_image(resource, image)


# --- patches ---------------------------------------------------------------------------------


def _apply_patch(resources: list[Resource], patch: dict[str, Any], directory: Path) -> None:
    unknown = set(patch) - {"path", "patch"}
    if unknown or ("path" in patch) == ("patch" in patch):
        raise KustomizeError(f"{directory}: patch entry {patch}: only one of path/patch is implemented")
    if "path" in patch:
        documents = load_documents(directory / patch["path"])
    else:
        documents = [doc for doc in yaml.safe_load_all(patch["patch"]) if doc is not None]
    for document in documents:
        if not isinstance(document, dict) or "kind" not in document:
            raise KustomizeError(f"{directory}: {patch}: JSON 6902 patches are not implemented")
        target = _find(resources, document["kind"], document["metadata"]["name"], directory)
        merged = strategic_merge(target, document)
        target.clear()
        target.update(merged)


def _find(resources: list[Resource], kind: str, name: str, directory: Path) -> Resource:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    if len(found) != 1:
        raise KustomizeError(f"{directory}: a patch for {kind}/{name} matches {len(found)} resources")
    return found[0]


def strategic_merge(original: Any, patch: Any, field: str = "") -> Any:
    """`patch` merged into a copy of `original` (Kubernetes strategic merge patch)."""
    if isinstance(original, dict) and isinstance(patch, dict):
        directives = [key for key in patch if key.startswith("$")]
        if directives:
            raise KustomizeError(f"strategic-merge directives are not implemented: {directives}")
        merged = copy.deepcopy(original)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(original, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = _merge_key(field, original + patch)
        if key is not None:
            return _merge_keyed_lists(original, patch, key)
    return copy.deepcopy(patch)


def _merge_key(field: str, items: list[Any]) -> str | None:
    for key in MERGE_KEYS[field]:
        if all(isinstance(item, dict) and key in item for item in items):
            return key
    return None


def _merge_keyed_lists(original: list[Any], patch: list[Any], key: str) -> list[Any]:
    merged = copy.deepcopy(original)
    for item in patch:
        position = next((i for i, old in enumerate(merged) if old[key] == item[key]), None)
        if position is None:
            merged.append(copy.deepcopy(item))
        else:
            merged[position] = strategic_merge(merged[position], item)
    return merged


def _check_unique(resources: list[Resource], directory: Path) -> None:
    seen: set[tuple[str, str, str | None]] = set()
    for resource in resources:
        identity = (resource["kind"], resource["metadata"]["name"], resource["metadata"].get("namespace"))
        if identity in seen:
            raise KustomizeError(f"{directory}: {identity} appears twice")
        seen.add(identity)


# --- images ----------------------------------------------------------------------------------


def _set_image(node: Any, image: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for field in ("containers", "initContainers"):
            for container in node.get(field) or ():
                if isinstance(container, dict) and isinstance(container.get("image"), str):
                    container["image"] = _new_image(container["image"], image)
        for value in node.values():
            _set_image(value, image)
    elif isinstance(node, list):
        for item in node:
            _set_image(item, image)


def image_name(reference: str) -> str:
    """The repository part of an image reference (no tag, no digest)."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def _new_image(reference: str, image: dict[str, Any]) -> str:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise KustomizeError(f"images entry {image}: {sorted(unknown)} not implemented")
    name = image_name(reference)
    if name != image["name"]:
        return reference
    rest = reference[len(name) :]
    new = image.get("newName", name)
    if "digest" in image:
        return f"{new}@{image['digest']}"
    if "newTag" in image:
        return f"{new}:{image['newTag']}"
    return new + rest
