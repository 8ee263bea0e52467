"""Shared fixtures: a real daemon process in a temporary home, driven over its real socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ironrt.tempdaemon import TempDaemon


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def daemon() -> Iterator[TempDaemon]:
    with TempDaemon() as d:
        yield d
