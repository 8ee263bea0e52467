"""Durable state in one SQLite database (WAL): agents, traces, events, metadata.

The daemon is the only writer. Everything that must survive a crash (an agent's spec and
pid, settled spend, traces) is committed before the daemon acts on it.
"""

from ironrt.store.db import Database, SchemaTooNew

__all__ = ["Database", "SchemaTooNew"]
