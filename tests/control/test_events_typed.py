"""Typed events through the real store and bus: every kind round-trips, rows written
before events were typed still decode, and a follower that falls behind misses nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import pytest

from ironrt import client_requests as req
from ironrt.events import EventBus, Filter
from ironrt.governance.flow import Flow
from ironrt.observe.cost_updates import CostUpdates
from ironrt.protocol import (
    EVENT_TYPES,
    AgentUpdated,
    AnyEvent,
    BudgetWarning,
    CostUpdate,
    EventList,
    LimitsChanged,
    PiiAlert,
    PiiFinding,
    Trace,
)
from ironrt.store import events as event_store
from ironrt.store.db import Database
from ironrt.testing import tagent, tflow


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "state.db")
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


def sample(cls: type[AnyEvent]) -> AnyEvent:
    """An instance of `cls` with every field of its own set to something not its default."""
    values: dict[str, object] = {}
    for name, field_type in zip(cls.__struct_fields__, msgspec.structs.fields(cls), strict=True):
        if name in ("id", "ts", "agent_id", "agent_name", "project"):
            continue
        text = str(field_type.type)
        if "PiiFinding" in text:
            values[name] = [PiiFinding(type="EMAIL", where="messages[0]", count=2)]
        elif text.startswith("dict"):
            values[name] = {"k": 1} if "Any" in text else {"EMAIL": 2 if "int" in text else "x"}
        elif text.startswith("list"):
            values[name] = ["EMAIL"]
        elif "bool" in text:
            values[name] = True
        elif "int" in text:
            values[name] = 7
        elif "float" in text:
            values[name] = 1.5
        else:
            values[name] = f"{name}-value"
    return cls(agent_id="ag1", **values)  # type: ignore[arg-type]


async def test_every_kind_round_trips_through_the_store_and_the_wire(db: Database) -> None:
    bus = EventBus(db, resolve=lambda agent_id: ("worker", "acme"))
    published = [await bus.publish(sample(cls)) for cls in EVENT_TYPES.values()]
    assert [e.id for e in published] == list(range(1, len(EVENT_TYPES) + 1))
    assert all(e.agent_name == "worker" and e.project == "acme" and e.ts for e in published)
    stored = await event_store.query(db, limit=1000)
    assert stored == published
    # The API's answer, decoded as the clients decode it.
    wire = msgspec.json.encode(EventList(events=stored))
    assert req.decode(200, wire, EventList).events == published
    flat = msgspec.json.decode(wire)["events"][0]
    assert flat["kind"] == "AgentStarted" and flat["agent_name"] == "worker" and "data" not in flat


async def test_rows_stored_before_events_were_typed_still_decode(db: Database) -> None:
    rows = [
        ("AgentUpdated", "a1", {"budget_usd": 2.0, "pii": "redact"}),
        ("LimitsChanged", None, {"scope": "global", "rpm": 10}),
        ("BudgetWarning", "a1", {"scope": "agent:a1", "spent_usd": 0.5, "threshold_percent": 50}),
        ("AgentStarted", "a1", {"pid": "not a number", "name": "old"}),
        ("SomethingRemoved", "a1", {}),  # a kind this version does not know: skipped
    ]
    for kind, agent_id, data in rows:
        await db.execute(
            "INSERT INTO events(ts, kind, agent_id, data) VALUES('2024-01-01T00:00:00.000Z', ?, ?, ?)",
            (kind, agent_id, msgspec.json.encode(data).decode()),
        )
    updated, limits, warning, started = await event_store.query(db)
    assert isinstance(updated, AgentUpdated) and updated.changes == {
        "budget_usd": 2.0,
        "pii": "redact",
    }
    assert isinstance(limits, LimitsChanged) and (limits.scope, limits.changes) == (
        "global",
        {"rpm": 10},
    )
    assert isinstance(warning, BudgetWarning) and warning.threshold_percent == 50
    assert (started.kind, started.id, getattr(started, "name", None)) == ("AgentStarted", 4, "old")


async def test_filters_by_kind_and_project(db: Database) -> None:
    names = {"a1": ("one", "acme"), "a2": ("two", None)}
    bus = EventBus(db, resolve=names.get)
    for agent_id in ("a1", "a2", "a1"):
        await bus.publish(PiiAlert(agent_id=agent_id, count=1))
        await bus.publish(CostUpdate(agent_id=agent_id, calls=1))
    found = await event_store.query(db, kinds=["CostUpdate"], project="acme")
    assert [(e.kind, e.agent_name) for e in found] == [("CostUpdate", "one")] * 2


async def test_a_follower_that_falls_far_behind_still_gets_every_event_once(db: Database) -> None:
    bus = EventBus(db)
    await bus.publish(LimitsChanged(scope="s", changes={"n": 0}))
    follower = bus.follow(0, Filter(), buffer=8)
    first = await follower.__anext__()  # subscribed now, and the backlog read
    got = [event.id for event in first]
    assert got == [1]
    for n in range(1, 300):  # nobody reads meanwhile: the buffer of 8 overflows
        await bus.publish(LimitsChanged(scope="s", changes={"n": n}))
    with anyio.fail_after(10):
        async for batch in follower:
            got += [event.id for event in batch]
            if len(got) >= 300:
                break
    await follower.aclose()
    assert got == list(range(1, 301))
    assert bus.dropped == 0  # a follower is never counted as dropping


async def test_a_plain_subscriber_drops_and_counts(db: Database) -> None:
    bus = EventBus(db)
    async with bus.subscribe(buffer=2) as live:
        for _ in range(5):
            await bus.publish(LimitsChanged(scope="s"))
        assert bus.dropped == 3
        assert [(await live.__anext__()).id for _ in range(2)] == [1, 2]


async def test_cost_updates_are_coalesced_per_agent(db: Database) -> None:
    bus = EventBus(db)
    costs = CostUpdates(bus, interval_s=3600)
    gov = tagent("a1", project="acme")
    gov.name, gov.project = "worker", "acme"
    flow: Flow = tflow(agent=gov)
    for cost in (0.25, 0.5, None):
        gov.spent_usd += cost or 0.0
        gov.llm_calls += 1
        trace = Trace(
            id=0, agent_id="a1", provider="openai", model="m", endpoint="chat.completions",
            stream=False, status_code=200, input_tokens=1, output_tokens=1, cached_tokens=0,
            reasoning_tokens=0, cost_usd=cost, latency_ms=1.0, ttfb_ms=None, error=None,
            started_at="",
        )  # fmt: skip
        costs.observe(trace, flow)
    await costs.flush()
    await costs.flush()  # nothing spent since: no second event
    (update,) = await event_store.query(db)
    assert isinstance(update, CostUpdate)
    assert (update.agent_name, update.project) == ("worker", "acme")
    assert (update.calls, update.cost_usd, update.llm_calls, update.spent_usd) == (3, 0.75, 3, 0.75)
