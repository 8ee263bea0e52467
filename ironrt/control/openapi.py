"""`/v1/openapi.json`, generated from the table of calls (`ironrt.calls`) and the protocol
Structs.

Schemas come from msgspec, so they are exactly what the daemon accepts and returns; the
paths, query parameters (types, defaults, ranges), statuses and media types come from the
same declarations the daemon routes by and the clients build requests from. The control
API's fuzzer (tests/control/test_fuzz_control.py) sends what this document describes and
refuses any answer it does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ironrt.calls import PATH_PARAMS, Operation, Query
from ironrt.protocol import ErrorResponse

_TEXT: dict[str, Any] = {"text/plain": {"schema": {"type": "string"}}}
_NDJSON_ITEM = "One {name} per line (follow=true)"
_SSE_ITEM = (
    "Server-Sent Events (with `Accept: text/event-stream`): one frame per {name}, `id:` its "
    "sequence number, `event:` its kind, `data:` its JSON; the `Last-Event-ID` header "
    "resumes after that id; `: keepalive` comments while quiet"
)

_ERRORS = (
    "Every error (4xx, and 5xx: 500 internal, 507 storage_error) has this body; `code` is "
    "stable and `field` names the input at fault (the table of codes: docs/api.md)"
)


def openapi_document(table: Sequence[Operation[Any]], version: str) -> bytes:
    types: list[Any] = [ErrorResponse]
    for call in table:
        for t in (call.body, _json_answer(call)):
            if t is not None and t not in types:
                types.append(t)
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    refs = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for call in table:
        op: dict[str, Any] = {
            "summary": call.summary,
            "operationId": f"{call.method.lower()}_{call.path.strip('/').replace('/', '_')}",
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
                "description": PATH_PARAMS.get(p, ""),
                "schema": {"type": "string", "minLength": 1},
            }
            for p in call.path_params
        ] + [
            {
                "name": q.name,
                "in": "query",
                "required": False,
                # An empty value is the same as none for a flag and a text; a number or
                # a choice refuses it (400), as it refuses any value that is not one.
                "allowEmptyValue": True,
                "schema": query_schema(q),
            }
            for q in call.query
        ]
        if params:
            op["parameters"] = params
        if call.body is not None:
            op["requestBody"] = {
                # An empty body reads as `{}`: it is refused only if a field is required.
                "required": _has_required_field(call.body),
                "content": {"application/json": {"schema": refs[call.body]}},
            }
        op["responses"][str(call.status)] = {"description": "OK", "content": _content(call, refs)}
        paths.setdefault(call.path, {})[call.method.lower()] = op
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "ironrt control API", "version": version},
        "servers": [{"url": "http://ironrt"}],
        "paths": paths,
        "components": {"schemas": components},
    }
    return msgspec.json.encode(doc)


def query_schema(q: Query) -> dict[str, Any]:
    """The JSON schema of a query parameter's value, as `Request` reads it."""
    schema: dict[str, Any]
    if q.type == "flag":
        schema = {"type": "boolean"}
    elif q.type == "number":
        schema = {"type": "number", "minimum": q.minimum, "maximum": q.maximum}
    elif q.type == "choice":
        schema = {"enum": list(q.choices)}
    else:
        schema = {"type": "string"}
    if q.default is not None:
        schema["default"] = q.default
    return schema


def _json_answer(call: Operation[Any]) -> type[Any] | None:
    """The Struct a JSON answer is described by (None: text, or a free-form document)."""
    if call.answer is str or call.answer is dict:
        return None
    return call.answer


def _content(call: Operation[Any], refs: dict[Any, Any]) -> dict[str, Any]:
    if call.answer is str:
        return _TEXT  # text as written (with follow=true: streamed on, text still)
    answer = _json_answer(call)
    content: dict[str, Any] = {"application/json": {"schema": refs.get(answer, {})}}
    if call.stream == "ndjson":
        item = call.stream_item.__name__ if call.stream_item is not None else "JSON document"
        content["application/x-ndjson"] = {
            "schema": {"description": _NDJSON_ITEM.format(name=item)}
        }
    if call.sse:
        item = call.stream_item.__name__ if call.stream_item is not None else "JSON document"
        content["text/event-stream"] = {"schema": {"description": _SSE_ITEM.format(name=item)}}
    return content


def _has_required_field(struct: type) -> bool:
    info = msgspec.inspect.type_info(struct)
    return isinstance(info, msgspec.inspect.StructType) and any(f.required for f in info.fields)
