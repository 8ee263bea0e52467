"""The OpenTelemetry export worker: a child process of the daemon that turns call and run
records (`otel_records`, read from its stdin) into OTLP/HTTP spans and GenAI metrics with
`opentelemetry-sdk`.

Why a process of its own. Measured in the daemon's process (SDK 1.45, a 2-CPU machine):
building a call's span cost ~56 µs, its three histogram records ~70 µs, and the OTLP
exporter's protobuf encoding ~100-250 µs a span, on the export thread but under the same
GIL as the router: about as much CPU as the router spends on the call itself, which would
have halved its throughput at concurrency 32. Here that work runs on another core; the
daemon only packs a record (a few µs) and writes a batch to a pipe.

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
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from ironrt._version import __version__
from ironrt.observe.otel_records import CallRecord, RunRecord, read_frame, run_ids

__all__ = ["main", "operation_name"]

#: The conventions' advisory bucket boundaries for the two histograms.
_TOKEN_BUCKETS = [4.0**i for i in range(14)]
_DURATION_BUCKETS = [0.01 * 2**i for i in range(14)]
#: ironrt endpoints -> `gen_ai.operation.name` (others keep their endpoint's name).
_OPERATIONS = {
    "chat.completions": "chat",
    "messages": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
}


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


class Exporter:
    def __init__(self, endpoint: str | None) -> None:
        resource = Resource.create({"service.version": __version__})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "ironrt"}))
        base = endpoint.rstrip("/") if endpoint else None
        self.ids = _RunIds()
        self.tracer_provider = TracerProvider(resource=resource, id_generator=self.ids)
        spans = OTLPSpanExporter(endpoint=f"{base}/v1/traces" if base else None)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(spans))
        self.tracer = self.tracer_provider.get_tracer("ironrt", __version__)
        metrics = OTLPMetricExporter(endpoint=f"{base}/v1/metrics" if base else None)
        self.reader = PeriodicExportingMetricReader(metrics)
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[self.reader])
        meter = self.meter_provider.get_meter("ironrt", __version__)
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.parents: dict[tuple[str, int, float], otel_context.Context] = {}

    def call(self, r: CallRecord) -> None:
        operation = operation_name(r.endpoint)
        common: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": r.provider,
            "gen_ai.request.model": r.request_model,
        }
        if r.response_model:
            common["gen_ai.response.model"] = r.response_model
        if r.server_address:
            common["server.address"] = r.server_address
            if r.server_port:
                common["server.port"] = r.server_port
        attrs = dict(common)
        attrs["gen_ai.request.stream"] = r.stream
        if r.has_usage:
            attrs["gen_ai.usage.input_tokens"] = r.input_tokens
            attrs["gen_ai.usage.output_tokens"] = r.output_tokens
            attrs["gen_ai.usage.cache_read.input_tokens"] = r.cached_tokens
            attrs["gen_ai.usage.cache_creation.input_tokens"] = r.cache_write_tokens
            attrs["gen_ai.usage.reasoning.output_tokens"] = r.reasoning_tokens
        if r.ttfb_s is not None and r.stream:
            attrs["gen_ai.response.time_to_first_chunk"] = r.ttfb_s
        attrs["ironrt.agent.id"] = r.agent_id
        attrs["ironrt.agent.name"] = r.agent_name
        if r.status_code:
            attrs["http.response.status_code"] = r.status_code
        known: tuple[tuple[str, Any], ...] = (
            ("ironrt.project", r.project),
            ("ironrt.cost_usd", r.cost_usd),
            ("ironrt.overhead_ms", r.overhead_ms),
            ("ironrt.refusal", r.refusal),
            ("error.type", r.error_type),
            ("gen_ai.input.messages", r.input_messages),
            ("gen_ai.system_instructions", r.system_instructions),
            ("gen_ai.output.messages", r.output_messages),
        )
        attrs.update((name, value) for name, value in known if value is not None)
        span = self.tracer.start_span(
            f"{operation} {r.request_model}".strip(),
            context=self._parent(r),
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=r.start_ns,
        )
        if r.error_type is not None:
            span.set_status(Status(StatusCode.ERROR, (r.error or r.error_type)[:300]))
        span.end(end_time=r.end_ns)
        if r.error_type is not None:
            common["error.type"] = r.error_type
        self.duration.record((r.end_ns - r.start_ns) / 1e9, common)
        if r.has_usage:
            self.tokens.record(r.input_tokens, {**common, "gen_ai.token.type": "input"})
            self.tokens.record(r.output_tokens, {**common, "gen_ai.token.type": "output"})

    def _parent(self, r: CallRecord) -> otel_context.Context | None:
        if r.pid is None or r.run_started_s is None:
            return otel_context.Context()  # no run known: a root span
        key = (r.agent_id, r.pid, r.run_started_s)
        found = self.parents.get(key)
        if found is None:
            trace_id, span_id = run_ids(*key)
            run = SpanContext(trace_id, span_id, is_remote=False, trace_flags=trace.TraceFlags(1))
            found = self.parents[key] = trace.set_span_in_context(NonRecordingSpan(run))
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
        self.meter_provider.force_flush(millis)


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
            for record in records:
                try:
                    if isinstance(record, CallRecord):
                        exporter.call(record)
                    else:
                        exporter.run(record)
                except Exception:
                    logging.getLogger("ironrt.otel").exception("could not export a record")
    finally:
        exporter.flush(args.flush_s)
        # No interpreter teardown: the SDK's shutdown would wait on a hung collector.
        logging.shutdown()
        os._exit(0)


if __name__ == "__main__":
    main()
