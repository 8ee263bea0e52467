"""A call's span in the export worker: its attributes (the GenAI conventions, defined
here once), and `CallSpan`, the `ReadableSpan` the worker hands the batch processor,
which can also fill its own OTLP `Span` message (`opentelemetry-proto`'s class).

Why it fills its own message. The SDK's encoder builds a call span's ~20 attributes
one protobuf object at a time, through keyword arguments: ~200 µs a span in the worker.
Most of them repeat from call to call (the operation, provider, models and server of an
upstream, the agent, the status), so those come first in a call span's attributes and
are built once per distinct set, as a template `Span` message merged into the new one
(one `MergeFrom`); only the numbers (tokens, cost, times) are new messages per span. No
attribute dict is built unless something asks for `attributes` (the SDK's encoder, the
tracer path). A test holds the two to the same message: `call_attributes` through the
SDK's encoder, `CallSpan.to_proto` here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import SpanFlags
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from ironrt.observe.otel_records import CallRecord

__all__ = ["CallSpan", "call_attributes"]

#: Templates kept at once (a bound on distinct upstream x agent x status sets), cleared
#: when there are more.
_CACHE_MAX = 4096
_TEMPLATES: dict[tuple[Any, ...], PbSpan] = {}
_HAS_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


def _shared(r: CallRecord, operation: str) -> list[tuple[str, Any]]:
    """The attributes one upstream's calls by one agent with one outcome share."""
    attrs: list[tuple[str, Any]] = [
        ("gen_ai.operation.name", operation),
        ("gen_ai.provider.name", r.provider),
        ("gen_ai.request.model", r.request_model),
    ]
    if r.response_model:
        attrs.append(("gen_ai.response.model", r.response_model))
    if r.server_address:
        attrs.append(("server.address", r.server_address))
        if r.server_port:
            attrs.append(("server.port", r.server_port))
    attrs.append(("gen_ai.request.stream", r.stream))
    attrs.append(("ironrt.agent.id", r.agent_id))
    attrs.append(("ironrt.agent.name", r.agent_name))
    known: tuple[tuple[str, Any], ...] = (
        ("ironrt.project", r.project),
        ("http.response.status_code", r.status_code or None),
        ("ironrt.refusal", r.refusal),
        ("error.type", r.error_type),
    )
    attrs.extend((name, value) for name, value in known if value is not None)
    return attrs


def _usage(r: CallRecord) -> list[tuple[str, Any]]:
    """The attributes that change from call to call (the numbers, the content)."""
    attrs: list[tuple[str, Any]] = []
    if r.has_usage:
        attrs += (
            ("gen_ai.usage.input_tokens", r.input_tokens),
            ("gen_ai.usage.output_tokens", r.output_tokens),
            ("gen_ai.usage.cache_read.input_tokens", r.cached_tokens),
            ("gen_ai.usage.cache_creation.input_tokens", r.cache_write_tokens),
            ("gen_ai.usage.reasoning.output_tokens", r.reasoning_tokens),
        )
    if r.ttfb_s is not None and r.stream:
        attrs.append(("gen_ai.response.time_to_first_chunk", r.ttfb_s))
    known: tuple[tuple[str, Any], ...] = (
        ("ironrt.cost_usd", r.cost_usd),
        ("ironrt.overhead_ms", r.overhead_ms),
        ("gen_ai.input.messages", r.input_messages),
        ("gen_ai.system_instructions", r.system_instructions),
        ("gen_ai.output.messages", r.output_messages),
    )
    attrs.extend((name, value) for name, value in known if value is not None)
    return attrs


def call_attributes(r: CallRecord, operation: str) -> dict[str, Any]:
    """The call span's attributes, in their order (the GenAI semantic conventions):
    what repeats from call to call first, then what is the call's own."""
    return dict(_shared(r, operation) + _usage(r))


def _any_value(value: Any) -> AnyValue:
    """One attribute value, of the types a call span has, in the SDK encoder's order of
    type checks (a bool is an int too)."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    raise TypeError(f"a call span attribute of type {type(value).__name__}")


def _template(r: CallRecord, operation: str, name: str) -> PbSpan:
    """The span's name, kind, shared attributes, an empty status (the SDK's encoder
    always sets one) and the flags of a local parent, built once per distinct set."""
    key = (
        operation,
        name,
        r.provider,
        r.request_model,
        r.response_model,
        r.server_address,
        r.server_port,
        r.stream,
        r.agent_id,
        r.agent_name,
        r.project,
        r.status_code,
        r.refusal,
        r.error_type,
    )
    found = _TEMPLATES.get(key)
    if found is None:
        if len(_TEMPLATES) >= _CACHE_MAX:
            _TEMPLATES.clear()
        found = _TEMPLATES[key] = PbSpan(
            name=name,
            kind=PbSpan.SPAN_KIND_CLIENT,
            attributes=[KeyValue(key=k, value=_any_value(v)) for k, v in _shared(r, operation)],
            status=PbStatus(),
            flags=_HAS_IS_REMOTE,
        )
    return found


class CallSpan(ReadableSpan):
    """A call's ended span, made from its record (kind CLIENT). `attributes` are built
    when asked for; `to_proto` fills the OTLP `Span` message the SDK's encoder would make
    (`encodable` says when it can: no trace state to carry)."""

    def __init__(
        self,
        record: CallRecord,
        operation: str,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        status: Status,
        resource: Resource,
        scope: InstrumentationScope,
    ) -> None:
        super().__init__(
            name=name,
            context=context,
            parent=parent,
            resource=resource,
            kind=SpanKind.CLIENT,
            status=status,
            start_time=record.start_ns,
            end_time=record.end_ns,
            instrumentation_scope=scope,
        )
        self.record = record
        self.operation = operation
        self.encodable = not context.trace_state

    @property
    def attributes(self) -> Mapping[str, Any]:
        return MappingProxyType(call_attributes(self.record, self.operation))

    def to_proto(self, out: PbSpan) -> None:
        """Fill `out`, a new `Span` message (`ScopeSpans.spans.add()`)."""
        ctx = self.context
        assert ctx is not None
        parent = self.parent
        r = self.record
        out.MergeFrom(_template(r, self.operation, self.name))
        out.trace_id = ctx.trace_id.to_bytes(16, "big")
        out.span_id = ctx.span_id.to_bytes(8, "big")
        if parent is not None:
            out.parent_span_id = parent.span_id.to_bytes(8, "big")
        out.start_time_unix_nano = r.start_ns
        out.end_time_unix_nano = r.end_ns
        attrs = out.attributes
        for key, value in _usage(r):
            kv = attrs.add()
            kv.key = key
            kind = value.__class__
            if kind is int:
                kv.value.int_value = value
            elif kind is float:
                kv.value.double_value = value
            else:
                kv.value.CopyFrom(_any_value(value))
        status = self.status
        if status.status_code is not StatusCode.UNSET:
            out.status.code = status.status_code.value
        if status.description:
            out.status.message = status.description
        if parent is not None and parent.is_remote:
            out.flags = _HAS_IS_REMOTE | _IS_REMOTE
