"""`/v1/openapi.json`, generated from the route table and the protocol Structs.

Schemas come from msgspec, so they are exactly what the daemon accepts and returns. What
the route table does not carry is stated here, next to the generator, and checked by the
control API's fuzzer (tests/control/test_fuzz_control.py), which sends what this document
describes and refuses any answer it does not: the query parameters' types and ranges (the
handlers read them with `Request.flag` and `Request.number`), the statuses other than 200
(201 on start, 202 on daemon stop), and the bodies that are not JSON (logs are text).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ironrt.protocol import ErrorResponse

if TYPE_CHECKING:
    from ironrt.control.http import Route, Router

#: Query parameters by name: each name means the same on every route that takes it. A flag
#: is `true`/`false` (also `1`/`0`, `yes`/`no`); a number outside its range is refused; an
#: empty value is the same as none (`allowEmptyValue`).
_FLAG: dict[str, Any] = {"type": "boolean"}
_QUERY: dict[str, dict[str, Any]] = {
    "metrics": _FLAG,
    "follow": _FLAG,
    "force": _FLAG,
    "keep_agents": _FLAG,
    "timeout": {"type": "number", "minimum": 0, "maximum": 3600},
    "tail": {"type": "number", "minimum": 0, "maximum": 1_000_000},
    "since": {"type": "number", "minimum": 0, "maximum": 2**62},
    "limit": {"type": "number", "minimum": 1, "maximum": 10_000},
    "by": {"enum": ["agent", "provider", "model"]},
    "agent": {"type": "string"},
}

_PATH_PARAMS: dict[str, str] = {
    "ref": "An agent id, a unique id prefix, or a name (live agents first)",
    "scope": "`global`, `project:NAME`, `agent:REF` or a bare agent REF, URL-quoted",
}

#: Answers that are not a 200, and answers that are not one JSON document.
_STATUS: dict[tuple[str, str], str] = {
    ("POST", "/v1/agents"): "201",
    ("POST", "/v1/daemon/stop"): "202",
}
_STOPPING: dict[str, Any] = {
    "type": "object",
    "properties": {"stopping": {"type": "boolean"}, "keep_agents": {"type": "boolean"}},
    "required": ["stopping", "keep_agents"],
}
_TEXT: dict[str, Any] = {"text/plain": {"schema": {"type": "string"}}}
_NDJSON: dict[str, Any] = {
    "application/x-ndjson": {"schema": {"description": "One Event per line (follow=true)"}}
}

_ERRORS = (
    "Every error (4xx, and 5xx: 500 internal, 507 storage_error) has this body; `code` is "
    "stable and `field` names the input at fault (the table of codes: docs/api.md)"
)


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
                    "description": _ERRORS,
                    "content": {"application/json": {"schema": refs[ErrorResponse]}},
                }
            },
        }
        params = [
            {
                "name": p,
                "in": "path",
                "required": True,
                "description": _PATH_PARAMS.get(p, ""),
                "schema": {"type": "string", "minLength": 1},
            }
            for p in route.pattern.groupindex
        ] + [
            {
                "name": q,
                "in": "query",
                "required": False,
                "allowEmptyValue": True,
                "schema": _QUERY.get(q, {}),
            }
            for q in route.query
        ]
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {
                # An empty body reads as `{}`: it is refused only if a field is required.
                "required": _has_required_field(route.body),
                "content": {"application/json": {"schema": refs[route.body]}},
            }
        status = _STATUS.get((route.method, route.template), "200")
        op["responses"][status] = {"description": "OK", "content": _content(route, refs)}
        paths.setdefault(route.template, {})[route.method.lower()] = op
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "ironrt control API", "version": version},
        "servers": [{"url": "http://ironrt"}],
        "paths": paths,
        "components": {"schemas": components},
    }
    return msgspec.json.encode(doc)


def _content(route: Route, refs: dict[Any, Any]) -> dict[str, Any]:
    if route.template == "/v1/agents/{ref}/logs":
        return _TEXT  # the log as written, streamed on with follow=true
    if route.template == "/v1/daemon/stop":
        return {"application/json": {"schema": _STOPPING}}
    content: dict[str, Any] = {"application/json": {"schema": refs.get(route.response, {})}}
    if "follow" in route.query:
        content.update(_NDJSON)
    return content


def _has_required_field(struct: type) -> bool:
    info = msgspec.inspect.type_info(struct)
    return isinstance(info, msgspec.inspect.StructType) and any(f.required for f in info.fields)
