"""OpenTelemetry export through a real daemon: real agents calling through the real SDKs,
a FakeUpstream over TCP, and a local OTLP/HTTP receiver decoding what arrives with
`opentelemetry-proto`.

One daemon per scenario, shared by the module's tests (module-scoped): capture on with
a live collector; capture off behind a collector that hangs (then answers); and a
collector that refuses connections.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from ironrt.protocol import Trace
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import agent_script, governed_env

LATENCY_S = 0.05
EMAIL = "alice.smith@example.com"

OPENAI_AGENT = f"""
import openai
c = openai.OpenAI(max_retries=0)
r = c.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{{"role": "system", "content": "Be brief."}},
              {{"role": "user", "content": "Write to {EMAIL} about lunch"}}],
)
print("OPENAI", r.choices[0].message.content)
s = c.chat.completions.create(
    model="gpt-4o-mini", messages=[{{"role": "user", "content": "stream please"}}], stream=True,
)
print("STREAM", "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices))
"""
ANTHROPIC_AGENT = """
import anthropic
c = anthropic.Anthropic(max_retries=0)
m = c.messages.create(
    model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "Hi there"}],
)
print("ANTHROPIC", m.content[0].text)
"""
REFUSED_AGENT = """
import openai
c = openai.OpenAI(max_retries=0)
try:
    c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
except openai.APIStatusError as exc:
    print("REFUSED", exc.status_code)
"""


class Receiver:
    """An OTLP/HTTP collector on 127.0.0.1: keeps every POST by path. `hang` makes it
    hold each request (unanswered) until `release()`."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                owner.gate.wait(30)
                with owner.lock:
                    owner.posts.append((self.path, body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hang(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[Span]:
        with self.lock:
            bodies = [b for p, b in self.posts if p == "/v1/traces"]
        out: list[Span] = []
        for body in bodies:
            req = ExportTraceServiceRequest.FromString(body)
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    out.extend(ss.spans)
        return out

    def resources(self) -> list[dict[str, Any]]:
        with self.lock:
            bodies = [b for p, b in self.posts if p == "/v1/traces"]
        return [
            attrs(rs.resource.attributes)
            for b in bodies
            for rs in ExportTraceServiceRequest.FromString(b).resource_spans
        ]

    def metric_names(self) -> set[str]:
        with self.lock:
            bodies = [b for p, b in self.posts if p == "/v1/metrics"]
        names = set()
        for body in bodies:
            for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                for sm in rm.scope_metrics:
                    names.update(m.name for m in sm.metrics)
        return names

    def metric(self, name: str) -> list[Any]:
        with self.lock:
            bodies = [b for p, b in self.posts if p == "/v1/metrics"]
        found = []
        for body in bodies:
            for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                for sm in rm.scope_metrics:
                    found.extend(m for m in sm.metrics if m.name == name)
        return found


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


def daemon_env(up: FakeUpstream, endpoint: str, **more: str) -> dict[str, str]:
    return governed_env(
        up.url,
        IRONRT_OTLP_ENDPOINT=endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_METRIC_EXPORT_INTERVAL="300",
        OTEL_EXPORTER_OTLP_TIMEOUT="2",
        **more,
    )


def run_agents(d: TempDaemon, specs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Start every agent at once, then wait for each: {key: (agent id, pid)}."""
    started = {key: d.rt.start_agent(script, **kw) for key, (script, kw) in specs.items()}
    out = {}
    for key, agent_id in started.items():
        final = d.rt.wait(agent_id, timeout=60)
        assert final.exit_code == 0, d.rt.logs(agent_id, tail=200)
        assert final.pid is not None
        out[key] = (agent_id, final.pid)
    return out


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(latency=LATENCY_S) as up:
        yield up


class Scenario:
    def __init__(self, d: TempDaemon, receiver: Receiver, tmp: Path) -> None:
        self.d, self.receiver, self.tmp = d, receiver, tmp
        self.agents: dict[str, tuple[str, int]] = {}


@pytest.fixture(scope="module")
def captured(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    """Capture on, a live collector; three agents ran (redacting, anthropic, refused)."""
    receiver = Receiver()
    tmp = tmp_path_factory.mktemp("otel")
    env = daemon_env(
        upstream, receiver.url, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true"
    )
    try:
        with TempDaemon(offline=False, env=env) as d:
            s = Scenario(d, receiver, tmp)
            s.agents = run_agents(
                d,
                {
                    "openai": (
                        agent_script(tmp, "oa.py", OPENAI_AGENT),
                        {"name": "writer", "project": "proj", "pii": "redact"},
                    ),
                    "anthropic": (agent_script(tmp, "an.py", ANTHROPIC_AGENT), {"name": "poet"}),
                    "refused": (
                        agent_script(tmp, "rf.py", REFUSED_AGENT),
                        {"name": "broke", "budget": 1e-9},
                    ),
                },
            )
            yield s
    finally:
        receiver.close()


def call_spans(r: Receiver) -> list[Span]:
    return [s for s in r.spans() if s.kind == Span.SPAN_KIND_CLIENT]


def run_spans(r: Receiver) -> list[Span]:
    return [s for s in r.spans() if s.name.startswith("invoke_agent")]


def test_one_span_per_call_with_the_trace_values(captured: Scenario) -> None:
    d, r = captured.d, captured.receiver
    traces: list[Trace] = d.rt.traces(limit=50)
    assert len(traces) == 4
    wait_until(lambda: len(call_spans(r)) >= 4 and len(run_spans(r)) >= 3, timeout=20)
    spans = call_spans(r)
    assert len(spans) == 4
    by_agent: dict[str, list[Span]] = {}
    for span in spans:
        by_agent.setdefault(attrs(span.attributes)["ironrt.agent.id"], []).append(span)
    for trace in traces:
        candidates = by_agent[trace.agent_id]
        a = None
        for span in candidates:
            sa = attrs(span.attributes)
            if sa.get("gen_ai.request.stream") == trace.stream:
                a, match = sa, span
                break
        assert a is not None, trace
        assert match.name == f"{a['gen_ai.operation.name']} {trace.model}"
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == trace.provider
        assert a["gen_ai.request.model"] == trace.model
        assert a["ironrt.agent.name"] == trace.agent_name
        assert a.get("ironrt.project") == trace.project
        assert a.get("ironrt.refusal") == trace.refusal
        assert a.get("http.response.status_code") == trace.status_code
        duration_ms = (match.end_time_unix_nano - match.start_time_unix_nano) / 1e6
        assert duration_ms == pytest.approx(trace.latency_ms, abs=0.01)
        if trace.refusal is None:
            assert trace.status_code == 200
            assert a["gen_ai.response.model"] == trace.response_model
            assert a["gen_ai.usage.input_tokens"] == trace.input_tokens > 0
            assert a["gen_ai.usage.output_tokens"] == trace.output_tokens > 0
            assert a["gen_ai.usage.cache_read.input_tokens"] == trace.cached_tokens
            assert a["ironrt.cost_usd"] == pytest.approx(trace.cost_usd)
            assert a["ironrt.overhead_ms"] == pytest.approx(trace.overhead_ms)
            assert a["server.address"] == "127.0.0.1"
            assert "error.type" not in a
            assert duration_ms >= LATENCY_S * 1000
        else:
            assert trace.refusal == "budget_exhausted"
            assert a["error.type"] == "budget_exhausted"
            assert match.status.code == match.status.STATUS_CODE_ERROR
            assert "gen_ai.usage.input_tokens" not in a
    assert {a["gen_ai.provider.name"] for a in map(lambda s: attrs(s.attributes), spans)} == {
        "openai",
        "anthropic",
    }
    assert all(res.get("service.name") == "ironrt" for res in r.resources())


def test_each_call_is_a_child_of_its_agents_run_span(captured: Scenario) -> None:
    r = captured.receiver
    wait_until(lambda: len(run_spans(r)) >= 3, timeout=20)
    runs = {attrs(s.attributes)["gen_ai.agent.id"]: s for s in run_spans(r)}
    for key, (agent_id, pid) in captured.agents.items():
        run = runs[agent_id]
        ra = attrs(run.attributes)
        assert ra["process.pid"] == pid, key
        assert ra["gen_ai.operation.name"] == "invoke_agent"
        assert run.name == f"invoke_agent {ra['gen_ai.agent.name']}"
        assert len(run.parent_span_id) == 0  # the run is the root
        children = [s for s in call_spans(r) if attrs(s.attributes)["ironrt.agent.id"] == agent_id]
        assert children
        for child in children:
            assert child.trace_id == run.trace_id
            assert child.parent_span_id == run.span_id
            assert run.start_time_unix_nano <= child.start_time_unix_nano
            assert child.end_time_unix_nano <= run.end_time_unix_nano
    assert {attrs(s.attributes)["gen_ai.agent.name"] for s in runs.values()} == {
        "writer",
        "poet",
        "broke",
    }


def test_metrics_arrive(captured: Scenario) -> None:
    r = captured.receiver
    wanted = {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"}
    wait_until(lambda: wanted <= r.metric_names(), timeout=20)
    usage = r.metric("gen_ai.client.token.usage")[-1]
    assert usage.unit == "{token}"
    types = {attrs(p.attributes)["gen_ai.token.type"] for p in usage.histogram.data_points}
    assert types == {"input", "output"}
    duration = r.metric("gen_ai.client.operation.duration")[-1]
    assert duration.unit == "s"
    points = duration.histogram.data_points
    assert sum(p.count for p in points) == 4
    errors = [attrs(p.attributes).get("error.type") for p in points]
    assert "budget_exhausted" in errors


def test_content_is_captured_and_redacted(captured: Scenario) -> None:
    r = captured.receiver
    wait_until(lambda: len(call_spans(r)) >= 4, timeout=20)
    writer = captured.agents["openai"][0]
    spans = [attrs(s.attributes) for s in call_spans(r)]
    mine = [a for a in spans if a["ironrt.agent.id"] == writer and not a["gen_ai.request.stream"]]
    assert len(mine) == 1
    a = mine[0]
    inputs = json.loads(a["gen_ai.input.messages"])
    text = json.dumps(inputs)
    assert EMAIL not in text and "[EMAIL_1]" in text
    assert inputs[-1]["role"] == "user"
    assert inputs[-1]["parts"][0]["content"].startswith("Write to [EMAIL_1]")
    assert {m["role"] for m in inputs} == {"user"}
    system = json.loads(a["gen_ai.system_instructions"])
    assert system == [{"type": "text", "content": "Be brief."}]
    outputs = json.loads(a["gen_ai.output.messages"])
    assert outputs[0]["role"] == "assistant" and outputs[0]["parts"][0]["content"]
    streamed = [a for a in spans if a["ironrt.agent.id"] == writer and a["gen_ai.request.stream"]]
    out = json.loads(streamed[0]["gen_ai.output.messages"])[0]["parts"][0]["content"]
    log = captured.d.rt.logs(writer, tail=100)
    assert f"STREAM {out}" in log  # the whole streamed answer, as the agent got it
    refused = [a for a in spans if a.get("ironrt.refusal")]
    assert refused and all("gen_ai.input.messages" not in a for a in refused)
    otel_log = (
        (captured.d.home / "otel.log").read_text()
        if (captured.d.home / "otel.log").exists()
        else ""
    )
    assert EMAIL not in otel_log and "sk-" not in otel_log


def _timed_calls(d: TempDaemon, tmp: Path, n: int) -> tuple[float, str]:
    script = agent_script(
        tmp,
        f"many{n}.py",
        f"""
        import time, openai
        c = openai.OpenAI(max_retries=0)
        t = time.perf_counter()
        for _ in range({n}):
            c.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "x"}}])
        print("ELAPSED", time.perf_counter() - t)
        """,
    )
    agent_id, _ = run_agents(d, {"many": (script, {})})["many"]
    log = d.rt.logs(agent_id, tail=50)
    elapsed = float(log.split("ELAPSED")[1].split()[0])
    return elapsed, agent_id


def assert_not_held(elapsed: float, traces: list[Trace]) -> None:
    """The agent's 20 calls took their routed latency plus the SDK's own time, and nothing
    for the export: a call held by it (the collector's hang is 30 s, the export timeout
    2 s) would add seconds each. The observer runs after a trace's latency is taken and
    before the agent gets its answer, so a blocking export shows here and only here."""
    assert len(traces) == 20 and all(t.status_code == 200 and t.error is None for t in traces)
    outside = elapsed - sum(t.latency_ms for t in traces) / 1000
    assert outside < 5.0, (elapsed, outside)


def test_a_hanging_collector_costs_calls_nothing_and_content_stays_off(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    receiver = Receiver()
    receiver.hang()
    try:
        with TempDaemon(offline=False, env=daemon_env(upstream, receiver.url)) as d:
            elapsed, agent_id = _timed_calls(d, tmp_path, 20)
            assert_not_held(elapsed, d.rt.traces(agent=agent_id, limit=50))
            assert receiver.posts == []  # every export so far is held
            receiver.release()  # the collector comes back: what was queued arrives
            wait_until(lambda: len(call_spans(receiver)) >= 20, timeout=30)
            assert all(
                "gen_ai.input.messages" not in attrs(s.attributes) for s in call_spans(receiver)
            )
            assert all(
                "gen_ai.output.messages" not in attrs(s.attributes) for s in call_spans(receiver)
            )
            began = time.monotonic()
            d.stop()  # flushes, bounded
            assert time.monotonic() - began < 15
    finally:
        receiver.close()


def test_a_refusing_collector_costs_calls_nothing(upstream: FakeUpstream, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nobody listens once closed
    with TempDaemon(offline=False, env=daemon_env(upstream, dead)) as d:
        elapsed, agent_id = _timed_calls(d, tmp_path, 20)
        assert_not_held(elapsed, d.rt.traces(agent=agent_id, limit=50))
        began = time.monotonic()
        d.stop()
        assert time.monotonic() - began < 15
