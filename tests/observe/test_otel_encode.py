"""The export worker's fast paths against the SDK's own: call spans built directly and
encoded with `opentelemetry-proto`'s messages must be what the tracer and the SDK's
encoder make, and the metrics must leave as the SDK's MeterProvider aggregated them. No
daemon: these are the worker's parts in-process, sending to a local OTLP/HTTP receiver
(test_otel.py runs them end to end through a real daemon)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags, TraceState

from ironrt.observe import otel_worker
from ironrt.observe.otel_encode import FastSpanExporter, encode_request, sdk_request
from ironrt.observe.otel_metrics import DURATION_BUCKETS, TOKEN_BUCKETS
from ironrt.observe.otel_records import CallRecord, RunRecord
from ironrt.observe.otel_spans import CallSpan

RUN = ("4f9c2b7e1a", 4242, 1_700_000_000.125)


def record(**changes: Any) -> CallRecord:
    base = CallRecord(
        agent_id=RUN[0],
        agent_name="writer",
        project=None,
        pid=RUN[1],
        run_started_s=RUN[2],
        provider="openai",
        endpoint="chat.completions",
        request_model="gpt-4o-mini",
        response_model="gpt-4o-mini-2024-07-18",
        stream=False,
        status_code=200,
        input_tokens=12,
        output_tokens=9,
        cached_tokens=3,
        cache_write_tokens=0,
        reasoning_tokens=0,
        has_usage=True,
        cost_usd=1.23e-5,
        start_ns=1_700_000_100_000_000_000,
        end_ns=1_700_000_100_003_250_000,
        ttfb_s=None,
        overhead_ms=0.81,
        refusal=None,
        error_type=None,
        error=None,
        server_address="127.0.0.1",
        server_port=8080,
    )
    return msgspec.structs.replace(base, **changes)


#: Every shape of call span the worker makes.
VARIANTS = [
    record(),
    record(stream=True, ttfb_s=0.0125, project="proj", endpoint="messages", provider="anthropic"),
    record(
        pid=None,
        run_started_s=None,
        has_usage=False,
        cost_usd=None,
        overhead_ms=None,
        refusal="budget_exhausted",
        error_type="budget_exhausted",
        status_code=402,
        response_model="",
        server_address=None,
        server_port=None,
    ),
    record(status_code=500, error_type="500", error="upstream said no " * 40),
    record(status_code=0, error_type="connect", error=None, input_tokens=-3, cost_usd=0.0),
    record(
        endpoint="embeddings",
        request_model="",
        server_port=None,
        input_messages='[{"role": "user", "parts": [{"type": "text", "content": "héllo ✓"}]}]',
        system_instructions='[{"type": "text", "content": "Be brief."}]',
        output_messages='[{"role": "assistant", "parts": [{"type": "text", "content": "'
        + "x" * 300
        + '"}]}]',
        input_tokens=2**40,
    ),
    record(endpoint="models", stream=True, ttfb_s=None),
]


class Keep(SpanExporter):
    """Keeps what the batch processor hands over (the OTLP exporter's place)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


class Collector:
    """An OTLP/HTTP receiver keeping the bodies it gets, by path."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with owner.lock:
                    owner.posts.append((self.path, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[bytes]:
        with self.lock:
            return [b for p, b in self.posts if p == path]

    def clear(self) -> None:
        with self.lock:
            self.posts.clear()


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()
    c.server.server_close()


def spans_of(exporter: otel_worker.Exporter, records: list[Any]) -> list[ReadableSpan]:
    keep = Keep()
    exporter.processor._batch_processor._exporter = keep  # the seam a test may use
    exporter.records(records)
    exporter.tracer_provider.force_flush()
    return keep.spans


def new_worker(collector: Collector) -> otel_worker.Exporter:
    return otel_worker.Exporter(collector.url)


def close(exporter: otel_worker.Exporter) -> None:
    exporter.tracer_provider.shutdown()
    exporter.metrics.provider.shutdown()


@pytest.fixture()
def worker(collector: Collector) -> Iterator[otel_worker.Exporter]:
    exporter = new_worker(collector)
    yield exporter
    close(exporter)


def normalized(data: bytes) -> ExportTraceServiceRequest:
    """What must match between two exporters: all but the random ids and the resource's
    per-process instance id."""
    req = ExportTraceServiceRequest.FromString(data)
    for rs in req.resource_spans:
        keep = [kv for kv in rs.resource.attributes if kv.key != "service.instance.id"]
        del rs.resource.attributes[:]
        rs.resource.attributes.extend(keep)
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.span_id = b"span"
                if not span.parent_span_id:
                    span.trace_id = b"root"
    return req


def test_our_encoding_is_the_sdks(worker: otel_worker.Exporter) -> None:
    run = RunRecord(*RUN, ended_s=RUN[2] + 60, name="writer", project="proj")
    spans = spans_of(worker, [*VARIANTS, run])
    assert len(spans) == len(VARIANTS) + 1
    assert sum(type(s).__name__ == "CallSpan" for s in spans) == len(VARIANTS)
    for span in spans:
        ours, sdk = encode_request([span]), sdk_request([span])
        assert ExportTraceServiceRequest.FromString(ours) == ExportTraceServiceRequest.FromString(
            sdk
        ), span.name
        assert ours == sdk, span.name  # and protobuf serializes equal messages alike
    # Twice: the second request is built from the cached resource, scope and templates.
    for _ in range(2):
        assert encode_request(spans) == sdk_request(spans)  # one resource, one scope group
    decoded = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert len(decoded.resource_spans) == 1 and len(decoded.resource_spans[0].scope_spans) == 1
    assert len(decoded.resource_spans[0].scope_spans[0].spans) == len(spans)


def test_direct_spans_are_the_tracers_spans(
    worker: otel_worker.Exporter, collector: Collector
) -> None:
    """The same records, once built directly, once through `tracer.start_span`."""
    assert (worker.direct_child, worker.direct_root) == (True, True)
    direct = spans_of(worker, list(VARIANTS))
    slow = new_worker(collector)
    try:
        slow.direct_child = slow.direct_root = False
        traced = spans_of(slow, list(VARIANTS))
    finally:
        close(slow)
    assert {type(s).__name__ for s in traced} == {"ReadableSpan"}
    assert normalized(sdk_request(direct)) == normalized(sdk_request(traced))
    assert normalized(encode_request(direct)) == normalized(sdk_request(traced))
    # The parent links: calls of a known run are children of its span, the rest roots.
    for span, rec in zip(direct, VARIANTS, strict=True):
        assert (span.parent is not None) == (rec.pid is not None)


def test_a_sampler_or_limit_the_direct_path_cannot_honour_keeps_the_tracer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, raw, expected in [
        ("OTEL_TRACES_SAMPLER", "always_off", (False, False)),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio", (True, False)),
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "5", (False, False)),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100", (False, False)),
    ]:
        with monkeypatch.context() as m:
            m.setenv(name, raw)
            provider = TracerProvider()
            assert otel_worker._direct(provider, provider.get_tracer("t")) == expected, name


def test_spans_it_does_not_build_are_the_sdks_own(
    worker: otel_worker.Exporter, collector: Collector
) -> None:
    """A span with an event, another resource, a call span carrying a trace state: the
    SDK's encoder makes them, in the SDK's groups; a batch with no call span goes
    through the SDK's `export` whole."""
    calls = spans_of(worker, VARIANTS[:2])
    other = TracerProvider(resource=Resource({"service.name": "t"}))
    event = other.get_tracer("t").start_span("with an event")
    event.add_event("retry", {"attempt": 2})
    event.end()
    plain = other.get_tracer("t").start_span("plain")
    plain.end()
    parent = SpanContext(
        1, 2, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("k", "v")])
    )
    context = SpanContext(1, 3, is_remote=False, trace_state=parent.trace_state)
    stated = CallSpan(
        VARIANTS[0],
        "chat",
        "chat gpt-4o-mini",
        context,
        parent,
        Status(StatusCode.ERROR, "no"),
        worker.resource,
        worker.scope,
    )
    assert not stated.encodable
    mixed = [calls[0], event, stated, plain, calls[1]]
    assert encode_request(mixed) == sdk_request(mixed)
    decoded = ExportTraceServiceRequest.FromString(encode_request(mixed))
    assert [
        [s.name for ss in rs.scope_spans for s in ss.spans] for rs in decoded.resource_spans
    ] == [
        [calls[0].name, "chat gpt-4o-mini", calls[1].name],
        ["with an event", "plain"],
    ]
    collector.clear()
    exporter = FastSpanExporter(endpoint=f"{collector.url}/v1/traces")
    assert exporter.export(mixed) == SpanExportResult.SUCCESS
    assert exporter.export([plain]) == SpanExportResult.SUCCESS  # the SDK's export
    bodies = collector.bodies("/v1/traces")
    assert bodies == [sdk_request(mixed), sdk_request([plain])]
    assert (
        ExportTraceServiceRequest.FromString(bodies[0])
        .resource_spans[1]
        .scope_spans[0]
        .spans[0]
        .events[0]
        .name
        == "retry"
    )


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def test_histograms_leave_as_the_sdk_aggregated_them(collector: Collector) -> None:
    """Every call's duration and tokens, per attribute set, at the receiver: counts, sums,
    buckets on the conventions' bounds, min and max; a negative count is refused (the
    SDK's rule for histograms)."""
    collector.clear()
    exporter = new_worker(collector)
    records = [*VARIANTS, *VARIANTS[:3]]
    try:
        spans_of(exporter, records)
        exporter.flush(5)
    finally:
        close(exporter)
    points: dict[str, dict[tuple[Any, ...], Any]] = {}
    for body in collector.bodies("/v1/metrics"):
        for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
            for sm in rm.scope_metrics:
                assert (sm.scope.name, sm.scope.version) == ("ironrt", exporter.scope.version)
                for m in sm.metrics:
                    for p in m.histogram.data_points:
                        attrs = tuple(sorted((kv.key, value(kv.value)) for kv in p.attributes))
                        points.setdefault(m.name, {})[attrs] = (m.unit, p)

    def expected(values: list[tuple[dict[str, Any], float]]) -> dict[tuple[Any, ...], Any]:
        out: dict[tuple[Any, ...], list[float]] = {}
        for attrs, v in values:
            if v >= 0:
                out.setdefault(tuple(sorted(attrs.items())), []).append(v)
        return out

    def common(r: CallRecord) -> dict[str, Any]:
        a: dict[str, Any] = {
            "gen_ai.operation.name": otel_worker.operation_name(r.endpoint),
            "gen_ai.provider.name": r.provider,
            "gen_ai.request.model": r.request_model,
        }
        a |= {"gen_ai.response.model": r.response_model} if r.response_model else {}
        a |= {"server.address": r.server_address} if r.server_address else {}
        a |= {"server.port": r.server_port} if r.server_address and r.server_port else {}
        a |= {"error.type": r.error_type} if r.error_type is not None else {}
        return a

    durations = expected([(common(r), (r.end_ns - r.start_ns) / 1e9) for r in records])
    tokens = expected(
        [
            (common(r) | {"gen_ai.token.type": kind}, n)
            for r in records
            if r.has_usage
            for kind, n in (("input", r.input_tokens), ("output", r.output_tokens))
        ]
    )
    assert any(r.input_tokens < 0 for r in records)  # the refused value is in the input
    for name, unit, bounds, want in [
        ("gen_ai.client.operation.duration", "s", DURATION_BUCKETS, durations),
        ("gen_ai.client.token.usage", "{token}", TOKEN_BUCKETS, tokens),
    ]:
        got = points[name]
        assert set(got) == set(want), name
        for attrs, values in want.items():
            got_unit, p = got[attrs]
            assert got_unit == unit
            assert p.count == len(values)
            assert p.sum == pytest.approx(sum(values))
            assert (p.min, p.max) == (pytest.approx(min(values)), pytest.approx(max(values)))
            assert list(p.explicit_bounds) == bounds
            buckets = [0] * (len(bounds) + 1)
            for v in values:
                buckets[sum(v > b for b in bounds)] += 1
            assert list(p.bucket_counts) == buckets, (name, attrs)
