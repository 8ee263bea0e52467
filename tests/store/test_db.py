"""The store: migrations from an empty or older database, refusal of a newer one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ironrt.protocol import AgentStatus
from ironrt.store import agents as agent_store
from ironrt.store import scopes as scope_store
from ironrt.store import traces as trace_store
from ironrt.store.agents import StoredAgent
from ironrt.store.db import Database, SchemaTooNew, migrations
from tests.records import agent


async def test_fresh_database_gets_the_latest_schema(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    try:
        assert await db.scalar("PRAGMA user_version") == migrations()[-1][0]
        assert await db.scalar("PRAGMA journal_mode") == "wal"
    finally:
        await db.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "b.db")
    con.execute("PRAGMA user_version = 999")
    con.close()
    with pytest.raises(SchemaTooNew, match="v999"):
        await Database.open(tmp_path / "b.db")


async def test_a_failing_migration_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pending migrations go in one transaction: one that fails (here a newer step
    whose second statement is wrong) applies none of them, the version stays, the error
    names the statement's problem, and the next start (fixed) applies them all."""
    path = tmp_path / "m.db"
    con = sqlite3.connect(path)
    con.executescript(migrations()[0][1])
    con.execute("PRAGMA user_version = 1")
    con.close()
    steps = migrations()
    broken = (
        steps[-1][0] + 1,
        "CREATE TABLE later_step (id INTEGER);\nINSERT INTO no_such_table VALUES (1);\n",
    )
    monkeypatch.setattr("ironrt.store.db.migrations", lambda: [*steps, broken])
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        await Database.open(path)
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        assert "later_step" not in names
        assert "scopes" not in names  # v2's table: not applied either
    finally:
        con.close()
    monkeypatch.setattr("ironrt.store.db.migrations", lambda: steps)
    fresh = await Database.open(tmp_path / "fresh.db")
    db = await Database.open(path)
    try:
        assert await db.scalar("PRAGMA user_version") == steps[-1][0]
        schema = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
        got = [tuple(r) for r in await db.fetchall(schema)]
        assert got == [tuple(r) for r in await fresh.fetchall(schema)]
    finally:
        await db.close()
        await fresh.close()


async def test_v1_database_round_trips_agents(tmp_path: Path) -> None:
    """A database written at schema v1 (as shipped in 0.1) still loads as it was saved."""
    path = tmp_path / "c.db"
    con = sqlite3.connect(path)
    con.executescript(migrations()[0][1])
    con.execute("PRAGMA user_version = 1")
    con.execute(
        "INSERT INTO agents (id, name, status, pid, pid_started, command, cwd, env, restart, "
        "max_restarts, restarts, budget_usd, spent_usd, on_budget, pii, created_at) VALUES "
        "('abc123', 'old', 'running', 4242, 1.5, '[\"python\", \"a.py\"]', '/tmp', '{\"A\": \"1\"}', "
        "'on-failure', 3, 1, 10.0, 2.5, 'block', 'detect', '2026-01-01T00:00:00Z')"
    )
    con.execute(
        "INSERT INTO traces (agent_id, provider, model, endpoint, stream, status_code, "
        "input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_usd, latency_ms, "
        "started_at) VALUES ('abc123', 'openai', 'gpt-4o-mini', 'chat', 0, 200, 10, 5, 0, 0, "
        "2.5, 12.0, '2026-01-01T00:00:01Z')"
    )
    con.commit()
    con.close()
    db = await Database.open(path)
    try:
        # v4 rebuilt `traces` with a nullable cost: the v1 row kept its id and values.
        (trace,) = await trace_store.query(db, agent_id="abc123")
        assert (trace.id, trace.model, trace.cost_usd, trace.input_tokens) == (
            1,
            "gpt-4o-mini",
            2.5,
            10,
        )
        (stored,) = await agent_store.load_all(db)
        r = stored.record
        assert (r.id, r.name, r.status, r.pid, r.restarts, r.spent_usd) == (
            "abc123",
            "old",
            AgentStatus.RUNNING,
            4242,
            1,
            2.5,
        )
        assert r.command == ["python", "a.py"] and stored.env == {"A": "1"}
        assert stored.pid_started == 1.5
        assert r.project is None and r.stop_reason is None
        # v3: PM2's restart semantics default for an old agent; its cap is kept.
        assert (r.max_restarts, r.min_uptime_s, r.unstable_restarts, r.lost) == (3, 5.0, 0, False)
        assert (r.log_max_bytes, r.log_keep, r.spec_digest) == (10 * 1024 * 1024, 3, None)
        # v2 moved budgets into scopes: the agent's budget, and its spend as the global's.
        scopes = {s.key: s for s in await scope_store.load_all(db)}
        assert set(scopes) == {"agent:abc123", "global"}
        own = scopes["agent:abc123"]
        assert (own.budget_usd, own.spent_nanos, own.window) == (10.0, 2_500_000_000, None)
        assert scopes["global"].spent_nanos == 2_500_000_000
        assert scopes["global"].budget_nanos is None
        stored.record.status = AgentStatus.EXITED
        await agent_store.save(db, stored)
        (again,) = await agent_store.load_all(db)
        assert again.record.status is AgentStatus.EXITED
    finally:
        await db.close()


async def test_concurrent_transactions_do_not_interleave(tmp_path: Path) -> None:
    import anyio

    db = await Database.open(tmp_path / "d.db")
    try:
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(
                    db.write_many,
                    [
                        ("INSERT INTO meta(key, value) VALUES(?, ?)", [(f"k{i}", "x")]),
                        ("INSERT INTO meta(key, value) VALUES(?, ?)", [(f"j{i}", "y")]),
                    ],
                )
        assert await db.scalar("SELECT COUNT(*) FROM meta") == 100
    finally:
        await db.close()


def _agent(agent_id: str) -> StoredAgent:
    record = agent(id=agent_id, name="n", status=AgentStatus.STARTING, max_restarts=0)
    return StoredAgent(record, {}, None, None)


async def test_delete(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "e.db")
    try:
        await agent_store.save(db, _agent("one"))
        await agent_store.delete(db, "one")
        assert await agent_store.load_all(db) == []
    finally:
        await db.close()
