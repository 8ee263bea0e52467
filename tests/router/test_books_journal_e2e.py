"""The books' journal through a real daemon: SQLite is committed behind the answers, and
no answered call's cost is lost when it cannot be (its write lock held by another process,
the daemon SIGKILLed before it catches up). The real `openai` SDK, a FakeUpstream with
latency, concurrent calls."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest

from ironrt.store.journal import encode_record, read_records
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import token_agent


@contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """Another process's write transaction on the daemon's database: no commit of the
    daemon's can land while it is held."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        yield
        con.execute("ROLLBACK")
    finally:
        con.close()


def burst(d: TempDaemon, token: str, calls: int) -> list[float]:
    """`calls` chat calls, four at a time, through the SDK: the answers' costs."""
    client = openai.OpenAI(base_url=d.router_url + "/v1", api_key=token, max_retries=0)

    def one(i: int) -> float:
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            max_tokens=20,
            messages=[{"role": "user", "content": f"journal {i}"}],
        )
        assert reply.usage is not None
        return reply.usage.total_tokens

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(calls)))


def books_of(d: TempDaemon, agent_id: str) -> tuple[int, float, float, float, int]:
    """Answered traces, the agent's spend, their sum, the scope's spend, rollup calls."""
    traces = d.rt.traces(agent=agent_id, limit=10_000)
    usage = d.rt.usage("agent", agent=agent_id)
    return (
        len([t for t in traces if t.status_code == 200]),
        d.rt.get_agent(agent_id).spent_usd,
        sum(t.cost_usd or 0.0 for t in traces),
        d.rt.get_limits(f"agent:{agent_id}").spent_usd,
        usage.llm_calls,
    )


def test_answers_go_on_while_sqlite_is_locked_and_a_kill_loses_none(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.latency = 0.2
    agent_id, token = token_agent(gov, tmp_path, budget=5.0)
    burst(gov, token, 2)
    db = gov.home / "ironrt.db"
    journal = gov.home / "ironrt.db-books"
    with write_lock(db):
        answered = burst(gov, token, 16)
        assert len(answered) == 16
        # Acknowledged by the journal, not (cannot be) by SQLite.
        assert len(read_records(journal)) >= 16
        gov.kill()
    gov.start()
    calls, spent, summed, scope_spent, rolled = books_of(gov, agent_id)
    assert calls == 18
    assert rolled == 18
    assert spent > 0
    assert spent == pytest.approx(summed, abs=1e-12)
    assert scope_spent == pytest.approx(spent, abs=1e-12)
    assert journal.stat().st_size == 0  # replayed, then emptied
    # Replayed once: a second restart finds the same books.
    gov.stop()
    gov.start()
    assert books_of(gov, agent_id) == (18, spent, pytest.approx(summed), scope_spent, 18)


def test_commits_held_off_past_the_busy_timeout_are_retried(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The lock outlasts the writer's 5 s busy timeout: the failed commit is retried once
    it is free, and every answered call lands in order, with the running totals right."""
    upstream.latency = 0.2
    agent_id, token = token_agent(gov, tmp_path, budget=5.0)
    with write_lock(gov.home / "ironrt.db"):
        burst(gov, token, 8)
        wait_until(lambda: "could not write" in gov.log(), timeout=15)
    burst(gov, token, 4)
    calls, spent, summed, scope_spent, rolled = books_of(gov, agent_id)
    assert (calls, rolled) == (12, 12)
    assert spent == pytest.approx(summed, abs=1e-12)
    assert scope_spent == pytest.approx(spent, abs=1e-12)


def test_a_read_right_after_an_answer_sees_the_call(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """SQLite is behind the answers, but no read through the daemon is: each call is in
    `traces` and in the agent's spend the moment its answer arrived."""
    agent_id, token = token_agent(gov, tmp_path, budget=5.0)
    client = openai.OpenAI(base_url=gov.router_url + "/v1", api_key=token, max_retries=0)
    for i in range(1, 21):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"read {i}"}]
        )
        assert len(gov.rt.traces(agent=agent_id, limit=100)) == i
        assert gov.rt.usage("agent", agent=agent_id).llm_calls == i


def test_a_calls_events_are_stored_behind_its_answer(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Events a call raises (PII found in its prompt) do not hold its answer: with the
    database's write lock held by another process the answer still comes, and once the
    lock is free the event is stored and read back, after the call's own books."""
    upstream.latency = 0.2
    agent_id, token = token_agent(gov, tmp_path, budget=5.0, pii="detect")
    client = openai.OpenAI(base_url=gov.router_url + "/v1", api_key=token, max_retries=0)
    with write_lock(gov.home / "ironrt.db"):
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "mail me at jane.doe@example.com"}],
        )
        assert reply.choices[0].message.content
        assert "could not store" not in gov.log()
    alerts = [e for e in gov.rt.events(agent=agent_id, kind="PiiAlert")]
    asked = [e for e in alerts if e.direction == "request"]  # type: ignore[attr-defined]
    assert len(asked) == 1
    assert asked[0].types == ["EMAIL"]  # type: ignore[attr-defined]
    assert len(gov.rt.traces(agent=agent_id)) == 1


def test_a_journal_the_database_cannot_take_stops_the_start_and_is_kept(
    tmp_path: Path,
) -> None:
    """A record that cannot be applied (here: a statement on a table that does not exist)
    must not be dropped, since it may be an answered call's cost: the daemon refuses to
    start, in one line, and leaves the journal as it found it."""
    with TempDaemon(offline=True) as d:
        home = d.home
        d.stop()
        journal = home / "ironrt.db-books"
        journal.write_bytes(encode_record(10**9, [("INSERT INTO nowhere VALUES (?)", (1,))]))
        env = {**os.environ, **d.env}
        done = subprocess.run(
            [sys.executable, "-m", "ironrt.daemon"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        line = done.stderr.strip()
        assert line.startswith("ironrt: the daemon cannot start: the books journal")
        assert "no such table: nowhere" in line and "Traceback" not in line
        assert [r.seq for r in read_records(journal)] == [10**9]
        journal.unlink()  # what an operator does once they know what the record was
        d.start()
        assert d.rt.health().ok


def test_control_changes_are_in_the_database_file_when_answered(
    gov: TempDaemon, tmp_path: Path
) -> None:
    """Limits set and an agent removed are in SQLite itself when the request is answered,
    not only in the journal: a reader of the file (another tool, sqlite3) never sees an
    agent gone with its scope still there, or the old limit after `limits set` returned."""
    con = sqlite3.connect(gov.home / "ironrt.db")
    try:
        for budget in (1.0, 2.5, 7.0, 11.0):
            home = tmp_path / str(budget)
            home.mkdir()
            agent_id, _ = token_agent(gov, home, budget=budget)
            scope = f"agent:{agent_id}"
            gov.rt.set_limits(scope, budget_usd=budget * 2, rpm=17)
            row = con.execute(
                "SELECT budget_usd, rpm FROM scopes WHERE scope = ?", (scope,)
            ).fetchone()
            assert row == (budget * 2, 17)
            gov.rt.stop_agent(agent_id, timeout=10)
            gov.rt.remove_agent(agent_id)
            left = con.execute("SELECT COUNT(*) FROM scopes WHERE scope = ?", (scope,))
            assert left.fetchone()[0] == 0
    finally:
        con.close()
