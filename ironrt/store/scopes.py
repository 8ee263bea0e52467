"""Typed queries for the `scopes` table: each budget scope's limits and window spend.

Every write goes through `ironrt.store.books` (one ordered writer): limits when they
change, window spend in the same transaction as the traces that caused it, with the window
it belongs to, so a daemon killed at any moment restarts with the books of the last commit.
"""

from __future__ import annotations

import sqlite3

import msgspec

from ironrt.governance.ledger.lease import Lease
from ironrt.governance.ledger.scope import Scope
from ironrt.protocol import PiiMode
from ironrt.store.db import Database

_COLUMNS = (
    "scope, budget_usd, window_spec, resets_at, rpm, tpm, max_concurrent, models, "
    "spent_nanos, warned, pii, pii_types, own_nanos"
)

SPEND_SQL = (
    "INSERT INTO scopes(scope, spent_nanos, resets_at, warned, own_nanos) "
    "VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(scope) DO UPDATE SET spent_nanos = excluded.spent_nanos, "
    "resets_at = excluded.resets_at, warned = excluded.warned, own_nanos = excluded.own_nanos"
)


def _warned(scope: Scope) -> str:
    warned = scope.warned
    if not warned:  # most writes: no threshold reached in the window
        return "[]"
    return msgspec.json.encode(sorted(warned)).decode()


def _own(scope: Scope) -> int | None:
    return scope.lease.own_nanos if scope.lease is not None else None


def spend_params(scope: Scope) -> tuple[object, ...]:
    return (scope.key, scope.spent_nanos, scope.resets_at, _warned(scope), _own(scope))


SAVE_SQL = (
    f"INSERT OR REPLACE INTO scopes ({_COLUMNS}) "
    f"VALUES ({', '.join('?' * len(_COLUMNS.split(',')))})"
)


def save_statement(scope: Scope) -> tuple[str, tuple[object, ...]]:
    models = None if scope.models is None else msgspec.json.encode(list(scope.models)).decode()
    params = (
        scope.key,
        scope.budget_usd,
        scope.window,
        scope.resets_at,
        scope.rpm,
        scope.tpm,
        scope.max_concurrent,
        models,
        scope.spent_nanos,
        _warned(scope),
        scope.pii,
        None if scope.pii_types is None else msgspec.json.encode(scope.pii_types).decode(),
        _own(scope),
    )
    return SAVE_SQL, params


async def save(db: Database, scope: Scope) -> None:
    sql, params = save_statement(scope)
    await db.execute(sql, params)


async def delete(db: Database, key: str) -> None:
    await db.execute("DELETE FROM scopes WHERE scope = ?", (key,))


def _from_row(row: sqlite3.Row) -> Scope:
    scope = Scope(row["scope"])
    if row["budget_usd"] is not None:
        scope.apply({"budget_usd": row["budget_usd"]}, 0.0)
    scope.window = row["window_spec"]
    scope.resets_at = row["resets_at"]
    scope.rpm, scope.tpm, scope.max_concurrent = row["rpm"], row["tpm"], row["max_concurrent"]
    if row["models"] is not None:
        scope.models = tuple(msgspec.json.decode(row["models"], type=list[str]))
    scope.spent_nanos = int(row["spent_nanos"])
    scope.warned = set(msgspec.json.decode(row["warned"], type=list[int]))
    scope.pii = row["pii"]
    if row["pii_types"] is not None:
        scope.pii_types = msgspec.json.decode(row["pii_types"], type=dict[str, PiiMode])
    if row["own_nanos"] is not None:
        scope.lease = Lease(own_nanos=int(row["own_nanos"]), available=False)
    return scope


async def load_all(db: Database) -> list[Scope]:
    """Every scope the daemon governs: `global`, projects, and its own agents' scopes (a
    library-mode scope's row is its process's books, not the daemon's)."""
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM scopes WHERE scope NOT IN "
        "(SELECT 'agent:' || id FROM agents WHERE kind = 'library') ORDER BY scope"
    )
    return [_from_row(r) for r in rows]
