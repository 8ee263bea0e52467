"""The fleet ledger: `project:*` and `global` shared by every daemon on one PostgreSQL
(`IRONRT_LEDGER_URL`), each spending from a lease so the database stays off the hot path.

    schema   the tables, versioned and migrated by the daemon
    store    the transactions (one per lease sync, one per limits change)
    plan     when a scope needs a sync, and what to ask for (pure decisions)
    manager  the daemon's task: the connection, the rounds, the books it updates

`asyncpg` is an optional extra (`pip install 'ironrt[postgres]'`): imported only when a
ledger URL is set.
"""
