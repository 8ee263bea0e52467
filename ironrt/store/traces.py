"""Typed queries for the `traces` table: one row per LLM call, and the usage rollups.

A call's cost may be unknown (`Trace.cost_usd` None: an unpriced model an agent without
any budget may call): stored as NULL (schema v4), which every SQL sum leaves out, so
spend is the sum of known costs.
"""

from __future__ import annotations

from typing import Any

from ironrt.protocol import Trace, Usage, UsageRow
from ironrt.store.db import Database

_COLS = (
    "agent_id, provider, model, endpoint, stream, status_code, input_tokens, output_tokens, "
    "cached_tokens, reasoning_tokens, cost_usd, latency_ms, ttfb_ms, error, started_at, "
    "agent_name, project, pid, response_model, refusal, overhead_ms"
)


def insert_statement(t: Trace) -> tuple[str, tuple[Any, ...]]:
    return (
        f"INSERT INTO traces({_COLS}) VALUES ({', '.join('?' * 21)})",
        (
            t.agent_id,
            t.provider,
            t.model,
            t.endpoint,
            int(t.stream),
            t.status_code,
            t.input_tokens,
            t.output_tokens,
            t.cached_tokens,
            t.reasoning_tokens,
            t.cost_usd,
            t.latency_ms,
            t.ttfb_ms,
            t.error,
            t.started_at,
            t.agent_name,
            t.project,
            t.pid,
            t.response_model,
            t.refusal,
            t.overhead_ms,
        ),
    )


async def query(db: Database, *, agent_id: str | None = None, limit: int = 50) -> list[Trace]:
    params: list[object] = []
    where = ""
    if agent_id is not None:
        where = "WHERE agent_id = ?"
        params.append(agent_id)
    params.append(limit)
    rows = await db.fetchall(
        f"SELECT id, {_COLS} FROM traces {where} ORDER BY id DESC LIMIT ?", params
    )
    return [
        Trace(
            id=r["id"],
            agent_id=r["agent_id"],
            provider=r["provider"],
            model=r["model"],
            endpoint=r["endpoint"],
            stream=bool(r["stream"]),
            status_code=r["status_code"],
            input_tokens=r["input_tokens"],
            output_tokens=r["output_tokens"],
            cached_tokens=r["cached_tokens"],
            reasoning_tokens=r["reasoning_tokens"],
            cost_usd=r["cost_usd"],
            latency_ms=r["latency_ms"],
            ttfb_ms=r["ttfb_ms"],
            error=r["error"],
            started_at=r["started_at"],
            agent_name=r["agent_name"],
            project=r["project"],
            pid=r["pid"],
            response_model=r["response_model"],
            refusal=r["refusal"],
            overhead_ms=r["overhead_ms"],
        )
        for r in reversed(rows)
    ]


_GROUPS = {"agent": "agent_id", "provider": "provider", "model": "model"}


async def usage(db: Database, group_by: str, agent_id: str | None = None) -> Usage:
    column = _GROUPS[group_by]
    where, params = ("WHERE agent_id = ?", [agent_id]) if agent_id else ("", [])
    rows = await db.fetchall(
        f"SELECT {column} AS key, COUNT(*) AS calls, SUM(input_tokens) AS i, "
        f"SUM(output_tokens) AS o, SUM(cost_usd) AS c, "
        f"SUM(cost_usd IS NULL) AS unpriced FROM traces {where} "
        f"GROUP BY {column} ORDER BY c DESC",
        params,
    )
    out = [
        UsageRow(
            key=r["key"],
            llm_calls=r["calls"],
            input_tokens=r["i"] or 0,
            output_tokens=r["o"] or 0,
            cost_usd=r["c"] or 0.0,
            unpriced_calls=r["unpriced"] or 0,
        )
        for r in rows
    ]
    return Usage(group_by=group_by, rows=out, total_usd=sum(r.cost_usd for r in out))


async def totals_by_agent(db: Database) -> dict[str, tuple[int, int, int, int]]:
    """(calls, input tokens, output tokens, errors) per agent, to seed counters at start-up."""
    rows = await db.fetchall(
        "SELECT agent_id, COUNT(*), SUM(input_tokens), SUM(output_tokens), "
        "SUM(CASE WHEN status_code >= 400 OR error IS NOT NULL THEN 1 ELSE 0 END) "
        "FROM traces GROUP BY agent_id"
    )
    return {r[0]: (r[1], r[2] or 0, r[3] or 0, r[4] or 0) for r in rows}
