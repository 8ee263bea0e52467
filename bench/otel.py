"""OpenTelemetry export's cost: router throughput at concurrency 32 with export off and on
(to a local OTLP/HTTP receiver), in one run, reported as a ratio (goal >= 0.95).

    python bench/otel.py            # ~40 s
    python bench/otel.py --quick    # ~15 s smoke run
    python bench/otel.py --worker   # the export worker alone: CPU per span (~10 s)

Processes: this script (the load generator of bench/_loadgen.py), the fake upstream
(bench/_upstream.py, zero latency), two ironrt daemons (TempDaemon) pointed at it, one
with `IRONRT_OTLP_ENDPOINT` set (its export worker is a process of its own), and the
receiver (a minimal HTTP server answering every POST with 200, in its own process,
counting the call spans it decodes: every recorded call must arrive as a span). The
phases alternate off/on so both meet the same machine state; the figure is the median
requests/s of each side's phases. The calls carry real usage, so each one is a full
span with its metrics.

CPU is accounted per process over the measured phases (psutil): each daemon's per call,
the export worker's per span, the receiver's. `--worker` measures the worker on its own
(a fixed load of records written to its stdin, the CPU it spent beyond its start-up),
unaffected by the router's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from _common import cpu_s, machine, ratio, start_token_agent, table, write_results
from _loadgen import Target, build_request, saturate
from router import FAKE_KEY, chat_body, start_upstream, stop_proc

from ironrt.observe.otel_records import CallRecord, RunRecord, frame
from ironrt.tempdaemon import TempDaemon

NAME = "otel"
GOAL = 0.95
RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
calls = 0
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global calls
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/v1/traces":
            req = ExportTraceServiceRequest.FromString(body)
            calls += sum(
                1
                for rs in req.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
                if not span.name.startswith("invoke_agent")
            )
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        body = str(calls).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print("PORT", s.server_address[1], flush=True)
s.serve_forever()
"""


def start_receiver() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        stop_proc(proc)
        raise RuntimeError("the OTLP receiver did not start")
    return proc, int(line.split()[1])


def worker_pid(d: TempDaemon) -> int | None:
    """The export worker: the daemon's child running `ironrt.observe.otel_worker`."""
    assert d.proc is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for child in psutil.Process(d.proc.pid).children():
            try:
                if "ironrt.observe.otel_worker" in child.cmdline():
                    return int(child.pid)
            except psutil.Error:
                continue
        time.sleep(0.05)
    return None


def call_record(i: int, now_ns: int) -> CallRecord:
    """A record like the bench's calls: a full span with usage and its metrics."""
    return CallRecord(
        agent_id="4f9c2b7e1a",
        agent_name="bench-on",
        project=None,
        pid=4242,
        run_started_s=1_700_000_000.125,
        provider="openai",
        endpoint="chat.completions",
        request_model="gpt-4o-mini",
        response_model="gpt-4o-mini-2024-07-18",
        stream=False,
        status_code=200,
        input_tokens=12 + i % 7,
        output_tokens=9 + i % 5,
        cached_tokens=0,
        cache_write_tokens=0,
        reasoning_tokens=0,
        has_usage=True,
        cost_usd=1.23e-5 + i * 1e-9,
        start_ns=now_ns - 3_000_000 + i,
        end_ns=now_ns + i,
        ttfb_s=None,
        overhead_ms=0.8 + (i % 10) / 100,
        refusal=None,
        error_type=None,
        error=None,
        server_address="127.0.0.1",
        server_port=8080,
    )


def run_worker(records: int, port: int) -> float:
    """CPU seconds the worker spent exporting `records` call spans (and one run span) to
    the receiver, start-up and flush included. Its span queue is made large enough that
    none is dropped: a dropped span would be CPU not spent."""
    env = {**os.environ, "OTEL_BSP_MAX_QUEUE_SIZE": str(records + 10_000)}
    cmd = [sys.executable, "-m", "ironrt.observe.otel_worker"]
    cmd += ["--endpoint", f"http://127.0.0.1:{port}", "--flush-s", "30"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    now = time.time_ns()
    batch = [call_record(i, now) for i in range(512)]
    for _ in range(records // 512):
        proc.stdin.write(frame(list(batch)))
    run = RunRecord("4f9c2b7e1a", 4242, 1_700_000_000.125, time.time(), "bench-on", None)
    proc.stdin.write(frame([run]))
    proc.stdin.close()
    _, _, usage = os.wait4(proc.pid, 0)
    return float(usage.ru_utime + usage.ru_stime)


def received(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as got:
        return int(got.read())


def worker_main(records: int) -> int:
    """`--worker`: µs of worker CPU per call span, beyond its start-up (a run with no
    call records), median of three."""
    receiver, port = start_receiver()
    try:
        idle = min(run_worker(0, port) for _ in range(2))
        before = received(port)
        full = [run_worker(records, port) for _ in range(3)]
        sent = (records // 512) * 512
        got = received(port) - before
    finally:
        stop_proc(receiver)
    per_span = [(f - idle) / sent * 1e6 for f in full]
    results = {
        "machine": machine(),
        "records": sent,
        "startup_cpu_ms": idle * 1000,
        "cpu_us_per_span": per_span,
        "median_cpu_us_per_span": statistics.median(per_span),
        "spans_received": got,
    }
    print(f"worker start-up {idle * 1000:.0f} ms CPU; per call span (3 runs of {sent:,}):")
    print("  " + ", ".join(f"{v:.1f} µs" for v in per_span))
    print(f"spans received {got:,} of {3 * sent:,}")
    print(f"results: {write_results(NAME + '_worker', results)}")
    return 0


def router_target(d: TempDaemon, workdir: Path, name: str) -> Target:
    _, token = start_token_agent(d, workdir / name, f"bench-{name}", budget=1000.0)
    url = urlsplit(d.router_url)
    host, port = url.hostname or "127.0.0.1", int(url.port or 80)
    path = "/v1/chat/completions"
    headers = {"authorization": f"Bearer {token}"}
    plain = chat_body("Say hello in five words.")
    stream = chat_body("Say hello in five words.", stream=True)
    return Target(
        name,
        host,
        port,
        build_request(host, port, path, plain, headers),
        build_request(host, port, path, stream, headers),
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--worker", action="store_true", help="the export worker alone")
    parser.add_argument("--records", type=int, default=20_480)
    args = parser.parse_args()
    if args.worker:
        return worker_main(args.records)
    phase_s = 1.5 if args.quick else 4.0
    rounds = 2 if args.quick else 4
    workdir = Path(tempfile.mkdtemp(prefix="irt-bench-otel-"))
    upstream = receiver = None
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "goal": GOAL}
    try:
        upstream, up_port = start_upstream()
        receiver, rx_port = start_receiver()
        base = {
            "IRONRT_OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}",
            "OPENAI_API_KEY": FAKE_KEY,
            "IRONRT_SAMPLE_INTERVAL": "1.0",
        }
        on_env = {**base, "IRONRT_OTLP_ENDPOINT": f"http://127.0.0.1:{rx_port}"}
        with (
            TempDaemon(offline=False, env=base) as off_d,
            TempDaemon(offline=False, env=on_env) as on_d,
        ):
            for sub in ("off", "on"):
                (workdir / sub).mkdir()
            targets = {"off": router_target(off_d, workdir, "off")}
            targets["on"] = router_target(on_d, workdir, "on")
            rates: dict[str, list[float]] = {"off": [], "on": []}
            errors = {"off": 0, "on": 0}
            for target in targets.values():  # warm-up: connections, caches, the worker
                asyncio.run(saturate(target, "plain", args.concurrency, 1.0, 10**9))
            pids = {
                "daemon_off": off_d.proc.pid if off_d.proc else None,
                "daemon_on": on_d.proc.pid if on_d.proc else None,
                "worker": worker_pid(on_d),
                "receiver": receiver.pid,
            }
            calls = {"off": 0, "on": 0}
            cpu0 = {name: cpu_s(pid) for name, pid in pids.items()}
            spans0 = received(rx_port)
            for i in range(rounds):
                order = ["off", "on"] if i % 2 == 0 else ["on", "off"]
                for name in order:
                    samples, elapsed = asyncio.run(
                        saturate(targets[name], "plain", args.concurrency, phase_s, 10**9)
                    )
                    rates[name].append(len(samples.total) / elapsed)
                    errors[name] += samples.errors
                    calls[name] += len(samples.total)
            # The worker lags the calls by up to a batch: its CPU counts once what the
            # phases sent has arrived (or 10 s passed).
            deadline = time.monotonic() + 10
            while received(rx_port) - spans0 < calls["on"] and time.monotonic() < deadline:
                time.sleep(0.05)
            cpu = {name: cpu_s(pid) - cpu0[name] for name, pid in pids.items()}
            spans_measured = received(rx_port) - spans0
            off = statistics.median(rates["off"])
            on = statistics.median(rates["on"])
            results.update(
                {
                    "concurrency": args.concurrency,
                    "phase_s": phase_s,
                    "rates": rates,
                    "errors": errors,
                    "off_rps": off,
                    "on_rps": on,
                    "ratio": ratio(on, off),
                    "cpu_s": cpu,
                    "daemon_cpu_us_per_call": {
                        "off": cpu["daemon_off"] / max(calls["off"], 1) * 1e6,
                        "on": cpu["daemon_on"] / max(calls["on"], 1) * 1e6,
                    },
                    "worker_cpu_us_per_span": cpu["worker"] / max(spans_measured, 1) * 1e6,
                    "receiver_cpu_us_per_span": cpu["receiver"] / max(spans_measured, 1) * 1e6,
                }
            )
            recorded = on_d.rt.usage("agent").llm_calls
            began = time.perf_counter()
        results["daemons_stop_s"] = time.perf_counter() - began
        # Every call of the exporting daemon is a span at the receiver (the worker flushes
        # at stop): a cheaper export that dropped spans would not count.
        results["spans"] = received(rx_port)
        results["calls_on"] = recorded
    finally:
        stop_proc(receiver)
        stop_proc(upstream)
    print(
        table(
            f"router throughput, concurrency {args.concurrency}, OpenTelemetry export off vs on",
            ["export", "req/s (median)", "phases", "errors"],
            [
                ["off", results["off_rps"], len(results["rates"]["off"]), results["errors"]["off"]],
                ["on", results["on_rps"], len(results["rates"]["on"]), results["errors"]["on"]],
            ],
        )
    )
    print(f"\nspans received {results['spans']:,} for {results['calls_on']:,} calls recorded")
    per_call = results["daemon_cpu_us_per_call"]
    print(
        f"CPU: daemon {per_call['off']:.0f} µs/call off, {per_call['on']:.0f} µs/call on; "
        f"export worker {results['worker_cpu_us_per_span']:.0f} µs/span; "
        f"receiver {results['receiver_cpu_us_per_span']:.0f} µs/span"
    )
    verdict = "ok" if results["ratio"] >= GOAL else "below goal"
    print(f"\non/off ratio: {results['ratio']:.3f} (goal >= {GOAL}): {verdict}")
    print(f"results: {write_results(NAME, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
