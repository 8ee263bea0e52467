"""Usage rollups and the traces listing at the store: written by the books with each
trace (hourly and daily), summed exactly for any time range (checked against a plain SUM
over the traces, with ranges that start and end on and inside day and hour boundaries),
paged by cursor, pruned by retention without changing the sums, and backfilled when a
schema v9 or v10 database is upgraded."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ironrt.config import ConfigError, Settings
from ironrt.protocol import Trace
from ironrt.store import traces as trace_store
from ironrt.store import usage as usage_store
from ironrt.store.books import Books
from ironrt.store.db import Database, migrations
from ironrt.store.usage import iso, parse_time
from tests.records import old_database

BASE = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
AGENTS = (("a1", "alpha", "proj-a"), ("b2", "beta", "proj-b"), ("c3", "gamma", None))
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-haiku-4-5")


def trace(
    at: dt.datetime,
    *,
    agent: tuple[str, str, str | None] = AGENTS[0],
    model: str = "gpt-4o",
    cost: float | None = 0.001,
    status: int = 200,
    refusal: str | None = None,
    tokens: tuple[int, int, int, int] = (100, 20, 5, 3),
) -> Trace:
    i, o, cached, reasoning = tokens
    return Trace(
        id=0,
        agent_id=agent[0],
        provider="anthropic" if model.startswith("claude") else "openai",
        model=model,
        endpoint="chat.completions",
        stream=False,
        status_code=status,
        input_tokens=i,
        output_tokens=o,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        cost_usd=cost,
        latency_ms=12.5,
        ttfb_ms=None,
        error=None if status < 400 else f"upstream answered {status}",
        started_at=iso(at),
        agent_name=agent[1],
        project=agent[2],
        refusal=refusal,
    )


async def record(db: Database, traces: list[Trace]) -> None:
    """Through the books, as the router and library mode write them."""
    books = Books(db)
    async with anyio.create_task_group() as tg:
        tg.start_soon(books.run)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as writers:
                for t in traces:
                    writers.start_soon(_record_one, books, t)
        books.close()


async def _record_one(books: Books, t: Trace) -> None:
    assert await books.record(t, 0.0, ())


def mixed(n: int, seed: int = 7) -> list[Trace]:
    """`n` calls spread over three days: agents, projects, models, errors, refusals,
    unpriced ones, at millisecond times that fall anywhere in their hour."""
    import random

    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        at = BASE + dt.timedelta(milliseconds=rnd.randrange(3 * 86400 * 1000))
        kind = rnd.random()
        out.append(
            trace(
                at,
                agent=rnd.choice(AGENTS),
                model=rnd.choice(MODELS),
                cost=None if kind < 0.1 else round(rnd.uniform(0.0001, 0.01), 6),
                status=500 if 0.1 <= kind < 0.2 else 402 if kind >= 0.9 else 200,
                refusal="budget_exhausted" if kind >= 0.9 else None,
                tokens=(
                    rnd.randrange(500),
                    rnd.randrange(200),
                    rnd.randrange(50),
                    rnd.randrange(9),
                ),
            )
        )
    return out


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "ironrt.db")
    try:
        yield database
    finally:
        await database.close()


# ---- a database shared by the property tests (built once) ------------------------------------


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("usage") / "ironrt.db"

    async def build() -> None:
        database = await Database.open(path)
        try:
            await record(database, mixed(600))
        finally:
            await database.close()

    anyio.run(build)
    yield path


_KEYS = {
    "agent": "agent_id",
    "project": "COALESCE(project, '')",
    "provider": "provider",
    "model": "model",
    "day": "substr(started_at, 1, 10) || 'T00:00:00Z'",
    "hour": "substr(started_at, 1, 13) || ':00:00Z'",
}


def plain_sums(
    path: Path, by: str, since: str | None, until: str | None, agent: str | None = None
) -> dict[str, tuple[int, int, int, int, int, int, float, int]]:
    """The baseline: one GROUP BY over every trace of the range, no rollups."""
    terms, params = ["1"], []
    for sql, value in (("started_at >= ?", since), ("started_at < ?", until)):
        if value is not None:
            terms.append(sql)
            params.append(value)
    if agent is not None:
        terms.append("agent_id = ?")
        params.append(agent)
    con = sqlite3.connect(path)
    try:
        rows = con.execute(
            f"SELECT {_KEYS[by]}, SUM(refusal IS NULL), SUM(refusal IS NOT NULL), "
            "SUM(refusal IS NULL AND (status_code >= 400 OR error IS NOT NULL)), "
            "SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), "
            "COALESCE(SUM(cost_usd), 0), SUM(refusal IS NULL AND cost_usd IS NULL) "
            f"FROM traces WHERE {' AND '.join(terms)} GROUP BY 1",
            params,
        ).fetchall()
    finally:
        con.close()
    return {r[0]: tuple(r[1:]) for r in rows}  # type: ignore[misc]


def rollup_sums(
    path: Path, by: str, since: str | None, until: str | None, agent: str | None = None
) -> dict[str, tuple[int, int, int, int, int, int, float, int]]:
    async def run() -> Any:
        database = await Database.open(path)
        try:
            return await usage_store.usage(
                database,
                by,  # type: ignore[arg-type]
                since=since,
                until=until,
                agent_id=agent,
            )
        finally:
            await database.close()

    return _keyed(anyio.run(run))


def same(a: dict[str, tuple[Any, ...]], b: dict[str, tuple[Any, ...]]) -> None:
    assert set(a) == set(b)
    for key in a:
        *counts_a, cost_a, unpriced_a = a[key]
        *counts_b, cost_b, unpriced_b = b[key]
        assert (counts_a, unpriced_a) == (counts_b, unpriced_b), key
        assert cost_a == pytest.approx(cost_b, rel=1e-9, abs=1e-12), key


def moment(day: int, hour: int = 0, ms: int = 0) -> str:
    return iso(BASE + dt.timedelta(days=day, hours=hour, milliseconds=ms))


#: Anywhere from an hour before the first call to a day after the last, and just as
#: often on the edges where the rollups hand over: a day's start, an hour's start, a
#: millisecond either side of them, inside an hour.
moments = st.integers(min_value=-3600 * 1000, max_value=4 * 86400 * 1000).map(
    lambda ms: iso(BASE + dt.timedelta(milliseconds=ms))
) | st.builds(
    moment,
    st.integers(min_value=-1, max_value=4),
    st.sampled_from([0, 1, 5, 23]),
    st.sampled_from([0, 1, -1, 17 * 60_000 + 3250]),
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    by=st.sampled_from(list(usage_store.GROUPS)),
    since=st.none() | moments,
    until=st.none() | moments,
    agent=st.none() | st.sampled_from([a[0] for a in AGENTS]),
)
def test_any_range_sums_exactly_what_a_plain_sum_over_the_traces_does(
    filled: Path, by: str, since: str | None, until: str | None, agent: str | None
) -> None:
    if since is not None and until is not None and until <= since:
        since, until = until, since
        if since == until:
            return
    same(rollup_sums(filled, by, since, until, agent), plain_sums(filled, by, since, until, agent))


def test_edge_hours_are_partial_and_exact(filled: Path) -> None:
    since = iso(BASE + dt.timedelta(hours=5, minutes=17, seconds=3, milliseconds=250))
    until = iso(BASE + dt.timedelta(days=1, hours=2, minutes=41, milliseconds=1))
    for by in ("hour", "model", "agent"):
        same(rollup_sums(filled, by, since, until), plain_sums(filled, by, since, until))
    hours = rollup_sums(filled, "hour", since, until)
    assert min(hours) == iso(BASE + dt.timedelta(hours=5))[:13] + ":00:00Z"
    # Within one hour: no whole hour at all, the traces alone.
    inside = iso(BASE + dt.timedelta(hours=5, minutes=50))
    same(rollup_sums(filled, "model", since, inside), plain_sums(filled, "model", since, inside))


#: Edges where the parts of a range hand over (the data spans 2026-03-01..03, UTC).
EDGES = (
    None,
    moment(0),  # a day's start (the first)
    moment(0, 5),  # an hour's start
    moment(0, 5, 17 * 60_000 + 3250),  # inside an hour
    moment(1, 0, -1),  # the last millisecond of a day
    moment(1),  # the next day's start
    moment(1, 0, 1),  # a millisecond into it
    moment(1, 23),  # the start of a day's last hour
    moment(2, 9, 59 * 60_000 + 999),  # inside an hour, late
    moment(3),  # after the last call
)


def test_ranges_ending_on_and_inside_days_and_hours_are_exact(filled: Path) -> None:
    cases = [
        (by, since, until)
        for by in usage_store.GROUPS
        for since in EDGES
        for until in EDGES
        if since is None or until is None or since < until
    ]

    async def run() -> list[dict[str, tuple[Any, ...]]]:
        database = await Database.open(filled)
        try:
            return [
                _keyed(await usage_store.usage(database, by, since=since, until=until))  # type: ignore[arg-type]
                for by, since, until in cases
            ]
        finally:
            await database.close()

    answers = anyio.run(run)
    for (by, since, until), found in zip(cases, answers, strict=True):
        same(found, plain_sums(filled, by, since, until))
    # Not vacuous: but for the ranges outside the three days of calls (and a 1 ms one),
    # each holds calls.
    assert sum(1 for found in answers if found) > 0.7 * len(cases)


def test_a_range_is_read_in_days_hours_and_traces() -> None:
    """Which part comes from where: whole days from the daily rollups (not by hour), the
    whole hours of partial days from the hourly ones, partial hours from the traces."""
    since, until = moment(0, 5, 17 * 60_000 + 3250), moment(2, 9, 59 * 60_000 + 999)
    assert sorted(usage_store.parts("model", since, until)) == [
        ("daily", moment(1), moment(2)),
        ("hourly", moment(0, 6), moment(1)),
        ("hourly", moment(2), moment(2, 9)),
        ("traces", since, moment(0, 6)),
        ("traces", moment(2, 9), until),
    ]
    assert sorted(usage_store.parts("hour", since, until)) == [
        ("hourly", moment(0, 6), moment(2, 9)),
        ("traces", since, moment(0, 6)),
        ("traces", moment(2, 9), until),
    ]
    # On day starts: days alone; on hour starts within a day: hours alone.
    assert usage_store.parts("agent", moment(0), moment(2)) == [("daily", moment(0), moment(2))]
    assert usage_store.parts("day", moment(1, 3), moment(1, 7)) == [
        ("hourly", moment(1, 3), moment(1, 7))
    ]
    # Unbounded ends are whole days; inside one hour, the traces alone.
    assert sorted(usage_store.parts("project", None, moment(1, 2))) == [
        ("daily", None, moment(1)),
        ("hourly", moment(1), moment(1, 2)),
    ]
    assert usage_store.parts("provider", moment(1, 2, 5), None) == [
        ("traces", moment(1, 2, 5), moment(1, 3)),
        ("daily", moment(2), None),
        ("hourly", moment(1, 3), moment(2)),
    ]
    inside = (moment(1, 2, 5), moment(1, 2, 900))
    assert usage_store.parts("day", *inside) == [("traces", *inside)]


def test_the_daily_rollups_are_the_hourly_ones_summed_by_day(filled: Path) -> None:
    con = sqlite3.connect(filled)
    try:
        figures = (
            "SUM(calls), SUM(errors), SUM(input_tokens), SUM(output_tokens), "
            "SUM(cached_tokens), SUM(reasoning_tokens), ROUND(SUM(cost_usd), 9), "
            "SUM(unpriced_calls)"
        )
        key = "agent_id, agent_name, project, provider, model, refused"
        daily = con.execute(
            f"SELECT day, {key}, {figures} FROM usage_daily GROUP BY day, {key} ORDER BY 1, 2, 3, 4, 5, 6, 7"
        ).fetchall()
        hourly = con.execute(
            f"SELECT substr(hour, 1, 10), {key}, {figures} FROM usage_hourly "
            f"GROUP BY 1, {key} ORDER BY 1, 2, 3, 4, 5, 6, 7"
        ).fetchall()
    finally:
        con.close()
    assert len(daily) > 3 * len(AGENTS) and daily == hourly


def _keyed(found: Any) -> dict[str, tuple[Any, ...]]:
    return {
        r.key: (
            r.llm_calls,
            r.refused_calls,
            r.errors,
            r.input_tokens,
            r.output_tokens,
            r.cached_tokens,
            r.cost_usd,
            r.unpriced_calls,
        )
        for r in found.rows
    }


# ---- by hour and day, refused apart ---------------------------------------------------------


async def test_by_hour_and_day_refused_counted_apart(db: Database) -> None:
    h = BASE + dt.timedelta(hours=9)
    await record(
        db,
        [
            trace(h + dt.timedelta(minutes=1), cost=0.5),
            trace(h + dt.timedelta(minutes=59, seconds=59, milliseconds=999), cost=0.25),
            trace(h + dt.timedelta(hours=1), cost=None),
            trace(h + dt.timedelta(hours=1, minutes=5), status=502, cost=0.0),
            trace(h + dt.timedelta(hours=1, minutes=6), status=402, cost=None, refusal="x"),
            trace(h + dt.timedelta(days=1), agent=AGENTS[1], cost=1.0),
        ],
    )
    by_hour = await usage_store.usage(db, "hour")
    assert [
        (r.key, r.llm_calls, r.refused_calls, r.errors, r.unpriced_calls) for r in by_hour.rows
    ] == [
        ("2026-03-01T09:00:00Z", 2, 0, 0, 0),
        ("2026-03-01T10:00:00Z", 2, 1, 1, 1),
        ("2026-03-02T09:00:00Z", 1, 0, 0, 0),
    ]
    assert by_hour.rows[0].cost_usd == pytest.approx(0.75)
    assert (by_hour.llm_calls, by_hour.refused_calls) == (5, 1)
    assert by_hour.total_usd == pytest.approx(1.75)
    by_day = await usage_store.usage(db, "day")
    assert [(r.key, r.llm_calls, r.refused_calls) for r in by_day.rows] == [
        ("2026-03-01T00:00:00Z", 4, 1),
        ("2026-03-02T00:00:00Z", 1, 0),
    ]
    by_agent = await usage_store.usage(db, "agent")
    assert [(r.key, r.name, r.llm_calls) for r in by_agent.rows] == [
        ("b2", "beta", 1),
        ("a1", "alpha", 4),
    ]
    by_project = await usage_store.usage(db, "project", project="proj-a")
    assert [(r.key, r.llm_calls, r.refused_calls) for r in by_project.rows] == [("proj-a", 4, 1)]
    # since: the calls from 10:00 on (a whole-hour edge), until: before the second day.
    later = await usage_store.usage(
        db, "model", since=iso(h + dt.timedelta(hours=1)), until=iso(h + dt.timedelta(hours=2))
    )
    assert [(r.llm_calls, r.refused_calls) for r in later.rows] == [(2, 1)]
    assert later.since == "2026-03-01T10:00:00.000Z"


def test_times_are_iso_or_durations_before_now() -> None:
    now = dt.datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)
    assert parse_time("24h", now) == "2026-11-29T12:00:00.123Z"
    assert parse_time("30m", now) == "2026-11-30T11:30:00.123Z"
    assert parse_time("7d", now) == "2026-11-23T12:00:00.123Z"
    assert parse_time("2026-11-30T09:00:00Z", now) == "2026-11-30T09:00:00.000Z"
    assert parse_time("2026-11-30T10:00:00+01:00", now) == "2026-11-30T09:00:00.000Z"
    assert parse_time("2026-11-30", now) == "2026-11-30T00:00:00.000Z"
    for bad in ("yesterday", "24", "-1h", "0h", "1y", "2026-13-01", ""):
        with pytest.raises(ValueError, match=r"ISO 8601|ten years"):
            parse_time(bad, now)


# ---- the traces listing ---------------------------------------------------------------------


async def test_paging_returns_each_trace_once_newest_first(db: Database) -> None:
    calls = mixed(57, seed=3)
    await record(db, calls)
    seen: list[Trace] = []
    cursor: int | None = None
    pages = 0
    while True:
        page, next_cursor = await trace_store.page(db, trace_store.TraceQuery(before_id=cursor), 5)
        seen += page
        pages += 1
        if next_cursor is None:
            break
        cursor = trace_store.decode_cursor(next_cursor)
    assert pages == 12 and len(seen) == 57
    ids = [t.id for t in seen]
    assert ids == sorted(set(ids), reverse=True)
    # Filters: each page only matches, and all matches are found.
    refused, _ = await trace_store.page(db, trace_store.TraceQuery(status="refused"), 1000)
    assert len(refused) == sum(c.refusal is not None for c in calls) > 0
    assert all(t.refusal == "budget_exhausted" for t in refused)
    q = trace_store.TraceQuery(model="gpt-4o", status="ok")
    found, _ = await trace_store.page(db, q, 1000)
    expected = [c for c in calls if c.model == "gpt-4o" and c.status_code < 400]
    assert len(found) == len(expected) > 0
    mine, _ = await trace_store.page(db, trace_store.TraceQuery(agent_id="a1"), 1000)
    assert len(mine) == sum(c.agent_id == "a1" for c in calls) > 0
    errors, _ = await trace_store.page(db, trace_store.TraceQuery(status="error"), 1000)
    assert len(errors) == sum(c.refusal is None and c.status_code >= 400 for c in calls)
    ok, _ = await trace_store.page(db, trace_store.TraceQuery(status="ok"), 1000)
    assert len(ok) + len(errors) + sum(c.refusal is not None for c in calls) == 57
    since, until = iso(BASE + dt.timedelta(days=1)), iso(BASE + dt.timedelta(days=2))
    ranged, _ = await trace_store.page(db, trace_store.TraceQuery(since=since, until=until), 1000)
    assert len(ranged) == sum(since <= c.started_at < until for c in calls)
    project, _ = await trace_store.page(db, trace_store.TraceQuery(project="proj-b"), 1000)
    assert {t.agent_id for t in project} == {"b2"}


async def test_get_by_id(db: Database) -> None:
    await record(db, [trace(BASE, model="gpt-4o-mini", cost=None)])
    (listed,), _ = await trace_store.page(db, trace_store.TraceQuery(), 10)
    assert await trace_store.get(db, listed.id) == listed
    assert listed.cost_usd is None and listed.project == "proj-a" and listed.agent_name == "alpha"
    assert await trace_store.get(db, listed.id + 1) is None


def test_a_cursor_is_opaque_and_checked() -> None:
    assert trace_store.decode_cursor(trace_store.encode_cursor(1234)) == 1234
    for bad in ("", "abc", "dDE6eA", "!!!", trace_store.encode_cursor(5) + "x"):
        with pytest.raises(ValueError):
            trace_store.decode_cursor(bad)


# ---- retention ------------------------------------------------------------------------------


async def test_retention_prunes_traces_and_keeps_the_sums(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trace_store, "PRUNE_BATCH", 7)  # several batches
    await record(db, mixed(80, seed=11))
    before = {by: await usage_store.usage(db, by) for by in ("agent", "hour", "model", "day")}
    cutoff = iso(BASE + dt.timedelta(days=2))
    old = await db.scalar("SELECT COUNT(*) FROM traces WHERE started_at < ?", (cutoff,))
    assert old > 14
    assert await trace_store.prune(db, cutoff, max_batches=2) == 14
    assert await trace_store.prune(db, cutoff) == old - 14
    assert await db.scalar("SELECT COUNT(*) FROM traces WHERE started_at < ?", (cutoff,)) == 0
    assert await db.scalar("SELECT COUNT(*) FROM traces") == 80 - old
    for by, usage in before.items():
        assert await usage_store.usage(db, by) == usage  # type: ignore[arg-type]
    # Whole hours of a range keep their exact sums too.
    whole = (iso(BASE), iso(BASE + dt.timedelta(days=1)))
    assert (await usage_store.usage(db, "model", since=whole[0], until=whole[1])).llm_calls > 0
    # Start-up counters come from the rollups, so they survive pruning as well.
    totals = await trace_store.totals_by_agent(db)
    assert sum(t[0] for t in totals.values()) == 80


async def test_prune_expired_keeps_recent_traces(db: Database) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    await record(db, [trace(now - dt.timedelta(hours=3)), trace(now - dt.timedelta(minutes=5))])
    assert await trace_store.prune_expired(db, 3600) == 1
    (kept,), _ = await trace_store.page(db, trace_store.TraceQuery(), 10)
    assert kept.started_at > iso(now - dt.timedelta(hours=1))
    assert (await usage_store.usage(db, "agent")).llm_calls == 2


def test_the_retention_setting(tmp_path: Path) -> None:
    def load(value: str) -> int:
        return Settings.load(
            {"IRONRT_HOME": str(tmp_path), "IRONRT_TRACE_RETENTION": value}
        ).trace_retention_s

    assert Settings.load({"IRONRT_HOME": str(tmp_path)}).trace_retention_s == 30 * 86400
    assert (load("12h"), load("90d"), load("0"), load("off"), load(" OFF ")) == (
        12 * 3600,
        90 * 86400,
        0,
        0,
        0,
    )
    for bad in ("30m", "1y", "-1d", "3651d", "forever", "1.5d"):
        with pytest.raises(ConfigError, match=r"IRONRT_TRACE_RETENTION must be .*1h to 3650d"):
            load(bad)


# ---- upgrading a v9 database ----------------------------------------------------------------


def test_a_v9_database_with_traces_gets_its_rollups(tmp_path: Path) -> None:
    path = tmp_path / "v9.db"
    old_database(path, 9)
    calls = mixed(40, seed=5)
    con = sqlite3.connect(path)
    try:
        for t in calls:
            con.execute(*trace_store.insert_statement(t))
        # Early schemas wrote times without milliseconds.
        con.execute(
            "UPDATE traces SET started_at = substr(started_at, 1, 19) || 'Z' WHERE id % 2 = 0"
        )
        con.commit()
    finally:
        con.close()
    assert migrations()[-1][0] >= 10
    anyio.run(_upgraded_sums_match, path, calls)
    same(rollup_sums(path, "hour", None, None), plain_sums(path, "hour", None, None))
    same(rollup_sums(path, "agent", None, None), plain_sums(path, "agent", None, None))


async def _upgraded_sums_match(path: Path, calls: list[Trace]) -> None:
    database = await Database.open(path)
    try:
        short = await database.scalar("SELECT COUNT(*) FROM traces WHERE length(started_at) != 24")
        assert short == 0
        for by in usage_store.GROUPS:
            found = await usage_store.usage(database, by)
            assert found.llm_calls == sum(t.refusal is None for t in calls)
            assert found.refused_calls == sum(t.refusal is not None for t in calls)
            assert found.total_usd == pytest.approx(sum(t.cost_usd or 0 for t in calls))
        rollups = await database.scalar("SELECT COUNT(*) FROM usage_hourly")
        assert 0 < rollups <= 40
    finally:
        await database.close()


# ---- upgrading a v10 database ---------------------------------------------------------------


def test_a_v10_database_gets_daily_rollups_from_its_hourly_ones(tmp_path: Path) -> None:
    """The daily rollups are built from the hourly ones, which hold the calls retention has
    pruned: a day whose traces are gone still counts in full."""
    path = tmp_path / "v10.db"
    old_database(path, 10)
    calls = mixed(90, seed=13)
    con = sqlite3.connect(path)
    try:
        for t in calls:
            # What the v10 books wrote: the trace and its hour's rollup.
            con.execute(*trace_store.insert_statement(t))
            hourly, daily = trace_store.rollup_statements(t)
            assert "usage_daily" in daily[0]
            con.execute(*hourly)
        con.commit()
    finally:
        con.close()
    before = {by: plain_sums(path, by, None, None) for by in usage_store.GROUPS}
    first_day = plain_sums(path, "model", None, moment(1))
    con = sqlite3.connect(path)
    try:
        pruned = con.execute("DELETE FROM traces WHERE started_at < ?", (moment(1),)).rowcount
        con.commit()
    finally:
        con.close()
    assert 0 < pruned < len(calls)
    assert migrations()[-1][0] >= 11
    for by in usage_store.GROUPS:
        same(rollup_sums(path, by, None, None), before[by])
    # The pruned day, read from the daily rollups alone, and a range through it.
    assert usage_store.parts("model", None, moment(1)) == [("daily", None, moment(1))]
    same(rollup_sums(path, "model", None, moment(1)), first_day)
    same(
        rollup_sums(path, "day", moment(1), None),
        {k: v for k, v in before["day"].items() if k >= moment(1)[:10]},
    )
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == migrations()[-1][0]
        days = con.execute("SELECT COUNT(DISTINCT day) FROM usage_daily").fetchone()[0]
    finally:
        con.close()
    assert days == 3
