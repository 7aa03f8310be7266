"""Hand-written JSON schemas for the Strimzi kinds deploy/k8s uses (kafka.strimzi.io/v1beta2).

NOT Strimzi's own schemas: kubernetes-validate ships the Kubernetes API's only, and Strimzi's
CRDs are not on PyPI. Each schema below is a subset of the CRD's openAPIV3Schema: the fields the
manifests use, with their types and the constraints the CRDs state (listener names and ports,
node roles, storage types, replica ranges), and unknown fields refused, so that a misspelt or
misplaced field fails the test instead of being ignored by the operator.
"""

from __future__ import annotations

from typing import Any

_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_QUANTITY: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
_RESOURCES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests": {"type": "object", "additionalProperties": _QUANTITY},
        "limits": {"type": "object", "additionalProperties": _QUANTITY},
    },
}
_METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    "additionalProperties": False,
}
#: Strimzi's pod and container templates accept Kubernetes' securityContext objects.
_SECURITY_CONTEXT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "runAsNonRoot": {"type": "boolean"},
        "runAsUser": {"type": "integer", "minimum": 0},
        "runAsGroup": {"type": "integer", "minimum": 0},
        "fsGroup": {"type": "integer", "minimum": 0},
        "allowPrivilegeEscalation": {"type": "boolean"},
        "readOnlyRootFilesystem": {"type": "boolean"},
        "seccompProfile": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": ["RuntimeDefault", "Localhost", "Unconfined"]}},
        },
        "capabilities": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "drop": {"type": "array", "items": {"type": "string"}},
                "add": {"type": "array", "items": {"type": "string"}},
            },
        },
    },
}
_POD_TEMPLATE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "pod": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"securityContext": _SECURITY_CONTEXT, "metadata": {"type": "object"}},
        },
        "kafkaContainer": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"securityContext": _SECURITY_CONTEXT, "env": {"type": "array"}},
        },
    },
}
_ENTITY_OPERATOR_TEMPLATE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "pod": _POD_TEMPLATE["properties"]["pod"],
        **{
            f"{container}Container": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"securityContext": _SECURITY_CONTEXT, "env": {"type": "array"}},
            }
            for container in ("topicOperator", "userOperator", "tlsSidecar")
        },
    },
}
_LABEL_SELECTOR: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": _STRING_MAP,
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "additionalProperties": False,
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_LISTENER: dict[str, Any] = {
    "type": "object",
    "required": ["name", "port", "type", "tls"],
    "additionalProperties": False,
    "properties": {
        # The CRD's pattern; ports 9090 and 9091 are Strimzi's own (control plane, replication).
        "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
        "port": {"type": "integer", "minimum": 9092},
        "type": {"enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]},
        "tls": {"type": "boolean"},
        "authentication": {"type": "object"},
        "configuration": {"type": "object"},
        "networkPolicyPeers": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "podSelector": _LABEL_SELECTOR,
                    "namespaceSelector": _LABEL_SELECTOR,
                    "ipBlock": {"type": "object"},
                },
            },
        },
    },
}
_CONFIG: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
}


def _resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
    }


KAFKA: dict[str, Any] = _resource(
    "Kafka",
    {
        "type": "object",
        "required": ["kafka"],
        "additionalProperties": False,
        "properties": {
            "kafka": {
                "type": "object",
                "required": ["listeners"],
                "additionalProperties": False,
                "properties": {
                    "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
                    "metadataVersion": {"type": "string", "pattern": r"^\d+\.\d+-IV\d+$"},
                    "listeners": {"type": "array", "minItems": 1, "items": _LISTENER},
                    "config": _CONFIG,
                    "authorization": {"type": "object"},
                    "rack": {"type": "object"},
                    "template": _POD_TEMPLATE,
                },
            },
            "entityOperator": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "topicOperator": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "resources": _RESOURCES,
                            "watchedNamespace": {"type": "string"},
                            "reconciliationIntervalMs": {"type": "integer"},
                        },
                    },
                    "userOperator": {"type": "object"},
                    "template": _ENTITY_OPERATOR_TEMPLATE,
                },
            },
        },
    },
)
# KRaft with node pools is the only mode of current Strimzi releases: say so explicitly.
KAFKA["properties"]["metadata"] = {
    **_METADATA,
    "required": ["name", "annotations"],
    "properties": {
        **_METADATA["properties"],
        "annotations": {
            "type": "object",
            "required": ["strimzi.io/kraft", "strimzi.io/node-pools"],
            "properties": {
                "strimzi.io/kraft": {"const": "enabled"},
                "strimzi.io/node-pools": {"const": "enabled"},
            },
            "additionalProperties": {"type": "string"},
        },
    },
}

KAFKA_NODE_POOL: dict[str, Any] = _resource(
    "KafkaNodePool",
    {
        "type": "object",
        "required": ["replicas", "roles", "storage"],
        "additionalProperties": False,
        "properties": {
            "replicas": {"type": "integer", "minimum": 0},
            "roles": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"enum": ["controller", "broker"]},
            },
            "storage": {
                "type": "object",
                "required": ["type"],
                "additionalProperties": False,
                "properties": {
                    "type": {"enum": ["ephemeral", "persistent-claim", "jbod"]},
                    "volumes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type"],
                            "additionalProperties": False,
                            "properties": {
                                "id": {"type": "integer", "minimum": 0},
                                "type": {"enum": ["ephemeral", "persistent-claim"]},
                                "size": {"type": "string", "pattern": r"^\d+(Ki|Mi|Gi|Ti)$"},
                                "class": {"type": "string"},
                                "deleteClaim": {"type": "boolean"},
                                "kraftMetadata": {"enum": ["shared"]},
                            },
                        },
                    },
                },
            },
            "resources": _RESOURCES,
            "jvmOptions": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "-Xms": {"type": "string", "pattern": "^[0-9]+[mMgG]?$"},
                    "-Xmx": {"type": "string", "pattern": "^[0-9]+[mMgG]?$"},
                },
            },
            "template": _POD_TEMPLATE,
        },
    },
)
KAFKA_NODE_POOL["properties"]["metadata"] = {
    **_METADATA,
    "required": ["name", "labels"],
    "properties": {
        **_METADATA["properties"],
        "labels": {**_STRING_MAP, "required": ["strimzi.io/cluster"]},
    },
}

KAFKA_TOPIC: dict[str, Any] = _resource(
    "KafkaTopic",
    {
        "type": "object",
        "required": ["partitions", "replicas"],
        "additionalProperties": False,
        "properties": {
            "topicName": {"type": "string", "pattern": r"^[a-zA-Z0-9._-]{1,249}$"},
            "partitions": {"type": "integer", "minimum": 1},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
            "config": _CONFIG,
        },
    },
)
KAFKA_TOPIC["properties"]["metadata"] = {
    **_METADATA,
    "required": ["name", "labels"],
    "properties": {
        **_METADATA["properties"],
        "labels": {**_STRING_MAP, "required": ["strimzi.io/cluster"]},
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Kafka": KAFKA,
    "KafkaNodePool": KAFKA_NODE_POOL,
    "KafkaTopic": KAFKA_TOPIC,
}
