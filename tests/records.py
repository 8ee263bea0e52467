"""An agent record with every field set, for tests of code that reads one (rendering,
restart decisions) without a daemon."""

from __future__ import annotations

from typing import Any

from ironrt.protocol import Agent, AgentStatus


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
