"""An agent record and a call's trace with every field set, for tests of code that reads
one (rendering, restart decisions, the books) without a daemon."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ironrt.protocol import Agent, AgentStatus, Trace
from ironrt.store.db import migrations


def agent_fields() -> dict[str, Any]:
    return {
        "id": "0123456789ab",
        "name": "x",
        "pid": None,
        "status": AgentStatus.RUNNING,
        "exit_code": None,
        "signal": None,
        "command": ["x"],
        "cwd": "/",
        "restart": "no",
        "restarts": 0,
        "max_restarts": 5,
        "budget_usd": None,
        "spent_usd": 0.0,
        "on_budget": "block",
        "pii": "detect",
        "rpm": None,
        "tpm": None,
        "allow_unmetered": False,
        "created_at": "2024-01-01T00:00:00Z",
        "started_at": None,
        "ended_at": None,
    }


def agent(**fields: Any) -> Agent:
    return Agent(**{**agent_fields(), **fields})


def trace(**fields: Any) -> Trace:
    """A settled chat call of agent `a1` (200, 10 in, 5 out), with `fields` changed."""
    base: dict[str, Any] = {
        "id": 0,
        "agent_id": "a1",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "endpoint": "chat.completions",
        "stream": False,
        "status_code": 200,
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 1e-5,
        "latency_ms": 1.0,
        "ttfb_ms": None,
        "error": None,
        "started_at": "2026-01-01T00:00:00.000Z",
    }
    return Trace(**{**base, **fields})


def old_database(path: Path, version: int) -> None:
    """A database at schema `version` (migrations up to it only) holding one ended agent,
    `old`, saved as that version saved agents: what an upgrade finds on disk."""
    con = sqlite3.connect(path)
    try:
        for number, sql in migrations():
            if number <= version:
                con.executescript(sql)
        con.execute(f"PRAGMA user_version = {version}")
        con.execute(
            "INSERT INTO agents (id, name, status, command, cwd, env, restart, max_restarts, "
            "restarts, spent_usd, on_budget, pii, created_at) VALUES ('old', 'old', 'exited', "
            "'[\"a\"]', '/tmp', '{}', 'no', 5, 0, 0, 'block', 'detect', '2026-01-01T00:00:00Z')"
        )
        con.commit()
    finally:
        con.close()
