"""The fleet ledger: `project:*` and `global` shared by every daemon on one PostgreSQL
(`IRONRT_LEDGER_URL`), each spending from a lease so the database stays off the hot path.

    schema   the tables, versioned and migrated by the daemon
    store    the transactions (one per lease sync, one per limits change)
    manager  the daemon's task: when to grow, renew, report or hand back a lease

`asyncpg` is an optional extra (`pip install 'ironrt[postgres]'`): imported only when a
ledger URL is set.
"""
