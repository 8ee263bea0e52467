"""Typed queries for the `traces` table: one row per LLM call, its usage rollups, listing
and paging, and retention.

A call's cost may be unknown (`Trace.cost_usd` None: an unpriced model an agent without
any budget may call): stored as NULL (schema v4), which every SQL sum leaves out, so
spend is the sum of known costs.

Each trace is written with an upsert of its hour's row in `usage_hourly` (schema v10) and
of its day's row in `usage_daily` (v11), in the same transaction (`rollup_statements`,
queued by the books next to the insert): the rollups always equal the sums of the traces,
and stay when retention prunes the traces.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import logging
import operator
import sqlite3
from collections.abc import Callable
from typing import Any, Literal

import anyio
import msgspec

from ironrt.protocol import Trace
from ironrt.store.db import Database
from ironrt.store.usage import iso

log = logging.getLogger("ironrt.store")

_COLS = (
    "agent_id, provider, model, endpoint, stream, status_code, input_tokens, output_tokens, "
    "cached_tokens, reasoning_tokens, cost_usd, latency_ms, ttfb_ms, error, started_at, "
    "agent_name, project, pid, response_model, refusal, overhead_ms"
)
INSERT_SQL = f"INSERT INTO traces({_COLS}) VALUES ({', '.join('?' * 21)})"
_COLUMNS = tuple(_COLS.split(", "))
#: The columns a trace may leave NULL, by their place in `INSERT_SQL`'s parameters.
_NULLABLE = tuple(
    i
    for i, name in enumerate(_COLUMNS)
    if name in {"cost_usd", "ttfb_ms", "error", "project", "pid", "refusal", "overhead_ms"}
)
_NULLABLE_OF = operator.itemgetter(*_NULLABLE)
#: Every text the books insert traces with: `INSERT_SQL` and its variants with NULLs
#: (`insert_runs`); the statements whose row ids the books read back.
INSERTS: set[str] = {INSERT_SQL}

_ROLLUP_COLS = (
    "agent_id, agent_name, project, provider, model, refused, calls, errors, input_tokens, "
    "output_tokens, cached_tokens, reasoning_tokens, cost_usd, unpriced_calls"
)


def _upsert(table: str, bucket: str) -> str:
    """Calls added to the sums of their bucket's row of `table` (the key: bucket, agent,
    name, project, provider, model, refused; then the figures, `calls` first)."""
    return (
        f"INSERT INTO {table}({bucket}, {_ROLLUP_COLS}) VALUES ({', '.join('?' * 15)}) "
        f"ON CONFLICT({bucket}, agent_id, agent_name, project, provider, model, refused) "
        "DO UPDATE SET calls = calls + excluded.calls, errors = errors + excluded.errors, "
        "input_tokens = input_tokens + excluded.input_tokens, "
        "output_tokens = output_tokens + excluded.output_tokens, "
        "cached_tokens = cached_tokens + excluded.cached_tokens, "
        "reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens, "
        "cost_usd = cost_usd + excluded.cost_usd, "
        "unpriced_calls = unpriced_calls + excluded.unpriced_calls"
    )


#: Calls added to their hour's sums (the bucket: the first 13 characters of `started_at`).
ROLLUP_SQL = _upsert("usage_hourly", "hour")
#: Calls added to their day's sums (the bucket: the first 10 characters of `started_at`).
DAILY_ROLLUP_SQL = _upsert("usage_daily", "day")

#: The three outcomes of a call, as SQL over `traces` (disjoint; `traces_refused` and
#: `traces_failed` are partial indexes on exactly these conditions).
STATUS_SQL: dict[str, str] = {
    "ok": "(refusal IS NULL AND status_code < 400 AND error IS NULL)",
    "error": "(refusal IS NULL AND (status_code >= 400 OR error IS NOT NULL))",
    "refused": "(refusal IS NOT NULL)",
}
Status = Literal["ok", "error", "refused"]


def insert_statement(t: Trace) -> tuple[str, tuple[Any, ...]]:
    return (
        INSERT_SQL,
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


def insert_runs(rows: list[tuple[Any, ...]]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """`INSERT_SQL`'s rows as runs of one pattern of NULLs each, in their order, with NULL
    written into a run's text where its rows hold None.

    sqlite3 binds None through its adaptation protocol, whose failed lookup of
    `__adapt__` formats an AttributeError: ~0.9 us a None (Python 3.11), against ~0.1 us
    an int or a string, and a call's trace holds two to five of them (no error, no
    refusal, no project, no pid). Runs keep the rows' order, so the ids a transaction
    gives them stay consecutive and in the order the calls settled. A row's pattern is
    the types of its nullable values (`map(type, ...)`: no Python-level loop over them),
    and its values are taken by one `itemgetter`."""
    runs: list[tuple[str, list[tuple[Any, ...]]]] = []
    last: tuple[type, ...] | None = None
    run: list[tuple[Any, ...]] = []
    take: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None
    for row in rows:
        types = tuple(map(type, _NULLABLE_OF(row)))
        if types != last:
            last = types
            sql, take = _insert_for(types)
            if not runs or runs[-1][0] != sql:  # an int cost where a float was: one text
                run = []
                runs.append((sql, run))
        run.append(row if take is None else take(row))
    return runs


@functools.cache
def _insert_for(
    types: tuple[type, ...],
) -> tuple[str, Callable[[tuple[Any, ...]], tuple[Any, ...]] | None]:
    """The insert for rows whose nullable values have these types: NULL in its text for
    each None, and what takes the other values from a row (None: the row as it is)."""
    null_at = {at for at, kind in zip(_NULLABLE, types, strict=True) if kind is type(None)}
    if not null_at:
        return INSERT_SQL, None
    values = ", ".join("NULL" if i in null_at else "?" for i in range(len(_COLUMNS)))
    sql = f"INSERT INTO traces({_COLS}) VALUES ({values})"
    INSERTS.add(sql)
    return sql, operator.itemgetter(*(i for i in range(len(_COLUMNS)) if i not in null_at))


def rollup_statements(t: Trace) -> list[tuple[str, tuple[Any, ...]]]:
    """The upserts adding `t` to its hour's row of `usage_hourly` and its day's row of
    `usage_daily` (same transaction as its insert: the books queue all three)."""
    figures = (
        t.agent_id,
        t.agent_name,
        t.project or "",
        t.provider,
        t.model,
        int(t.refusal is not None),
        1,
        int(t.status_code >= 400 or t.error is not None),
        t.input_tokens,
        t.output_tokens,
        t.cached_tokens,
        t.reasoning_tokens,
        t.cost_usd or 0.0,
        int(t.cost_usd is None),
    )
    return [
        (ROLLUP_SQL, (t.started_at[:13], *figures)),
        (DAILY_ROLLUP_SQL, (t.started_at[:10], *figures)),
    ]


# ---- listing ---------------------------------------------------------------------------


class TraceQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Which traces a listing wants: every filter given must match (None: any)."""

    agent_id: str | None = None
    project: str | None = None
    model: str | None = None
    status: Status | None = None
    #: Calls started at or after `since` and before `until` (UTC ISO text with ms).
    since: str | None = None
    until: str | None = None
    #: Only calls recorded before this one (a page's cursor).
    before_id: int | None = None


def encode_cursor(last_id: int) -> str:
    """Opaque to clients: the id a page ended at, so the next starts just below it."""
    return base64.urlsafe_b64encode(f"t1:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id of `encode_cursor`; ValueError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(cursor) from None
    tag, _, number = raw.partition(":")
    if tag != "t1" or not number.isdigit() or len(number) > 18:
        raise ValueError(cursor)
    return int(number)


async def page(db: Database, q: TraceQuery, limit: int) -> tuple[list[Trace], str | None]:
    """Up to `limit` traces matching `q`, newest first, and the cursor of the next page
    (None: no more). Ids order the pages: stable while calls keep being recorded."""
    where, params = _where(q)
    rows = await db.fetchall(
        f"SELECT id, {_COLS} FROM traces {where} ORDER BY id DESC LIMIT ?", [*params, limit + 1]
    )
    found = [_trace(r) for r in rows[:limit]]
    more = len(rows) > limit and found
    return found, encode_cursor(found[-1].id) if more else None


def _where(q: TraceQuery) -> tuple[str, list[object]]:
    terms: list[str] = []
    params: list[object] = []
    for column, value in (("agent_id", q.agent_id), ("project", q.project), ("model", q.model)):
        if value is not None:
            terms.append(f"{column} = ?")
            params.append(value)
    if q.status is not None:
        terms.append(STATUS_SQL[q.status])
    if q.since is not None:
        terms.append("started_at >= ?")
        params.append(q.since)
    if q.until is not None:
        terms.append("started_at < ?")
        params.append(q.until)
    if q.before_id is not None:
        terms.append("id < ?")
        params.append(q.before_id)
    return ("WHERE " + " AND ".join(terms) if terms else ""), params


async def get(db: Database, trace_id: int) -> Trace | None:
    rows = await db.fetchall(f"SELECT id, {_COLS} FROM traces WHERE id = ?", [trace_id])
    return _trace(rows[0]) if rows else None


async def query(db: Database, *, agent_id: str | None = None, limit: int = 50) -> list[Trace]:
    """The last `limit` traces (of one agent), oldest first."""
    found, _ = await page(db, TraceQuery(agent_id=agent_id), limit)
    return found[::-1]


def _trace(r: Any) -> Trace:
    return Trace(
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


async def totals_by_agent(db: Database) -> dict[str, tuple[int, int, int, int]]:
    """(calls, input tokens, output tokens, errors) per agent, to seed counters at start-up:
    from the daily rollups, which retention keeps (and which are far fewer rows)."""
    rows = await db.fetchall(
        "SELECT agent_id, SUM(calls), SUM(input_tokens), SUM(output_tokens), SUM(errors) "
        "FROM usage_daily GROUP BY agent_id"
    )
    return {r[0]: (r[1], r[2] or 0, r[3] or 0, r[4] or 0) for r in rows}


# ---- retention -----------------------------------------------------------------------------

#: Rows deleted per statement: each holds the write lock for a few milliseconds only, so
#: the books' group commits (which every call's answer waits for) never wait long.
PRUNE_BATCH = 2000


async def prune(db: Database, before: str, *, max_batches: int | None = None) -> int:
    """Delete traces started before `before` (UTC ISO text), in batches of `PRUNE_BATCH`,
    yielding between batches; at most `max_batches` of them (None: until none is left).
    The rollups, hourly and daily, are kept. Returns how many were deleted."""
    deleted = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        rows = await db.fetchall(
            "SELECT id FROM traces WHERE started_at < ? ORDER BY started_at LIMIT ?",
            (before, PRUNE_BATCH),
        )
        count = len(rows)
        if count:
            await db.write_many([("DELETE FROM traces WHERE id = ?", [(r[0],) for r in rows])])
        deleted += count
        batches += 1
        if count < PRUNE_BATCH:
            break
        await anyio.sleep(0.01)  # let the books' writer take the lock between batches
    return deleted


#: Seconds between two retention passes of a running daemon.
PRUNE_EVERY_S = 300.0


async def prune_expired(db: Database, retention_s: int, *, max_batches: int | None = None) -> int:
    """Delete the traces that started more than `retention_s` seconds ago (see `prune`)."""
    cutoff = iso(dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=retention_s))
    return await prune(db, cutoff, max_batches=max_batches)


async def keep_pruning(db: Database, retention_s: int, every_s: float = PRUNE_EVERY_S) -> None:
    """The daemon's retention task: a pass every `every_s` seconds until cancelled. A pass
    that fails (disk full, a lock held too long) is logged and tried again next time."""
    while True:
        await anyio.sleep(every_s)
        try:
            pruned = await prune_expired(db, retention_s)
        except sqlite3.Error as exc:
            log.warning("trace retention pass failed: %s", exc)
            continue
        if pruned:
            log.info("pruned traces", extra={"fields": {"traces": pruned}})
