"""Fleet fixtures: one real PostgreSQL per test module, a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fleet.pg import Postgres


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def ledger_url(postgres: Postgres) -> str:
    return postgres.new_database()
