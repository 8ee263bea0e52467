"""The export worker's OTLP trace requests, built with `opentelemetry-proto`'s message
classes and serialized by protobuf: the same message as the SDK's `encode_spans` (a test
decodes both and compares), at a fraction of its cost.

Why not `encode_spans` itself. In the worker (SDK 1.45, upb protobuf) it cost ~200 µs a
call span: every attribute a new `KeyValue` and `AnyValue` built through keyword
arguments, the resource and scope encoded again for every batch. Here call spans fill
their own message (`otel_spans.CallSpan.to_proto`: their repeated attributes merged from
a cached template), and the resource and scope messages are the SDK's own encoding of
them, made once and copied into each request. Every other span (run spans, one per agent
run; a call span with a trace state) is encoded by the SDK's `encode_spans`, one span at
a time: nothing is ever encoded differently, only faster.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from ironrt.observe.otel_spans import CallSpan

__all__ = ["FastSpanExporter", "encode_request", "sdk_request"]

log = logging.getLogger("ironrt.otel")

#: Resource and scope messages kept (by the identity of the SDK's objects): a worker has
#: one resource and one or two scope objects, so this is only a bound.
_CACHE_MAX = 64


class _Headers:
    """The `ResourceSpans` and `ScopeSpans` without their spans, as the SDK encodes them,
    keyed by the SDK objects they encode (kept alive here, so an id is never reused)."""

    def __init__(self) -> None:
        self._resources: dict[int, tuple[Any, ResourceSpans]] = {}
        self._scopes: dict[int, tuple[Any, ScopeSpans]] = {}

    def of(self, span: ReadableSpan) -> tuple[ResourceSpans, ScopeSpans]:
        resource, scope = span.resource, span.instrumentation_scope or None
        found_r = self._resources.get(id(resource))
        found_s = self._scopes.get(id(scope))
        if (
            found_r is None
            or found_r[0] is not resource
            or found_s is None
            or found_s[0] is not scope
        ):
            if len(self._resources) >= _CACHE_MAX or len(self._scopes) >= _CACHE_MAX:
                self._resources.clear()
                self._scopes.clear()
            # The SDK's encoding of the span (once per resource and scope) gives its headers.
            rs = encode_spans([span]).resource_spans[0]
            ss = ScopeSpans()
            ss.CopyFrom(rs.scope_spans[0])
            del ss.spans[:]
            del rs.scope_spans[:]
            found_r = self._resources[id(resource)] = (resource, rs)
            found_s = self._scopes[id(scope)] = (scope, ss)
        return found_r[1], found_s[1]


_HEADERS = _Headers()


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized `ExportTraceServiceRequest` of `spans` (the worker's thread that
    exports is the only caller). Spans are grouped as the SDK groups them: by resource,
    then by scope, in the order first seen, by equality (the tracer's scope object and
    the worker's are equal: one group), compared once per distinct object here."""
    request = ExportTraceServiceRequest()
    canonical: dict[int, Any] = {}
    kept: list[Any] = []

    def same(obj: Any) -> Any:
        found = canonical.get(id(obj))
        if found is None:
            found = next((k for k in kept if k == obj), obj)
            if found is obj:
                kept.append(obj)
            canonical[id(obj)] = found
        return found

    groups: dict[int, tuple[ResourceSpans, dict[int, ScopeSpans]]] = {}
    for span in spans:
        resource = same(span.resource)
        scope = same(span.instrumentation_scope or None)
        group = groups.get(id(resource))
        if group is None:
            rs = request.resource_spans.add()
            rs.CopyFrom(_HEADERS.of(span)[0])
            group = groups[id(resource)] = (rs, {})
        ss = group[1].get(id(scope))
        if ss is None:
            ss = group[0].scope_spans.add()
            ss.CopyFrom(_HEADERS.of(span)[1])
            group[1][id(scope)] = ss
        if isinstance(span, CallSpan) and span.encodable:
            span.to_proto(ss.spans.add())
        else:
            ss.spans.add().CopyFrom(encode_spans([span]).resource_spans[0].scope_spans[0].spans[0])
    data: bytes = request.SerializeToString()
    return data


class FastSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter (endpoint, headers, TLS, compression, timeout,
    retries: all its own), encoding with `encode_request`. An SDK whose exporter has no
    `_client` to send bytes through (the private seam this relies on), or a batch with no
    call span in it, goes through the SDK's own `export` unchanged."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        client = getattr(self, "_client", None)
        if (
            client is None
            or getattr(self, "_shutdown", False)
            or not any(isinstance(s, CallSpan) for s in spans)
        ):
            return super().export(spans)
        try:
            data = encode_request(spans)
        except Exception as exc:  # as the SDK does: a batch that cannot be encoded is lost
            log.error("Failed to encode span batch: %s", exc)
            return SpanExportResult.FAILURE
        limit = getattr(self, "_max_request_size", 0)
        if limit and limit > 0 and len(data) > limit:
            log.warning("Dropping span batch: %d bytes exceeds %d", len(data), limit)
            return SpanExportResult.FAILURE
        result = client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE


def sdk_request(spans: Sequence[ReadableSpan]) -> bytes:
    """The SDK's encoding of the same request (what tests compare `encode_request` with)."""
    return bytes(encode_spans(spans).SerializePartialToString())
