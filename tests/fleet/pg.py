"""A real PostgreSQL for the fleet tests: the `pgserver` wheel's bundled server, started
in a temporary folder (no system install, no network: it listens on a Unix socket only).
Tests stop and start it to see the daemons ride out an outage."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class Postgres:
    def __init__(self) -> None:
        with warnings.catch_warnings():
            # platformdirs warns, once, that XDG_RUNTIME_DIR is unset (it falls back to /tmp).
            warnings.simplefilter("ignore")
            import pgserver

        self.folder = Path(tempfile.mkdtemp(prefix="irt-pg-", dir="/tmp"))
        self._server: Any = pgserver.get_server(self.folder / "data", cleanup_mode="stop")
        self._uri: str = self._server.get_uri()

    def new_database(self) -> str:
        """A fresh database, as the URL a daemon is given."""
        name = "fleet_" + secrets.token_hex(4)
        self._server.psql(f"CREATE DATABASE {name};")
        return self._uri.replace("/postgres?", f"/{name}?")

    def stop(self) -> None:
        """Stop the server (fast: connections are cut, as in a crash of the database)."""
        from pgserver import pg_ctl

        pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user
        )

    def start(self) -> None:
        self._server.ensure_postgres_running()

    def psql(self, url: str, sql: str) -> str:
        """Run SQL in a test's database (the test's own look at the tables)."""
        db = urlsplit(url).path.lstrip("/")
        return str(self._server.psql(f"\\c {db}\n{sql}"))

    def close(self) -> None:
        try:
            self._server.cleanup()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
