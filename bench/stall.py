"""Event-loop stalls: what other agents and the control API wait while one agent floods
the router with large PII-dense prompts (issue 10: three 15 MiB prompts stalled everything
for ~10.8 s, 1.5 s with PII off).

    python bench/stall.py              # ~1 min: 3 x 1 MiB and 3 x 8 MiB, PII off/detect/redact
    python bench/stall.py --quick      # ~20 s: 3 x 1 MiB and 3 x 4 MiB, PII off/redact
    python bench/stall.py --mib 15     # the issue's case (3 x 15 MiB): a few minutes

Processes: this script (the probes and the flood: raw asyncio sockets + httptools), the
fake upstream (`bench/_upstream.py`: canned replies, its own process, so reading 8 MiB
bodies costs the daemon nothing) and the ironrt daemon (TempDaemon, pointed at the
upstream with a fake key). Agent A (`--pii off|detect|redact` per scenario, rate limits
lifted) sends N prompts of PII-dense prose at once, each on its own connection. Agent B
(PII detect, the default) makes a small chat call every ~10 ms on a keep-alive
connection, and `GET /v1/health` goes to the control socket every ~10 ms on a new
connection each time (as the CLI does).

Reported per scenario, for the probes that started while the flood was in flight: p50,
p99 and max latency of each probe; the flood's wall time; ratios to the baseline (the same
probes with no flood, in the same run) and to the same flood with PII off. A probe's max
is the longest the daemon's event loop kept it waiting. Target (issue 10): with PII on, the
probes' p99 and max stay within a few ms of the PII-off flood's (the PII check does not
hold the loop; what PII off still costs is the router's JSON of large bodies).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    fmt,
    machine,
    ratio,
    start_token_agent,
    summary,
    table,
    write_results,
)
from _loadgen import Client, Target, build_request
from router import FAKE_KEY, start_upstream, stop_proc

from ironrt.tempdaemon import TempDaemon
from tests.pii import texts

PATH = "/v1/chat/completions"
PROBE_PERIOD_S = 0.01
#: One finding every ~60 characters: emails, phones, cards, SSNs, IBANs, IPs, keys.
SAMPLES = [
    "jane.doe@example.com",
    "+1 (415) 555-2671",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "536-22-1234",
    "DE89 3704 0044 0532 0130 00",
    "192.168.1.1",
    "2001:db8::1",
    "AKIAIOSFODNN7EXAMPLE",
]


def dense_pii(size: int, seed: int) -> str:
    return texts.dense_pii(size, SAMPLES, seed)


def chat_body(content: str) -> bytes:
    message = {"role": "user", "content": content}
    return msgspec.json.encode({"model": "gpt-4o-mini", "messages": [message], "max_tokens": 16})


# ---- probes -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Probe:
    name: str
    #: (start, latency) of each answered probe, perf_counter seconds.
    samples: list[tuple[float, float]] = field(default_factory=list)
    errors: int = 0

    def during(self, start: float, end: float) -> list[float]:
        return [lat for t0, lat in self.samples if start <= t0 <= end]


async def health_once(socket_path: str) -> bool:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    try:
        writer.write(b"GET /v1/health HTTP/1.1\r\nhost: ironrt\r\nconnection: close\r\n\r\n")
        data = await reader.read()
        return data.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def run_probe(probe: Probe, once: Any, stop: asyncio.Event) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            ok = await asyncio.wait_for(once(), 60)
        except (OSError, asyncio.TimeoutError, ConnectionError):
            ok = False
        if ok:
            probe.samples.append((t0, time.perf_counter() - t0))
        else:
            probe.errors += 1
        await asyncio.sleep(PROBE_PERIOD_S)


# ---- scenarios ----------------------------------------------------------------------------------


async def scenario(
    chat_probe: Target,
    socket_path: str,
    flood: Target | None,
    n: int,
    baseline_s: float,
) -> dict[str, Any]:
    """Probes before, during and after a flood of `n` calls of `flood` (None: no flood)."""
    chat, health = Probe("chat"), Probe("health")
    client = Client(chat_probe)
    stop = asyncio.Event()

    async def chat_once() -> bool:
        return (await client.call("plain", timeout=60)).status == 200

    tasks = [
        asyncio.create_task(run_probe(chat, chat_once, stop)),
        asyncio.create_task(run_probe(health, lambda: health_once(socket_path), stop)),
    ]
    await asyncio.sleep(0.3)  # warm: connections open, probes running
    start = time.perf_counter()
    statuses: list[int] = []
    if flood is None:
        await asyncio.sleep(baseline_s)
    else:
        senders = [Client(flood) for _ in range(n)]
        try:
            results = await asyncio.gather(
                *(s.call("plain", timeout=600) for s in senders), return_exceptions=True
            )
        finally:
            for s in senders:
                s.close()
        statuses = [r.status if not isinstance(r, BaseException) else -1 for r in results]
    end = time.perf_counter()
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks)
    client.close()
    return {
        "flood_s": end - start,
        "flood_statuses": statuses,
        "chat": summary(chat.during(start, end)),
        "health": summary(health.during(start, end)),
        "probe_errors": chat.errors + health.errors,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~20 s smoke run")
    ap.add_argument("--mib", type=float, default=None, help="size of the large prompts (MiB)")
    ap.add_argument("--prompts", type=int, default=3, help="prompts per flood (at once)")
    args = ap.parse_args(argv)
    big = args.mib if args.mib is not None else (4.0 if args.quick else 8.0)
    sizes = [1.0, big] if big != 1.0 else [1.0]
    modes = ["off", "redact"] if args.quick else ["off", "detect", "redact"]

    results: dict[str, Any] = {
        "machine": machine(),
        "prompts": args.prompts,
        "sizes_mib": sizes,
        "modes": modes,
        "probe_period_ms": PROBE_PERIOD_S * 1000,
    }
    workdir = Path(tempfile.mkdtemp(prefix="irt-bench-stall-"))
    upstream = None
    try:
        upstream, up_port = start_upstream()
        env = {
            "IRONRT_OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}",
            "OPENAI_API_KEY": FAKE_KEY,
            "IRONRT_SAMPLE_INTERVAL": "1.0",
        }
        with TempDaemon(offline=False, env=env) as d:
            url = urlsplit(d.router_url)
            host, port = url.hostname or "127.0.0.1", int(url.port or 80)
            socket_path = str(d.rt.settings.socket_path)
            lifted = {"rpm": 10_000_000, "tpm": 10**9}
            probe_token = start_token_agent(d, workdir, "probe")[1]
            flooders = {
                mode: start_token_agent(d, workdir, f"flood-{mode}", pii=mode, **lifted)[1]
                for mode in modes
            }

            def target(token: str, body: bytes) -> Target:
                req = build_request(host, port, PATH, body, {"authorization": f"Bearer {token}"})
                return Target("t", host, port, req, req)

            chat_probe = target(probe_token, chat_body("Say hello in five words."))
            runs: dict[str, dict[str, Any]] = {}
            runs["baseline"] = asyncio.run(scenario(chat_probe, socket_path, None, 0, 2.0))
            for mib in sizes:
                # The same prompt for every call of the flood (each call has its own map).
                body = chat_body(dense_pii(int(mib * (1 << 20)), seed=1))
                for mode in modes:
                    flood = target(flooders[mode], body)
                    name = f"{args.prompts}x{fmt(mib, 0)}MiB pii={mode}"
                    runs[name] = asyncio.run(
                        scenario(chat_probe, socket_path, flood, args.prompts, 0.0)
                    )
                    runs[name]["mib"], runs[name]["mode"] = mib, mode
                    print(f"  {name}: {runs[name]['flood_s']:.1f} s", file=sys.stderr)
            results["runs"] = runs
    finally:
        stop_proc(upstream)

    base = results["runs"]["baseline"]
    rows = []
    for name, r in results["runs"].items():
        off = results["runs"].get(f"{args.prompts}x{fmt(r.get('mib', 0.0), 0)}MiB pii=off")
        r["ratio_to_baseline"] = {
            p: {q: ratio(r[p][q], base[p][q]) for q in ("p99", "max")} for p in ("chat", "health")
        }
        if off is not None and "mode" in r:
            r["ratio_to_pii_off"] = {
                p: {q: ratio(r[p][q], off[p][q]) for q in ("p99", "max")}
                for p in ("chat", "health")
            }
        rows.append(
            [
                name,
                r["flood_s"],
                r["chat"]["n"],
                r["chat"]["p50"],
                r["chat"]["p99"],
                r["chat"]["max"],
                r["health"]["n"],
                r["health"]["p50"],
                r["health"]["p99"],
                r["health"]["max"],
                r["ratio_to_baseline"]["health"]["max"],
                r.get("ratio_to_pii_off", {}).get("health", {}).get("max", float("nan")),
            ]
        )
    header = [
        "scenario",
        "flood s",
        "chat n",
        "chat p50",
        "chat p99",
        "chat max",
        "health n",
        "health p50",
        "health p99",
        "health max",
        "max/base",
        "max/off",
    ]
    print(table("Probe latency (ms) during a flood of large PII-dense prompts", header, rows))
    path = write_results("stall", results)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
