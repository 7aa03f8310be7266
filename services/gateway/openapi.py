"""An OpenAPI 3.1 description of the gateway's `/fhir` routes, for clients and fuzzers.

The `/fhir` door is plain ASGI (fhir_facade.py), so FastAPI cannot describe it from routes; this
module writes the description from the same tables the code routes and searches by: the
ownership table (the types) and the search parameter table (each type's search parameters).
"""

from __future__ import annotations

from typing import Any

from shared.fhir.ownership import OWNER_OF
from shared.fhir.search_params import params_for

FHIR_JSON = "application/fhir+json"
_ID = {"type": "string", "pattern": "^[A-Za-z0-9\\-\\.]{1,64}$"}
#: Result and common parameters every search takes (R4 search.html#all, #return).
_COMMON_SEARCH = (
    ("_id", {"type": "string"}),
    ("_lastUpdated", {"type": "string"}),
    ("_count", {"type": "integer"}),
    ("_sort", {"type": "string"}),
    ("_include", {"type": "string"}),
    ("_revinclude", {"type": "string"}),
    ("_summary", {"type": "string", "enum": ["true", "false", "count", "text", "data"]}),
    ("_elements", {"type": "string"}),
    ("_total", {"type": "string", "enum": ["none", "estimate", "accurate"]}),
    ("_format", {"type": "string"}),
)


def _json(schema: dict[str, Any], media: str = FHIR_JSON) -> dict[str, Any]:
    return {"content": {media: {"schema": schema}}}


_OUTCOME = {"description": "OperationOutcome", **_json({"$ref": "#/components/schemas/OperationOutcome"})}


def _responses(ok: str, description: str) -> dict[str, Any]:
    return {
        ok: {"description": description, **_json({"$ref": "#/components/schemas/Resource"})},
        "default": _OUTCOME,
    }


def _resource_body(rtype: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "enum": [rtype]}, "id": _ID},
        "additionalProperties": True,
    }
    return {"required": True, **_json(schema)}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _ID}


def _search_parameters(rtype: str) -> list[dict[str, Any]]:
    own = [(p.name, {"type": "string"}) for p in params_for(rtype)]
    return [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in (*_COMMON_SEARCH, *own)
    ]


def _operation(operation_id: str, rtype: str, ok: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"operationId": operation_id, "tags": [rtype], **extra, "responses": _responses(ok, description)}


def _type_paths(rtype: str) -> dict[str, Any]:
    """Type-level interactions: search (GET and POST _search), create, type history.
    Conditional update and delete are served too but not described, so a fuzzer does not
    rewrite or delete whatever its criteria happen to match."""
    op = f"{rtype[0].lower()}{rtype[1:]}"
    form = {"type": "object", "properties": {p["name"]: p["schema"] for p in _search_parameters(rtype)}}
    history_params = [
        {"name": "_count", "in": "query", "schema": {"type": "integer"}},
        {"name": "_since", "in": "query", "schema": {"type": "string"}},
    ]
    return {
        f"/fhir/{rtype}": {
            "get": _operation(
                f"search_{op}", rtype, "200", "searchset Bundle", parameters=_search_parameters(rtype)
            ),
            "post": _operation(
                f"create_{op}", rtype, "201", f"the created {rtype}", requestBody=_resource_body(rtype)
            ),
        },
        f"/fhir/{rtype}/_search": {
            "post": _operation(
                f"search_{op}_post",
                rtype,
                "200",
                "searchset Bundle",
                requestBody={"required": False, **_json(form, "application/x-www-form-urlencoded")},
            )
        },
        f"/fhir/{rtype}/_history": {
            "get": _operation(f"history_{op}", rtype, "200", "history Bundle", parameters=history_params)
        },
    }


def _instance_paths(rtype: str) -> dict[str, Any]:
    """Instance-level interactions: read, update, patch, delete, history, vread."""
    op = f"{rtype[0].lower()}{rtype[1:]}"
    patch_body = {"type": "array", "items": {"type": "object"}}
    version = {"name": "vid", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        f"/fhir/{rtype}/{{id}}": {
            "parameters": [_path_param("id")],
            "get": _operation(f"read_{op}", rtype, "200", rtype),
            "put": _operation(
                f"update_{op}", rtype, "200", f"the updated {rtype}", requestBody=_resource_body(rtype)
            ),
            "patch": _operation(
                f"patch_{op}",
                rtype,
                "200",
                f"the patched {rtype}",
                requestBody={"required": True, **_json(patch_body, "application/json-patch+json")},
            ),
            "delete": _operation(f"delete_{op}", rtype, "200", "deleted"),
        },
        f"/fhir/{rtype}/{{id}}/_history": {
            "parameters": [_path_param("id")],
            "get": _operation(f"history_{op}_instance", rtype, "200", "history Bundle"),
        },
        f"/fhir/{rtype}/{{id}}/_history/{{vid}}": {
            "parameters": [_path_param("id"), version],
            "get": _operation(f"vread_{op}", rtype, "200", rtype),
        },
    }


def _system_paths() -> dict[str, Any]:
    bundle = {
        "type": "object",
        "required": ["resourceType", "type"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["Bundle"]},
            "type": {"type": "string", "enum": ["batch", "transaction"]},
            "entry": {"type": "array", "items": {"type": "object"}},
        },
    }
    return {
        "/fhir": {
            "post": {
                "operationId": "batch_or_transaction",
                "summary": "A batch (may span services) or a transaction (within one service)",
                "tags": ["system"],
                "requestBody": {"required": True, **_json(bundle)},
                "responses": _responses("200", "batch-response or transaction-response Bundle"),
            }
        },
        "/fhir/metadata": {
            "get": {
                "operationId": "capabilities",
                "summary": "The CapabilityStatement (public)",
                "tags": ["system"],
                "security": [],
                "responses": _responses("200", "CapabilityStatement"),
            }
        },
        "/fhir/Patient/{id}/$everything": {
            "parameters": [_path_param("id")],
            "get": {
                "operationId": "patient_everything",
                "summary": "Everything in a patient's compartment, from every service",
                "tags": ["Patient"],
                "parameters": [
                    {"name": "_type", "in": "query", "schema": {"type": "string"}},
                    {"name": "_since", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": _responses("200", "searchset Bundle"),
            },
        },
    }


def fhir_openapi_paths() -> dict[str, Any]:
    paths = _system_paths()
    for rtype in sorted(OWNER_OF):
        paths.update(_type_paths(rtype))
        paths.update(_instance_paths(rtype))
    return paths


def add_fhir_routes(schema: dict[str, Any]) -> dict[str, Any]:
    """The app's own OpenAPI document with the `/fhir` routes and bearer authentication added."""
    schema.setdefault("paths", {}).update(fhir_openapi_paths())
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "SMART App Launch v2 scopes, e.g. system/*.cruds, user/CarePlan.rs, patient/*.rs",
    }
    schemas = components.setdefault("schemas", {})
    schemas["Resource"] = {"type": "object", "properties": {"resourceType": {"type": "string"}}}
    schemas["OperationOutcome"] = {
        "type": "object",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
            "issue": {"type": "array"},
        },
    }
    schema["security"] = [{"bearerAuth": []}]
    return schema
