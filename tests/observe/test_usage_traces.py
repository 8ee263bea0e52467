"""Usage over time and the traces API end to end: a real daemon, real agent processes
calling through the router with the openai SDK, a fake upstream with latency over TCP.
Two agents in two projects make calls, a third is refused by its budget, a fourth is
removed after its call; then usage, paging, get-by-id and the CLI are read back."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from ironrt.errors import InvalidRequest, IronrtError
from ironrt.protocol import Trace
from ironrt.store.books import Books
from ironrt.store.db import Database
from ironrt.store.usage import iso
from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream
from tests.records import trace
from tests.router.helpers import agent_script, governed_env

CALLER = """
import sys, openai
c = openai.OpenAI(max_retries=0)
for _ in range(int(sys.argv[1])):
    try:
        c.chat.completions.create(
            model=sys.argv[2], max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
    except openai.APIStatusError as exc:
        print("refused", exc.status_code)
"""


class Fleet:
    def __init__(self, d: TempDaemon, ids: dict[str, str]) -> None:
        self.d = d
        self.ids = ids


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    script = agent_script(tmp, "caller.py", CALLER)
    with (
        FakeUpstream(latency=0.02) as up,
        TempDaemon(offline=False, env=governed_env(up.url)) as d,
    ):
        ids = {}
        # All at once (each is a Python process importing openai: seconds on a busy host).
        for name, project, calls, model, budget in (
            ("alpha-bot", "alpha", 3, "gpt-4o-mini", None),
            ("beta-bot", "beta", 2, "gpt-4o", None),
            ("broke", "alpha", 1, "gpt-4o", 1e-9),
            ("gone", "beta", 1, "gpt-4o-mini", None),
        ):
            args = [str(calls), model]
            ids[name] = d.rt.start_agent(script, args, name=name, project=project, budget=budget)
        for name, agent_id in ids.items():
            final = d.rt.wait(agent_id, timeout=60)
            assert final.exit_code == 0, (name, d.rt.logs(agent_id, tail=100))
        d.rt.remove_agent("gone")
        yield Fleet(d, ids)


def test_usage_by_agent_project_and_model_counts_refused_apart(fleet: Fleet) -> None:
    rt, ids = fleet.d.rt, fleet.ids
    by_agent = {r.key: r for r in rt.usage(by="agent").rows}
    assert {k: (r.name, r.llm_calls, r.refused_calls) for k, r in by_agent.items()} == {
        ids["alpha-bot"]: ("alpha-bot", 3, 0),
        ids["beta-bot"]: ("beta-bot", 2, 0),
        ids["broke"]: ("broke", 0, 1),
        ids["gone"]: ("gone", 1, 0),
    }
    assert by_agent[ids["broke"]].cost_usd == 0 and by_agent[ids["beta-bot"]].cost_usd > 0
    total = rt.usage(by="model")
    assert (total.llm_calls, total.refused_calls) == (6, 1)
    models = {r.key: (r.llm_calls, r.refused_calls) for r in total.rows}
    assert models["gpt-4o-mini"] == (4, 0)
    assert sum(r.input_tokens for r in total.rows) > 0
    projects = {r.key: (r.llm_calls, r.refused_calls) for r in rt.usage(by="project").rows}
    assert projects == {"alpha": (3, 1), "beta": (3, 0)}
    # Filters: an agent by name (and a removed one by id), a project.
    assert [r.llm_calls for r in rt.usage(agent="beta-bot").rows] == [2]
    assert [r.key for r in rt.usage(agent=ids["gone"]).rows] == [ids["gone"]]
    assert [r.key for r in rt.usage(by="provider", project="alpha").rows] == ["openai"]


def test_usage_by_hour_with_since(fleet: Fleet) -> None:
    rt = fleet.d.rt
    now = dt.datetime.now(dt.timezone.utc)
    hours = rt.usage(by="hour", since="1h")
    assert sum(r.llm_calls for r in hours.rows) == 6
    assert all(r.key.endswith(":00:00Z") for r in hours.rows)
    assert hours.since is not None and hours.since < iso(now - dt.timedelta(minutes=59))
    # A range that ends in the middle of the current hour is exact (its edge from traces).
    edged = rt.usage(by="model", since="2h", until=iso(now + dt.timedelta(minutes=1)))
    assert (edged.llm_calls, edged.refused_calls) == (6, 1)
    before = rt.usage(by="model", until=iso(now - dt.timedelta(minutes=30)))
    assert before.llm_calls == 0
    assert rt.usage(by="day", until="1h").rows == []
    ahead = iso(now + dt.timedelta(hours=2))
    assert rt.usage(since=ahead).rows == []


def test_bad_values_are_400s_naming_the_field(fleet: Fleet) -> None:
    rt = fleet.d.rt
    for call, name in (
        (lambda: rt.usage(since="yesterday"), "since"),
        (lambda: rt.usage(until="soon"), "until"),
        (lambda: rt.usage(since="1h", until="2h"), "until"),
        (lambda: rt.usage(by="colour"), "by"),
        (lambda: rt.trace_page(cursor="not-a-cursor"), "cursor"),
        (lambda: rt.trace_page(status="meh"), "status"),
        (lambda: rt.trace_page(since="1 hour"), "since"),
    ):
        with pytest.raises(InvalidRequest) as bad:
            call()
        assert bad.value.field == name and bad.value.status == 400, bad.value


def test_paging_through_every_trace_returns_each_once(fleet: Fleet) -> None:
    rt = fleet.d.rt
    seen: list[Trace] = []
    cursor = None
    while True:
        page = rt.trace_page(limit=2, cursor=cursor)
        assert len(page.traces) <= 2
        seen += page.traces
        cursor = page.next_cursor
        if cursor is None:
            break
    ids = [t.id for t in seen]
    assert len(ids) == 7 and ids == sorted(set(ids), reverse=True)
    assert rt.traces(limit=100) == seen[::-1]  # the list: newest last
    (refused,) = rt.trace_page(status="refused").traces
    assert refused.refusal == "budget_exhausted" and refused.agent_name == "broke"
    assert rt.trace_page(status="error").traces == []
    assert len(rt.trace_page(status="ok").traces) == 6
    assert {t.agent_name for t in rt.trace_page(project="beta").traces} == {"beta-bot", "gone"}
    assert {t.model for t in rt.trace_page(model="gpt-4o").traces} == {"gpt-4o"}
    assert len(rt.trace_page(since="1h", model="gpt-4o-mini").traces) == 4
    assert rt.trace_page(until="1h").traces == []


def test_get_by_id(fleet: Fleet) -> None:
    rt = fleet.d.rt
    newest = rt.trace_page(limit=1).traces[0]
    assert rt.trace(newest.id) == newest
    # The newest call that reached a provider (the refused one may have settled last).
    answered = rt.trace_page(status="ok", limit=1).traces[0]
    assert rt.trace(answered.id) == answered and answered.refusal is None
    assert answered.overhead_ms is not None and answered.latency_ms >= 20  # the upstream's
    with pytest.raises(IronrtError, match="no trace 999999"):
        rt.trace(999_999)


def test_the_cli(fleet: Fleet) -> None:
    d = fleet.d
    shown = d.cli("usage", "--by", "model", "--since", "24h", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = {r["key"]: r for r in json.loads(shown.stdout)["rows"]}
    assert rows["gpt-4o"]["llm_calls"] == 2 and rows["gpt-4o"]["refused_calls"] == 1
    table = d.cli("usage", "--by", "hour", "--since", "24h")
    assert (
        table.returncode == 0 and "REFUSED" in table.stdout and "6 calls, 1 refused" in table.stdout
    )
    listed = d.cli("traces", "--since", "1h", "--model", "gpt-4o", "--json", "-n", "1")
    assert listed.returncode == 0, listed.stderr
    first = json.loads(listed.stdout)
    assert len(first) == 1 and first[0]["model"] == "gpt-4o"
    cursor = listed.stderr.split("--cursor ")[1].split()[0]
    rest = d.cli("traces", "--model", "gpt-4o", "--json", "--all", "--cursor", cursor)
    assert [t["id"] for t in json.loads(rest.stdout)] == [
        t.id for t in d.rt.trace_page(model="gpt-4o").traces[1:]
    ]
    assert json.loads(d.cli("traces", "--errors", "--json").stdout) == []
    refused = d.cli("traces", "--refused")
    assert "budget_exhausted" in refused.stdout and "broke" in refused.stdout
    both = d.cli("traces", "--errors", "--refused")
    assert both.returncode == 1 and "exclusive" in both.stderr
    one = d.cli("trace", str(first[0]["id"]))
    assert one.returncode == 0 and "response_model" in one.stdout and "gpt-4o" in one.stdout
    bad = d.cli("usage", "--since", "yesterday")
    assert bad.returncode == 1 and "since" in bad.stderr and "Traceback" not in bad.stderr


def test_retention_prunes_at_start_and_keeps_usage(tmp_path: Path) -> None:
    d = TempDaemon(env={"IRONRT_TRACE_RETENTION": "1h"})
    try:
        now = dt.datetime.now(dt.timezone.utc)
        anyio.run(_write, d.home / "ironrt.db", [now - dt.timedelta(hours=3), now])
        d.start()
        traces = d.rt.traces()
        assert [t.started_at for t in traces] == [iso(now)]  # the old one was pruned
        assert d.rt.usage().llm_calls == 2  # its call still counts
        con = sqlite3.connect(d.home / "ironrt.db")
        try:
            assert con.execute("SELECT SUM(calls) FROM usage_hourly").fetchone()[0] == 2
        finally:
            con.close()
    finally:
        d.__exit__(None, None, None)


async def _write(path: Path, moments: list[dt.datetime]) -> None:
    db = await Database.open(path)
    await anyio.Path(path).chmod(0o600)
    books = Books(db)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(books.run)
            for moment in moments:
                assert await books.record(_trace(moment), 0.0, ())
            books.close()
    finally:
        await db.close()


def _trace(moment: dt.datetime) -> Trace:
    return trace(
        agent_id="old-agent",
        output_tokens=2,
        cost_usd=0.001,
        latency_ms=5.0,
        started_at=iso(moment),
        agent_name="old",
    )
