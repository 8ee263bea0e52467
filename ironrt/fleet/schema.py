"""The fleet ledger's tables in PostgreSQL, versioned like the local SQLite schema.

`ironrt_fleet_meta.schema_version` records the last step applied; each daemon brings the
schema up to date at start under an advisory lock (several daemons starting at once
migrate once), and refuses a database made by a newer ironrt rather than guess at it.

    ironrt_fleet_scopes   one row per shared scope: its limits (the fleet's, whichever
                          daemon set them), the window's `resets_at`, `version` (bumped
                          per limits change, so daemons re-read only what changed) and
                          the latest unmet demand for lease (`demand_at`, `demand_by`).
    ironrt_fleet_leases   one row per (scope, daemon): for the window ending `window_end`
                          (0: no window), what the daemon has `reported` as its settled
                          spend and what it was `granted` (reported + its unspent slice),
                          valid until `expires_at` (the database's clock). A lease past
                          it is charged whole until its daemon reports again.

Money is integer nano-dollars (bigint), as in the local books: sums are exact.
"""

from __future__ import annotations

from typing import Any

from ironrt.errors import SchemaTooNew

#: Any number unique to ironrt: the advisory lock migrations take.
MIGRATION_LOCK = 0x1C0_F1EE7

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE ironrt_fleet_scopes (
            scope          text PRIMARY KEY,
            budget_nanos   bigint,
            window_spec    text,
            resets_at      double precision,
            rpm            integer,
            tpm            integer,
            max_concurrent integer,
            models         text,
            pii            text,
            pii_types      text,
            version        bigint NOT NULL DEFAULT 1,
            demand_at      double precision NOT NULL DEFAULT 0,
            demand_by      text NOT NULL DEFAULT '',
            updated_at     double precision NOT NULL
        );
        CREATE TABLE ironrt_fleet_leases (
            scope          text NOT NULL
                           REFERENCES ironrt_fleet_scopes(scope) ON DELETE CASCADE,
            daemon         text NOT NULL,
            host           text NOT NULL,
            window_end     double precision NOT NULL,
            granted_nanos  bigint NOT NULL,
            reported_nanos bigint NOT NULL,
            expires_at     double precision NOT NULL,
            updated_at     double precision NOT NULL,
            PRIMARY KEY (scope, daemon)
        );
        """,
    ),
)

LATEST = MIGRATIONS[-1][0]


async def migrate(conn: Any) -> int:
    """Bring the schema to `LATEST` (one transaction, under the advisory lock)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS ironrt_fleet_meta "
            "(key text PRIMARY KEY, value text NOT NULL)"
        )
        found = await conn.fetchval(
            "SELECT value FROM ironrt_fleet_meta WHERE key = 'schema_version'"
        )
        current = int(found) if found is not None else 0
        if current > LATEST:
            raise SchemaTooNew(
                f"the fleet ledger's schema is version {current}, newer than this ironrt "
                f"knows ({LATEST}): upgrade ironrt on this machine"
            )
        for number, sql in MIGRATIONS:
            if number > current:
                await conn.execute(sql)
        if current < LATEST:
            await conn.execute(
                "INSERT INTO ironrt_fleet_meta(key, value) VALUES ('schema_version', $1) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                str(LATEST),
            )
        return LATEST
