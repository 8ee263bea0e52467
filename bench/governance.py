"""The router's per-call work in process, next to the governed floor's, in one run.

    python bench/governance.py [--blocks 9] [--calls 600]

No sockets, no load generator, no upstream: what is left is the work a call costs the
daemon's loop beyond moving bytes, measured as process CPU time (the SQLite commits
behind the answers included), so the figures hold on a noisy machine far better than
bench/router.py's round trips. Three paths, alternated block by block:

- **floor**: bench/_governed_floor.py's `FloorGovernance` (token hash, JSON decoded,
  PII scanned both ways, hold, price, journal append, SQLite behind): the least
  governance Python can do per call;
- **router**: the daemon's own `RouterService` (its policies, ledger, books with the
  journal, settle) serving one chat call through its ASGI app, the upstream's answer
  canned (the same bytes the floor reads);
- **router_pii_off**: the same, for an agent with PII off.

Reported: µs of CPU per call (the minimum over blocks, and the median), and router /
floor. Issue 14's goals (bench/router.py) need the daemon's whole call near 0.33 ms of
CPU; this says how much of it the router's own Python takes, and how far that is from
the floor. bench/floor.py measures the same paths through real sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
from _common import machine, table, write_results
from _governed_floor import FloorGovernance

from ironrt.config import Settings
from ironrt.events import EventBus
from ironrt.governance.agent import AgentGovernance
from ironrt.governance.flow import Flow
from ironrt.governance.ledger import Ledger
from ironrt.governance.tokens import token_hash
from ironrt.keys import ProviderKeys
from ironrt.providers.offline import offline_response
from ironrt.router.service import RouterService
from ironrt.store.books import Books
from ironrt.store.db import Database
from ironrt.transports.base import Outgoing

PATH = "/v1/chat/completions"
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in five words."}]}'
ANSWER = offline_response("openai", "chat.completions", msgspec.json.decode(BODY)).body
TOKENS = {"tok-detect": "ag-detect", "tok-off": "ag-off"}


class _Answer:
    """The upstream's answer, canned: a 200 with the offline provider's JSON."""

    status = 200
    content_type = "application/json"
    retry_after = None

    def __init__(self) -> None:
        self.headers = [(b"content-type", b"application/json"), (b"x-request-id", b"req_b")]

    async def read(self) -> bytes:
        return ANSWER

    async def aclose(self) -> None:
        return None

    def iter_bytes(self) -> Any:
        raise NotImplementedError("no streams here")


class _Canned:
    async def attempt(self, flow: Flow, request: Outgoing) -> _Answer:
        return _Answer()


class _Agents:
    """What RouterService needs of the supervisor: the agents by token hash."""

    def __init__(self, ledger: Ledger, books: Books, govs: dict[str, AgentGovernance]) -> None:
        self.ledger, self.books = ledger, books
        self._by_hash = {token_hash(t): govs[a] for t, a in TOKENS.items()}

    def governance_for_token(self, hashed: str) -> AgentGovernance | None:
        return self._by_hash.get(hashed)

    async def stop(self, ref: str, timeout: float, reason: Any = "budget") -> Any:
        return None


def _scope(token: str) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer " + token.encode()),
        (b"user-agent", b"OpenAI/Python 1.99"),
        (b"accept", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 1),
        "client": ("127.0.0.1", 2),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": headers,
    }


async def bench_router(
    home: Path, upstream_url: str | None = None, budget_usd: int | None = None
) -> tuple[RouterService, Database]:
    """The daemon's `RouterService` over a database in `home`, with TOKENS' agents (each in
    its own scope and `global`, PII detect but `ag-off`), the books journaled per call, and
    the openai key `sk-bench`; calls go to `upstream_url` (None: the settings' default).
    `budget_usd`: each agent's budget (None: no budget). The caller closes the database."""
    env = {"IRONRT_HOME": str(home)}
    if upstream_url is not None:
        env |= {"IRONRT_OPENAI_BASE_URL": upstream_url, "IRONRT_OFFLINE": "0"}
    settings = Settings.load(env)
    db = await Database.open(home / "ironrt.db")
    ledger, books = Ledger(), Books(db)
    await books.open_journal(settings.journal_path)
    govs = {}
    for agent_id in TOKENS.values():
        own = ledger.scope(f"agent:{agent_id}")
        if budget_usd is not None:
            own.budget_nanos = budget_usd * 10**9
        govs[agent_id] = AgentGovernance(
            agent_id,
            name=agent_id,
            scopes=(own, ledger.scope("global")),
            pii="off" if agent_id == "ag-off" else "detect",
        )
    keys = ProviderKeys({"openai": "sk-bench"}, {"openai": "OPENAI_API_KEY"})
    return RouterService(settings, db, EventBus(db), _Agents(ledger, books, govs), keys), db


async def run(blocks: int, calls: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="irt-bench-gov-", dir="/tmp"))
    service, db = await bench_router(home)
    app = service.app
    app.transport = _Canned()
    floor_home = home / "floor"
    floor_home.mkdir()
    floor = FloorGovernance(floor_home, {"tok-floor": "ag-floor"})
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def router_calls(scope: dict[str, Any], n: int) -> None:
        for _ in range(n):
            await app(scope, receive, send)

    async def floor_calls(n: int) -> None:
        for _ in range(n):
            admitted = floor.admit(b"Bearer tok-floor", BODY)
            assert not isinstance(admitted, int), admitted
            floor.settle(*admitted, ANSWER, time.monotonic())

    paths = {
        "floor": floor_calls,
        "router": lambda n: router_calls(_scope("tok-detect"), n),
        "router_pii_off": lambda n: router_calls(_scope("tok-off"), n),
    }
    per_call: dict[str, list[float]] = {name: [] for name in paths}
    async with asyncio.TaskGroup() as tg:
        tasks = [
            tg.create_task(service.run()),
            tg.create_task(floor.books.commit_behind()),
        ]
        for call in paths.values():  # warm: imports, price tables, the first commits
            await call(200)
        for block in range(blocks):
            names = list(paths)
            order = names[block % len(names) :] + names[: block % len(names)]
            for name in order:
                began = time.process_time()
                await paths[name](calls)
                await asyncio.sleep(0.03)  # the commit behind this block, counted with it
                per_call[name].append((time.process_time() - began) / calls * 1e6)
        for task in tasks:
            task.cancel()
    # aiosqlite's connection thread is not a daemon: left open, it keeps the process (and
    # `just bench`) from ever exiting.
    await service.aclose()
    await db.close()
    assert statuses and set(statuses) == {200}, set(statuses)
    out: dict[str, Any] = {"machine": machine(), "blocks": blocks, "calls": calls}
    for name, values in per_call.items():
        out[name] = {"min_us": min(values), "median_us": statistics.median(values)}
    out["router_over_floor"] = out["router"]["min_us"] / out["floor"]["min_us"]
    out["pii_us"] = out["router"]["min_us"] - out["router_pii_off"]["min_us"]
    return out


def report(r: dict[str, Any]) -> None:
    rows = [
        [name, r[name]["min_us"], r[name]["median_us"], r[name]["min_us"] / r["floor"]["min_us"]]
        for name in ("floor", "router", "router_pii_off")
    ]
    print(
        table(
            f"Per-call CPU in process, µs ({r['blocks']} blocks of {r['calls']} calls each)",
            ["path", "min", "median", "x floor"],
            rows,
        )
    )
    print(
        f"router / floor: {r['router_over_floor']:.2f}x; PII detect on a short prompt costs "
        f"the router {r['pii_us']:.1f} µs"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--calls", type=int, default=600)
    args = ap.parse_args(argv)
    result = asyncio.run(run(args.blocks, args.calls))
    report(result)
    print(f"results: {write_results('governance', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
