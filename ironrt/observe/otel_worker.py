"""The OpenTelemetry export worker: a child process of the daemon that turns call and run
records (`otel_records`, read from its stdin) into OTLP/HTTP spans and GenAI metrics with
`opentelemetry-sdk`.

Why a process of its own. Measured in the daemon's process (SDK 1.45, a 2-CPU machine):
building a call's span cost ~56 µs, its three histogram records ~70 µs, and the OTLP
exporter's protobuf encoding ~100-250 µs a span, on the export thread but under the same
GIL as the router: about as much CPU as the router spends on the call itself, which would
have halved its throughput at concurrency 32. Here that work runs on another core; the
daemon only packs a record (a few µs) and writes a batch to a pipe.

Why not the SDK's usual path even here. The worker shares the machine's cores with the
router, so its CPU is still the router's loss when the machine is busy: through the
tracer, the MeterProvider and the SDK's encoder it cost ~300 µs a span (a third of the
router's own cost per call). Now call spans are built directly (`otel_spans.CallSpan`, the
span the tracer would make, proven by a test) and fill their own `opentelemetry-proto`
messages (`otel_encode`); the SDK keeps the batching, the OTLP/HTTP transport, the run
spans and the metrics (`otel_metrics`: its MeterProvider, whose three `record`s are now
most of a call's cost). `python bench/otel.py --worker` measures it.

Own providers (never the global ones), `service.name` = `ironrt` unless OTEL_SERVICE_NAME
or OTEL_RESOURCE_ATTRIBUTES say otherwise; the OTEL_* variables keep their SDK meaning
(headers, timeout, OTEL_BSP_* batching and queue bound, metric export interval). A dead
or slow collector only fills the bounded span queue (then spans are dropped, counted by
the SDK's warning): nothing here can reach the router. At the end of stdin (the daemon
stops, or died) the worker flushes for at most `--flush-s` seconds and leaves.

    python -m ironrt.observe.otel_worker [--endpoint URL] [--flush-s S] [--log FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import logging.handlers
import os
import signal
import sys
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from ironrt._version import __version__
from ironrt.observe.otel_encode import FastSpanExporter
from ironrt.observe.otel_metrics import CallMetrics
from ironrt.observe.otel_records import CallRecord, Record, RunRecord, read_frame, run_ids
from ironrt.observe.otel_spans import CallSpan, call_attributes

__all__ = ["Exporter", "main", "operation_name"]

#: ironrt endpoints -> `gen_ai.operation.name` (others keep their endpoint's name).
_OPERATIONS = {
    "chat.completions": "chat",
    "messages": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
}
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
#: The most attributes a call span has is ~21: span limits below this go the SDK's way.
_MOST_ATTRIBUTES = 64


def operation_name(endpoint: str) -> str:
    return _OPERATIONS.get(endpoint, endpoint)


class _RunIds(IdGenerator):
    """Random ids, except for a run span: its ids are derived from the run (`run_ids`),
    set just before the span is started (one thread starts spans: the reading loop)."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self.next: tuple[int, int] | None = None

    def generate_trace_id(self) -> int:
        return self.next[0] if self.next is not None else self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        return self.next[1] if self.next is not None else self._random.generate_span_id()


def _direct(provider: TracerProvider, tracer: object) -> tuple[bool, bool]:
    """Whether call spans may be built as `ReadableSpan`s directly (children of a run,
    roots), skipping the tracer: only where the tracer would make the very same span.
    That is the SDK's default sampler (or a parent-based one that keeps a sampled local
    parent's children, and roots for roots) and span limits our spans never reach; any
    other OTEL_TRACES_SAMPLER or OTEL_*ATTRIBUTE* limit, or OTEL_SDK_DISABLED, keeps the
    tracer (slower, the same as before)."""
    if not isinstance(tracer, Tracer):
        return False, False
    limits = SpanLimits()
    if (
        limits.max_span_attributes is not None and limits.max_span_attributes < _MOST_ATTRIBUTES
    ) or limits.max_span_attribute_length is not None:
        return False, False
    sampler = provider.sampler.get_description()
    if not sampler.startswith("ParentBased{"):
        return False, False
    return "localParentSampled:AlwaysOnSampler" in sampler, "root:AlwaysOnSampler" in sampler


class Exporter:
    """Records to spans and metrics. Call spans are `ReadableSpan`s built here and handed
    to the batch processor (the tracer's `start_span`/`end` cost ~60 µs a span: context
    lookups, sampling, id generation, attribute validation, the processor chain; this
    ~8 µs); run spans, one per agent run, keep the tracer (their ids come through it)."""

    def __init__(self, endpoint: str | None) -> None:
        resource = Resource.create({"service.version": __version__})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "ironrt"}))
        self.resource = resource
        self.scope = InstrumentationScope("ironrt", __version__)
        base = endpoint.rstrip("/") if endpoint else None
        self.ids = _RunIds()
        self.tracer_provider = TracerProvider(resource=resource, id_generator=self.ids)
        spans = FastSpanExporter(endpoint=f"{base}/v1/traces" if base else None)
        self.processor = BatchSpanProcessor(spans)
        self.tracer_provider.add_span_processor(self.processor)
        self.tracer = self.tracer_provider.get_tracer("ironrt", __version__)
        self.direct_child, self.direct_root = _direct(self.tracer_provider, self.tracer)
        metrics = OTLPMetricExporter(endpoint=f"{base}/v1/metrics" if base else None)
        self.metrics = CallMetrics(metrics, resource, __version__)
        self.parents: dict[tuple[str, int, float], SpanContext] = {}
        self._random = RandomIdGenerator()

    def records(self, records: list[Record]) -> None:
        """One frame: each record's span (and a call's metrics)."""
        for record in records:
            try:
                if isinstance(record, CallRecord):
                    self.call(record)
                else:
                    self.run(record)
            except Exception:
                logging.getLogger("ironrt.otel").exception("could not export a record")

    def call(self, r: CallRecord) -> None:
        """The call's span and its metrics."""
        operation = operation_name(r.endpoint)
        name = f"{operation} {r.request_model}".strip()
        status = (
            _UNSET
            if r.error_type is None
            else Status(StatusCode.ERROR, (r.error or r.error_type)[:300])
        )
        parent = self._parent(r)
        if self.direct_child if parent is not None else self.direct_root:
            self.processor.on_end(self._span(r, operation, name, parent, status))
        else:
            self._via_tracer(name, parent, call_attributes(r, operation), status, r)
        self.metrics.record(r, operation)

    def _span(
        self,
        r: CallRecord,
        operation: str,
        name: str,
        parent: SpanContext | None,
        status: Status,
    ) -> CallSpan:
        """The span the tracer would have ended: a new span id under the run's trace id
        (or a new trace for a root), sampled, its parent's trace state."""
        if parent is not None:
            trace_id = parent.trace_id
            trace_state = parent.trace_state
        else:
            trace_id = self._random.generate_trace_id()
            trace_state = None
        context = SpanContext(
            trace_id,
            self._random.generate_span_id(),
            is_remote=False,
            trace_flags=_SAMPLED,
            trace_state=trace_state,
        )
        return CallSpan(r, operation, name, context, parent, status, self.resource, self.scope)

    def _via_tracer(
        self,
        name: str,
        parent: SpanContext | None,
        attrs: dict[str, Any],
        status: Status,
        r: CallRecord,
    ) -> None:
        context = otel_context.Context()
        if parent is not None:
            context = trace.set_span_in_context(NonRecordingSpan(parent), context)
        span = self.tracer.start_span(
            name,
            context=context,
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=r.start_ns,
        )
        if status is not _UNSET:
            span.set_status(status)
        span.end(end_time=r.end_ns)

    def _parent(self, r: CallRecord) -> SpanContext | None:
        """The run's span context (None: no run known, the span is a root)."""
        if r.pid is None or r.run_started_s is None:
            return None
        key = (r.agent_id, r.pid, r.run_started_s)
        found = self.parents.get(key)
        if found is None:
            trace_id, span_id = run_ids(*key)
            found = self.parents[key] = SpanContext(
                trace_id, span_id, is_remote=False, trace_flags=_SAMPLED
            )
            if len(self.parents) > 10_000:  # runs long gone: their children are rare
                self.parents.pop(next(iter(self.parents)))
        return found

    def run(self, r: RunRecord) -> None:
        """The run's own span, with the ids its calls were parented to."""
        self.ids.next = run_ids(r.agent_id, r.pid, r.started_s)
        try:
            attrs: dict[str, Any] = {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.id": r.agent_id,
                "gen_ai.agent.name": r.name,
                "process.pid": r.pid,
                "ironrt.agent.id": r.agent_id,
                "ironrt.agent.name": r.name,
            }
            if r.project is not None:
                attrs["ironrt.project"] = r.project
            span = self.tracer.start_span(
                f"invoke_agent {r.name}".strip(),
                context=otel_context.Context(),
                kind=SpanKind.INTERNAL,
                attributes=attrs,
                start_time=int(r.started_s * 1e9),
            )
        finally:
            self.ids.next = None
        span.end(end_time=max(int(r.ended_s * 1e9), int(r.started_s * 1e9)))

    def flush(self, seconds: float) -> None:
        millis = int(seconds * 1000)
        self.tracer_provider.force_flush(millis)
        self.metrics.flush(millis)


#: The worker's niceness, relative to the daemon's.
NICE = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ironrt.observe.otel_worker")
    parser.add_argument("--endpoint", default=None)
    parser.add_argument("--flush-s", type=float, default=3.0)
    parser.add_argument("--log", default=None)
    args = parser.parse_args(argv)
    # Its own session already; a terminal's Ctrl-C is the daemon's to handle, and the
    # daemon ends this process by closing its stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Export is background work: when the CPUs are contended, the agents' calls through
    # the router come first. At nice 5 (a CFS weight of 335 against 1024) the worker still
    # gets several times the CPU it needs at thousands of calls a second; it only yields
    # in the bursts that saturate the machine, and catches up after (its queue is bounded).
    with contextlib.suppress(OSError):
        os.nice(NICE)
    if args.log:
        # The SDK says why an export failed (collector down, refused): once a batch, into
        # a bounded file.
        handler = logging.handlers.RotatingFileHandler(
            args.log, maxBytes=1_000_000, backupCount=1, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logging.basicConfig(level=logging.WARNING, handlers=[handler])
    exporter = Exporter(args.endpoint)
    read = sys.stdin.buffer.read
    try:
        while True:
            records = read_frame(read)
            if records is None:
                break
            exporter.records(records)
    finally:
        exporter.flush(args.flush_s)
        # No interpreter teardown: the SDK's shutdown would wait on a hung collector.
        logging.shutdown()
        os._exit(0)


if __name__ == "__main__":
    main()
