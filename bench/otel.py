"""OpenTelemetry export's cost: router throughput at concurrency 32 with export off and on
(to a local OTLP/HTTP receiver), in one run, reported as a ratio (goal >= 0.95).

    python bench/otel.py            # ~40 s
    python bench/otel.py --quick    # ~15 s smoke run

Processes: this script (the load generator of bench/_loadgen.py), the fake upstream
(bench/_upstream.py, zero latency), two ironrt daemons (TempDaemon) pointed at it, one
with `IRONRT_OTLP_ENDPOINT` set (its export worker is a process of its own), and the
receiver (a minimal HTTP server answering every POST with 200, in its own process,
counting the call spans it decodes: every recorded call must arrive as a span). The
phases alternate off/on so both meet the same machine state; the figure is the median
requests/s of each side's phases. The calls carry real usage, so each one is a full
span with its metrics.
"""

from __future__ import annotations

import argparse
import asyncio
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

from _common import machine, ratio, start_token_agent, table, write_results
from _loadgen import Target, build_request, saturate
from router import FAKE_KEY, chat_body, start_upstream, stop_proc

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
    args = parser.parse_args()
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
            for i in range(rounds):
                order = ["off", "on"] if i % 2 == 0 else ["on", "off"]
                for name in order:
                    samples, elapsed = asyncio.run(
                        saturate(targets[name], "plain", args.concurrency, phase_s, 10**9)
                    )
                    rates[name].append(len(samples.total) / elapsed)
                    errors[name] += samples.errors
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
                }
            )
            recorded = on_d.rt.usage("agent").llm_calls
            began = time.perf_counter()
        results["daemons_stop_s"] = time.perf_counter() - began
        # Every call of the exporting daemon is a span at the receiver (the worker flushes
        # at stop): a cheaper export that dropped spans would not count.
        with urllib.request.urlopen(f"http://127.0.0.1:{rx_port}/count", timeout=5) as got:
            results["spans"] = int(got.read())
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
    verdict = "ok" if results["ratio"] >= GOAL else "below goal"
    print(f"\non/off ratio: {results['ratio']:.3f} (goal >= {GOAL}): {verdict}")
    print(f"results: {write_results(NAME, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
