"""The OpenAPI document at /openapi.json, made exact enough for client generators.

FastAPI builds it from the routes; this module adds what it cannot see or states loosely:

- the contacts and conversions POST bodies, parsed by hand (one object or a list), are published
  as schemas;
- the routes of `CurrentUser` (one dependency, app.deps.Caller) list the two schemes it accepts,
  a JWT and an API key;
- every operation that signs in or authenticates (and so reads the database) documents the
  503 it answers when the database is down;
- an optional body (`PixelCreate | None = None`) is a plain `$ref` with `required: false`,
  not `anyOf: [$ref, null]` (which generators cannot express as "send no body");
- integer bounds stay integers: FastAPI's OpenAPI models store `minimum`/`maximum` as floats,
  which turned the id bound 2**63 - 1 into 9.223372036854776e+18.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.utils import get_openapi

from app.deps import CALLER_SCHEME, api_key_scheme, oauth2_scheme
from app.models.base import MAX_ID
from app.schemas.common import error_responses
from app.schemas.contact import ContactCreate
from app.schemas.conversions_api import ConversionBatch, ConversionPost

_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_METHODS = ("get", "head", "post", "put", "patch", "delete")


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ContactCreate, ConversionPost, ConversionBatch):  # bodies parsed by hand
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    _publish_caller_schemes(schema)
    _document_database_errors(schema)
    for path in schema.get("paths", {}).values():
        for method in _METHODS:
            if method in path:
                _plain_optional_body(path[method])
    _integer_bounds(schema)
    app.openapi_schema = schema
    return schema


def _publish_caller_schemes(schema: dict[str, Any]) -> None:
    """Routes of `CurrentUser` accept a JWT or an API key in the one bearer header, read by one
    dependency (app.deps.Caller): published as the two schemes, either of which satisfies the route
    (so /docs offers both, and client generators see how to send each)."""
    schemes = schema.get("components", {}).get("securitySchemes", {})
    if schemes.pop(CALLER_SCHEME, None) is None:
        return
    for scheme in (oauth2_scheme, api_key_scheme):
        schemes[scheme.scheme_name] = jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)
    alternatives: list[dict[str, list[str]]] = [{scheme.scheme_name: []} for scheme in (oauth2_scheme, api_key_scheme)]
    for path in schema.get("paths", {}).values():
        for method in _METHODS:
            operation = path.get(method)
            if operation is not None and {CALLER_SCHEME: []} in operation.get("security", []):
                operation["security"] = [entry for entry in operation["security"] if entry != {CALLER_SCHEME: []}]
                operation["security"] += alternatives


def _document_database_errors(schema: dict[str, Any]) -> None:
    """Signing in and every authenticated call read the user from the database: when it is down
    they answer 503 (app.errors)."""
    unavailable = _openapi_response(error_responses(503)[503])
    for path in schema.get("paths", {}).values():
        for method in _METHODS:
            operation = path.get(method)
            if operation is not None and ("security" in operation or "401" in operation["responses"]):
                operation["responses"].setdefault("503", unavailable)


def _openapi_response(response: dict[str, Any]) -> dict[str, Any]:
    """A `responses=` entry (as given to FastAPI) in OpenAPI form: the error model as a $ref."""
    content = {
        "schema": {"$ref": "#/components/schemas/ErrorOut"},
        **response.get("content", {}).get("application/json", {}),
    }
    return {"description": response["description"], "content": {"application/json": content}}


def _plain_optional_body(operation: dict[str, Any]) -> None:
    body = operation.get("requestBody")
    if not body or body.get("required"):
        return
    for media in body.get("content", {}).values():
        options = media.get("schema", {}).get("anyOf", [])
        refs = [option for option in options if option.get("type") != "null"]
        if len(options) == 2 and len(refs) == 1:
            media["schema"] = refs[0]
    body["required"] = False


def _integer_bounds(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in _BOUNDS:
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    node[key] = MAX_ID if value == float(MAX_ID) else int(value)
        for child in node.values():
            _integer_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _integer_bounds(child)
