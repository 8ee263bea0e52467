"""Event followers over Server-Sent Events: no loss at 1,000 events/s, and the delivery lag.

    python bench/events.py               # 10 followers, 1,000 events/s for 5 s
    python bench/events.py --quick       # 2 s
    python bench/events.py --followers 20 --rate 2000 --seconds 10

The real control app's `/v1/events` (the daemon's handler, bus and SQLite store) is served
by uvicorn on a Unix socket; events are published at a fixed rate from many tasks at once
(as the daemon's emitters publish: each settling call, each agent's watcher). The
followers run in another process (one thread each, httpx over the socket, `Accept:
text/event-stream`) and stop at the final `DaemonStopped`.

Reported per run: events published, per follower received (must equal published: no
loss), duplicates or out-of-order ids (must be 0), and the delivery lag (event time to
arrival) p50/p99 over all followers. The baseline in the same run is one follower; the
lag of N followers is given as a ratio of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
from _common import machine, percentile, ratio, table, write_results

from ironrt import calls
from ironrt.control import observe
from ironrt.control.http import Request, Response, Router
from ironrt.events import EventBus
from ironrt.protocol import DaemonStopped, LimitsChanged
from ironrt.server import bind_unix, make_server
from ironrt.store.db import Database

NAME = "events"

#: One follower per thread: reads SSE frames until `DaemonStopped`, prints its record.
FOLLOWERS = r"""
import json, sys, threading, time, datetime as dt
import httpx
sock, n = sys.argv[1], int(sys.argv[2])
out = [None] * n
ready = threading.Barrier(n + 1)

def follow(k):
    ids, lags = [], []
    transport = httpx.HTTPTransport(uds=sock)
    with httpx.Client(transport=transport, base_url="http://ironrt", timeout=30) as c:
        headers = {"accept": "text/event-stream"}
        with c.stream("GET", "/v1/events", headers=headers) as resp:
            ready.wait()
            kind = None
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    now = time.time()
                    data = json.loads(line[6:])
                    ids.append(data["id"])
                    ts = dt.datetime.fromisoformat(data["ts"].replace("Z", "+00:00"))
                    lags.append(now - ts.timestamp())
                    if kind == "DaemonStopped":
                        break
    out[k] = {"ids": ids, "lags": lags}

threads = [threading.Thread(target=follow, args=(k,)) for k in range(n)]
for t in threads:
    t.start()
ready.wait()
print("READY", flush=True)
for t in threads:
    t.join()
print(json.dumps(out), flush=True)
"""


async def run(followers: int, rate: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="irt-bench-", dir="/tmp") as home:
        db = await Database.open(Path(home) / "state.db")
        await db.migrate()
        bus = EventBus(db)
        ctx = SimpleNamespace(db=db, bus=bus, stopping=anyio.Event(), supervisor=None)

        async def handler(req: Request) -> Response:
            return await observe.events(req, ctx)  # type: ignore[arg-type]

        router = Router()
        router.add(calls.EVENTS, handler)
        sock_path = str(Path(home) / "c.sock")
        server = make_server(router, unix=True)
        sock = bind_unix(sock_path)
        result: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            while not server.started:
                await anyio.sleep(0.01)
            proc = await anyio.open_process(
                [sys.executable, "-c", FOLLOWERS, sock_path, str(followers)]
            )
            assert proc.stdout is not None
            buffered = b""
            async for chunk in proc.stdout:
                buffered += chunk
                if b"READY\n" in buffered:
                    break
            start = time.monotonic()
            published = 0
            # Published as the daemon's emitters do: from many tasks at once (each
            # settling call, each agent's watcher), here the events due at each tick.
            async with anyio.create_task_group() as publishers:
                while (elapsed := time.monotonic() - start) < seconds:
                    due = int(elapsed * rate) + 1
                    while published < due:
                        published += 1
                        event = LimitsChanged(scope="bench", changes={"n": published})
                        publishers.start_soon(bus.publish, event)
                    await anyio.sleep(max(0.0, published / rate - (time.monotonic() - start)))
            await bus.publish(DaemonStopped(pid=0))
            published += 1
            async for chunk in proc.stdout:
                buffered += chunk
            await proc.wait()
            records = json.loads(buffered.split(b"READY\n", 1)[1])
            lags = [lag for r in records for lag in r["lags"]]
            received = [len(r["ids"]) for r in records]
            disorder = sum(
                sum(1 for a, b in zip(r["ids"], r["ids"][1:], strict=False) if b <= a)
                for r in records
            )
            result = {
                "followers": followers,
                "rate": rate,
                "published": published,
                "received_min": min(received),
                "received_max": max(received),
                "lost": sum(published - n for n in received),
                "out_of_order": disorder,
                "lag_p50_ms": percentile(lags, 50) * 1000,
                "lag_p99_ms": percentile(lags, 99) * 1000,
            }
            server.should_exit = True
            tg.cancel_scope.cancel()
        await db.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else args.seconds
    baseline = anyio.run(run, 1, args.rate, seconds)
    many = anyio.run(run, args.followers, args.rate, seconds)
    rows = [
        [
            r["followers"],
            r["published"],
            r["received_min"],
            r["lost"],
            r["out_of_order"],
            r["lag_p50_ms"],
            r["lag_p99_ms"],
        ]
        for r in (baseline, many)
    ]
    header = ("FOLLOWERS", "PUBLISHED", "MIN RECEIVED", "LOST", "DISORDER", "P50 MS", "P99 MS")
    print(table(f"SSE followers at {args.rate:g} events/s for {seconds:g} s", header, rows))
    p50 = ratio(many["lag_p50_ms"], baseline["lag_p50_ms"])
    p99 = ratio(many["lag_p99_ms"], baseline["lag_p99_ms"])
    print(f"\nlag vs 1 follower: p50 x{p50:.2f}, p99 x{p99:.2f}")
    ok = many["lost"] == baseline["lost"] == 0 and many["out_of_order"] == 0
    print("no loss: " + ("yes" if ok else "NO"))
    path = write_results(
        NAME,
        {"machine": machine(), "baseline": baseline, "followers": many, "p50": p50, "p99": p99},
    )
    print(f"results: {path}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
