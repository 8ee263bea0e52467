"""Shared fixtures: a real daemon process in a temporary home, driven over its real socket.

Scans in the test process itself are never recalled (`ironrt/pii/recall.py`): tests scan
the same texts over and over, and a test that compares two ways of scanning one text (in
steps and whole, streamed and not) must compare two scans, not a scan and its recall. A
test that is about the recall asks for it (`recall`); daemons keep theirs on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ironrt.pii.recall import RECALL, Recall
from ironrt.tempdaemon import TempDaemon
from tests.bytecode import compile_ironrt


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # once, in the process that starts the workers
        compile_ironrt()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def daemon() -> Iterator[TempDaemon]:
    with TempDaemon() as d:
        yield d


@pytest.fixture(autouse=True)
def _no_recall(monkeypatch: pytest.MonkeyPatch) -> None:
    RECALL.clear()
    monkeypatch.setattr(RECALL, "largest", 0)
    monkeypatch.setattr(RECALL, "budget", RECALL.budget)  # a router built here resizes it


@pytest.fixture
def recall(monkeypatch: pytest.MonkeyPatch) -> Recall:
    """The process's recall of scanned texts, on and empty, as a daemon starts with it."""
    RECALL.clear()
    fresh = Recall()
    monkeypatch.setattr(RECALL, "largest", fresh.largest)
    monkeypatch.setattr(RECALL, "budget", fresh.budget)  # restored after, resized or not
    return RECALL
