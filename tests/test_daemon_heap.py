"""The daemon freezes its long-lived heap (the price tables, the PII patterns) once its
first call has settled, so later full collections scan only what came after, and raises
the young generation's threshold (ironrt/daemon_heap.py). That library mode never does:
tests/library/test_library.py."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ironrt.tempdaemon import TempDaemon, wait_until
from tests.router.helpers import sdk_client, token_agent


def _young_passes(d: TempDaemon) -> float:
    """The daemon's collections of its young generation so far (its /metrics)."""
    transport = httpx.HTTPTransport(uds=str(d.home / "ironrt.sock"))
    with httpx.Client(transport=transport, base_url="http://ironrt", timeout=30) as http:
        text = http.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "python_gc_collections_total" and s.labels["generation"] == "0":
                return s.value
    raise AssertionError("no python_gc_collections_total in /metrics")


def _frozen(d: TempDaemon) -> list[int]:
    """The object counts of the daemon's `heap frozen` log lines."""
    out = []
    for line in d.log().splitlines():
        entry = json.loads(line)
        if entry["msg"] == "heap frozen":
            out.append(int(entry["objects"]))
    return out


def test_the_heap_is_frozen_once_after_the_first_call(tmp_path: Path) -> None:
    with TempDaemon() as d:
        _, token = token_agent(d, tmp_path)
        assert _frozen(d) == []  # nothing before a call: the tables are not loaded yet
        client = sdk_client(d, token)
        messages = [{"role": "user", "content": "Say hello."}]
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
        wait_until(lambda: len(_frozen(d)) == 1, timeout=10)
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
        assert len(d.rt.traces()) == 4
        frozen = _frozen(d)
        assert len(frozen) == 1  # once, not per call
        assert frozen[0] > 10_000  # the price tables are among what was frozen


def test_calls_after_the_freeze_leave_the_young_generation_uncollected(tmp_path: Path) -> None:
    """Each call frees what it makes, so with the raised threshold 500 calls (through the
    SDK, a real daemon) start no collection; at CPython's 700 they started 4 (the calls in
    flight and the writes waiting for their group commit hold objects meanwhile)."""
    with TempDaemon() as d:
        _, token = token_agent(d, tmp_path)
        client = sdk_client(d, token)
        messages = [{"role": "user", "content": "Say hello."}]
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
        wait_until(lambda: len(_frozen(d)) == 1, timeout=10)
        before = _young_passes(d)
        for _ in range(500):
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
        assert len(d.rt.traces(limit=1000)) == 501
        assert _young_passes(d) - before <= 1
