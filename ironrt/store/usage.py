"""Usage over time: calls, tokens and spend grouped by agent, project, provider, model,
UTC day or hour, over any time range, exact and fast at any number of calls.

Rollups, not indexes alone. Summing a million traces takes SQLite about half a second
however they are indexed (every row is read). The books keep the sums pre-added, written
with each trace in the same transaction: `usage_hourly` (schema v10) one row per UTC hour
and (agent, name, project, provider, model, refused), `usage_daily` (v11) the same per UTC
day. A range is read in parts (`parts`): its whole days from `usage_daily` (a month of
50 agents is ~6,000 rows), the whole hours of its two partial days from `usage_hourly`,
and the partial hours at its two edges from `traces` through the index on `started_at`;
so the answer equals a plain sum over the traces for any `since`/`until`. Grouped by hour
a range needs the hourly rows of all of it (~100,000 for that month: the slowest case,
about 50 ms). Each part is summed per group in SQL with the refused calls apart in the
same row, so a grouping by day or hour streams in the rollups' key order instead of
sorting every row first (sorting cost more than the sums). bench/usage.py measures it all.

Retention prunes traces, not rollups: whole hours stay exact forever, a partial edge hour
older than the retention period counts only what is left of it.

Refused calls (ironrt refused them before any provider answered) are counted apart from
the calls that reached a provider; their tokens and cost are what they were (none).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Literal

from ironrt.protocol import Usage, UsageRow
from ironrt.store.db import Database

__all__ = [
    "GROUPS",
    "Group",
    "hour_floor",
    "iso",
    "parse_time",
    "parts",
    "recorded_agent",
    "usage",
]

Group = Literal["agent", "project", "provider", "model", "day", "hour"]
#: Every grouping, in the order the API lists them.
GROUPS: tuple[Group, ...] = ("agent", "provider", "model", "project", "day", "hour")

#: Where each part of a range is read from: whole days, whole hours, and the traces.
Source = Literal["daily", "hourly", "traces"]

#: The group's key over each source (a day over hourly rows and traces is the first 10
#: characters of their hour or time, `2026-11-30`).
_KEYS: dict[Source, dict[str, str]] = {
    "daily": {
        "agent": "agent_id",
        "project": "project",
        "provider": "provider",
        "model": "model",
        "day": "day",
    },
    "hourly": {
        "agent": "agent_id",
        "project": "project",
        "provider": "provider",
        "model": "model",
        "day": "substr(hour, 1, 10)",
        "hour": "hour",
    },
    "traces": {
        "agent": "agent_id",
        "project": "COALESCE(project, '')",
        "provider": "provider",
        "model": "model",
        "day": "substr(started_at, 1, 10)",
        "hour": "substr(started_at, 1, 13)",
    },
}
#: The sums of a group, in `_Sums` order: refused calls apart, in one row per key, so a
#: group streams in the rollups' key order (grouping by the key and `refused` would sort
#: every row first, which costs more than the sums themselves).
_ROLLUP_SUMS = (
    "SUM(calls) FILTER (WHERE NOT refused), SUM(calls) FILTER (WHERE refused), "
    "SUM(errors) FILTER (WHERE NOT refused), SUM(input_tokens), SUM(output_tokens), "
    "SUM(cached_tokens), SUM(reasoning_tokens), SUM(cost_usd), "
    "SUM(unpriced_calls) FILTER (WHERE NOT refused)"
)
_TRACE_SUMS = (
    "SUM(refusal IS NULL), SUM(refusal IS NOT NULL), "
    "SUM(refusal IS NULL AND (status_code >= 400 OR error IS NOT NULL)), SUM(input_tokens), "
    "SUM(output_tokens), SUM(cached_tokens), SUM(reasoning_tokens), SUM(cost_usd), "
    "SUM(refusal IS NULL AND cost_usd IS NULL)"
)

_RELATIVE = re.compile(r"([1-9][0-9]{0,8})([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: Ten years: further back than any trace, near enough that no date arithmetic overflows.
_MAX_AGO_S = 3650 * 86400


# ---- time ----------------------------------------------------------------------------------


def iso(moment: dt.datetime) -> str:
    """`moment` as traces store `started_at`: UTC, milliseconds, `Z` (sorts as time)."""
    utc = moment.astimezone(dt.timezone.utc)
    return utc.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_time(text: str, now: dt.datetime) -> str:
    """A moment written as ISO 8601 (`2026-11-30T09:00:00Z`, `2026-11-30`, an offset; no
    zone means UTC) or as a duration before `now` (`30m`, `24h`, `7d`, `2w`), as `iso`
    writes it. ValueError says what is accepted."""
    word = text.strip()
    match = _RELATIVE.fullmatch(word)
    if match:
        seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
        if seconds > _MAX_AGO_S:
            raise ValueError(f"{text!r} is more than ten years ago")
        return iso(now - dt.timedelta(seconds=seconds))
    try:
        moment = dt.datetime.fromisoformat(word)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time (2026-11-30T09:00:00Z) nor a duration "
            "before now (30m, 24h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return iso(moment)


def hour_floor(moment: str) -> str:
    """The start of the hour holding `moment` (ISO text as `iso` writes it)."""
    return moment[:13] + ":00:00.000Z"


def _hour_ceil(moment: str) -> str:
    start = hour_floor(moment)
    if start == moment:
        return start
    later = dt.datetime.fromisoformat(start[:19]) + dt.timedelta(hours=1)
    return later.isoformat() + ".000Z"


def _day_ceil(moment: str) -> str:
    """The start of the first day that starts at or after `moment`."""
    start = moment[:10] + "T00:00:00.000Z"
    if start == moment:
        return start
    return (dt.date.fromisoformat(moment[:10]) + dt.timedelta(days=1)).isoformat() + start[10:]


def _bucket(group: str, key: str) -> str:
    """The ISO start of a day or hour bucket (`2026-11-30` -> `2026-11-30T00:00:00Z`)."""
    if group == "day":
        return key + "T00:00:00Z"
    if group == "hour":
        return key + ":00:00Z"
    return key


# ---- the query -----------------------------------------------------------------------------

#: A part of a range and where it is read from: [start, end) (None: unbounded).
Part = tuple[Source, str | None, str | None]


def parts(by: str, since: str | None, until: str | None) -> list[Part]:
    """Where each part of [`since`, `until`) is read from: its whole days from
    `usage_daily` (unless grouped by hour), the whole hours of its partial days from
    `usage_hourly`, and its partial hours from `traces` (through `traces_started`)."""
    whole_from = _hour_ceil(since) if since is not None else None
    whole_to = hour_floor(until) if until is not None else None
    if whole_from is not None and whole_to is not None and whole_from >= whole_to:
        return [("traces", since, until)]  # no whole hour inside
    found: list[Part] = []
    if since is not None and whole_from is not None and since < whole_from:
        found.append(("traces", since, whole_from))
    if until is not None and whole_to is not None and whole_to < until:
        found.append(("traces", whole_to, until))
    day_from = _day_ceil(whole_from) if whole_from is not None else None
    day_to = whole_to[:10] + "T00:00:00.000Z" if whole_to is not None else None
    if by == "hour" or (day_from is not None and day_to is not None and day_from >= day_to):
        found.append(("hourly", whole_from, whole_to))  # no whole day inside, or not wanted
        return found
    found.append(("daily", day_from, day_to))
    if whole_from is not None and day_from is not None and whole_from < day_from:
        found.append(("hourly", whole_from, day_from))
    if whole_to is not None and day_to is not None and day_to < whole_to:
        found.append(("hourly", day_to, whole_to))
    return found


@dataclass(slots=True)
class _Sums:
    name: str = ""
    calls: int = 0
    refused: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0

    def add(self, row: Any) -> None:
        """One part's sums of the group (a NULL sum: no such calls in that part)."""
        _, name, calls, refused, errors, i, o, cached, reasoning, cost, unpriced = row
        self.name = max(self.name, name or "")
        self.calls += calls or 0
        self.refused += refused or 0
        self.errors += errors or 0
        self.input_tokens += i or 0
        self.output_tokens += o or 0
        self.cached_tokens += cached or 0
        self.reasoning_tokens += reasoning or 0
        self.cost_usd += cost or 0.0
        self.unpriced += unpriced or 0


async def usage(
    db: Database,
    by: Group,
    *,
    since: str | None = None,
    until: str | None = None,
    agent_id: str | None = None,
    project: str | None = None,
) -> Usage:
    """Calls of [`since`, `until`) (ISO text as `iso` writes it; None: unbounded) grouped
    `by`, of one agent and/or one project ("" for calls of no project) if given."""
    if by not in _KEYS["hourly"]:
        raise ValueError(f"cannot group by {by!r}")
    selects: list[str] = []
    args: list[object] = []
    for source, start, end in parts(by, since, until):
        sql, more = _select(source, by, start, end, agent_id, project)
        selects.append(sql)
        args += more
    # One statement (one trip to the database's thread): each part summed per group in
    # SQL, the parts of a group added here (at most a few thousand rows: about a
    # millisecond, whether read as tuples or as sqlite3.Row).
    sums: dict[str, _Sums] = {}
    for row in await db.fetchall(" UNION ALL ".join(selects), args):
        group = sums.get(row[0])
        if group is None:
            group = sums[row[0]] = _Sums()
        group.add(row)
    rows = [
        UsageRow(
            key=_bucket(by, key),
            llm_calls=s.calls,
            input_tokens=s.input_tokens,
            output_tokens=s.output_tokens,
            cost_usd=float(s.cost_usd),
            unpriced_calls=s.unpriced,
            refused_calls=s.refused,
            errors=s.errors,
            cached_tokens=s.cached_tokens,
            reasoning_tokens=s.reasoning_tokens,
            name=s.name if by == "agent" else None,
        )
        for key, s in sums.items()
    ]
    if by in ("day", "hour"):
        rows.sort(key=lambda r: r.key)
    else:
        rows.sort(key=lambda r: (-r.cost_usd, -r.llm_calls, r.key))
    return Usage(
        group_by=by,
        rows=rows,
        total_usd=sum(r.cost_usd for r in rows),
        since=since,
        until=until,
        llm_calls=sum(r.llm_calls for r in rows),
        refused_calls=sum(r.refused_calls for r in rows),
    )


#: Each source's table, its time column and how much of an ISO time that column holds.
_SOURCES: dict[Source, tuple[str, str, int | None]] = {
    "daily": ("usage_daily", "day", 10),
    "hourly": ("usage_hourly", "hour", 13),
    "traces": ("traces", "started_at", None),
}


def _select(
    source: Source,
    by: str,
    start: str | None,
    end: str | None,
    agent_id: str | None,
    project: str | None,
) -> tuple[str, list[object]]:
    """The SELECT summing one part per group: key, agent name, then `_Sums` order."""
    table, column, width = _SOURCES[source]
    terms: list[str] = []
    args: list[object] = []
    if agent_id is not None:
        # Over traces a part is at most an hour: read it by time (`traces_started`), never
        # through every call of the agent (`traces_agent`), which the planner would prefer.
        terms.append("+agent_id = ?" if source == "traces" else "agent_id = ?")
        args.append(agent_id)
    if project is not None:
        terms.append("COALESCE(project, '') = ?" if source == "traces" else "project = ?")
        args.append(project)
    if start is not None:
        terms.append(f"{column} >= ?")
        args.append(start[:width])
    if end is not None:
        terms.append(f"{column} < ?")
        args.append(end[:width])
    where = " WHERE " + " AND ".join(terms) if terms else ""
    name = "MAX(agent_name)" if by == "agent" else "NULL"
    sums = _TRACE_SUMS if source == "traces" else _ROLLUP_SUMS
    key = _KEYS[source][by]
    return f"SELECT {key}, {name}, {sums} FROM {table}{where} GROUP BY 1", args


async def recorded_agent(db: Database, ref: str) -> str | None:
    """The agent whose calls are on the books (removed since, say) that `ref` names: its
    exact id, else the one id it is a prefix of, else the one agent of that name; None."""
    # The daily rollups: every agent ever recorded, in far fewer rows than the hourly ones.
    rows = await db.fetchall(
        "SELECT DISTINCT agent_id FROM usage_daily WHERE agent_id >= ? AND agent_id < ? LIMIT 2",
        (ref, ref + "\U0010ffff"),
    )
    ids = [r[0] for r in rows]
    if ref in ids:
        return ref
    if len(ids) == 1:
        return str(ids[0])
    if ids:
        return None  # ambiguous: the caller says not found, with the live agents' message
    named = await db.fetchall(
        "SELECT DISTINCT agent_id FROM usage_daily WHERE agent_name = ? LIMIT 2", (ref,)
    )
    return str(named[0][0]) if len(named) == 1 else None
