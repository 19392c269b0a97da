"""The OpenAPI 3.1 document of the admin API, built from the same `Endpoint` declarations."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

from adapters.admin.http import Endpoint
from adapters.admin.schemas import ErrorOut

_CONVERTER = re.compile(r"\{(\w+):\w+\}")
_ERRORS = {
    "400": "The body is not JSON.",
    "401": "No key, or an unknown, revoked, expired or retired one.",
    "403": "The key's role may not do this (or it is a data-plane key).",
    "404": "No such object.",
    "409": "A duplicate name, a revoked key, or a concurrent change.",
    "422": "Unknown fields, wrong types or invalid values; nothing was changed.",
    "429": "Too many failed authentications from this address (see Retry-After).",
}


def openapi_document(endpoints: Sequence[Endpoint], *, version: str) -> dict[str, Any]:
    """The document: one operation per endpoint, schemas under `components`."""
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        path = _CONVERTER.sub(r"{\1}", e.path)
        paths.setdefault(path, {})[e.method.lower()] = _operation(e, path, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "agentgw admin API",
            "version": version,
            "description": "Keys, organization, audit and model routing. Authenticate with an "
            "admin-role key (admin, security, finance or team-owner) as "
            "`Authorization: Bearer <key>`; "
            "data-plane keys (role user) are refused here.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }


def _operation(e: Endpoint, path: str, schemas: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    parameters += [
        {"name": q.name, "in": "query", "description": q.description, "schema": {"type": q.type}}
        for q in e.query
    ]
    if e.exportable:
        parameters.append({"name": "format", "in": "query", "schema": {"enum": ["json", "csv"]}})
    ok: dict[str, Any] = {"description": e.summary}
    if e.response is not None:
        ok["content"] = {"application/json": {"schema": _ref(e.response, schemas, "serialization")}}
        if e.exportable:
            ok["content"]["text/csv"] = {"schema": {"type": "string"}}
    error = {"application/json": {"schema": _ref(ErrorOut, schemas, "serialization")}}
    responses = {str(e.status): ok}
    responses.update({code: {"description": d, "content": error} for code, d in _ERRORS.items()})
    op: dict[str, Any] = {
        "summary": e.summary,
        "description": f"Roles: {e.roles}.",
        "operationId": f"{e.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}",
        "tags": list(e.tags),
        "parameters": parameters,
        "responses": responses,
        "security": [] if e.public else [{"bearer": []}, {"apiKey": []}],
    }
    if e.body is not None:
        schema = _ref(e.body, schemas, "validation")
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return op


def _ref(
    model: type[BaseModel],
    schemas: dict[str, Any],
    mode: Literal["validation", "serialization"],
) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}
