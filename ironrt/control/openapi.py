"""`/v1/openapi.json`, generated from the route table and the protocol Structs.

Schemas come from msgspec, so they are exactly what the daemon accepts and returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ironrt.protocol import ErrorResponse

if TYPE_CHECKING:
    from ironrt.control.http import Router


def openapi_document(router: Router, version: str) -> bytes:
    types: list[Any] = [ErrorResponse]
    for route in router.routes:
        for t in (route.body, route.response):
            if t is not None and t not in types:
                types.append(t)
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    refs = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in router.routes:
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": f"{route.method.lower()}_{route.template.strip('/').replace('/', '_')}",
            "responses": {
                "default": {
                    "description": "Error",
                    "content": {"application/json": {"schema": refs[ErrorResponse]}},
                }
            },
        }
        params = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in route.pattern.groupindex
        ] + [
            {"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
            for q in route.query
        ]
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {"content": {"application/json": {"schema": refs[route.body]}}}
        ok: dict[str, Any] = {"description": "OK"}
        if route.response is not None:
            ok["content"] = {"application/json": {"schema": refs[route.response]}}
        op["responses"][
            "201" if route.method == "POST" and route.template == "/v1/agents" else "200"
        ] = ok
        paths.setdefault(route.template, {})[route.method.lower()] = op
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "ironrt control API", "version": version},
        "servers": [{"url": "http://ironrt"}],
        "paths": paths,
        "components": {"schemas": components},
    }
    return msgspec.json.encode(doc)
