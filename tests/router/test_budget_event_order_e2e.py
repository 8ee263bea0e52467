"""Budget warnings and exhaustion are stored in the order the books reached them (ascending
event ids): one call crossing every threshold of several scopes, and calls refused or
paused right after a call that crossed some. Real daemon, openai SDK, fake upstream with
latency."""

from __future__ import annotations

import threading
from pathlib import Path

import openai
import pytest

from ironrt.governance.flow import TokenUsage
from ironrt.protocol import Event
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import sdk_client, token_agent

BUDGET_KINDS = ("BudgetWarning", "BudgetExhausted")


def ask(c: openai.OpenAI) -> str:
    try:
        c.chat.completions.create(
            model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": "go"}]
        )
        return "ok"
    except openai.APIStatusError as exc:
        return str(exc.status_code)


def budget_events(d: TempDaemon, scope: str | None = None) -> list[Event]:
    found = [e for e in d.rt.events(limit=1000) if e.kind in BUDGET_KINDS]
    return [e for e in found if scope is None or e.scope == scope]


def kinds(d: TempDaemon) -> list[str]:
    return [e.kind for e in d.rt.events(limit=1000)]


def test_one_call_crossing_every_threshold_of_three_scopes_stores_them_in_order(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    upstream.latency = 0.5
    agent_id, token = token_agent(gov, tmp_path, project="crew")
    c = sdk_client(gov, token)
    request.addfinalizer(c.close)
    results: list[str] = []
    call = threading.Thread(target=lambda: results.append(ask(c)))
    call.start()
    wait_until(lambda: gov.rt.get_limits(agent_id).in_flight == 1, timeout=5)
    scopes = [f"agent:{agent_id}", "project:crew", "global"]
    for scope in scopes:  # far below what the call in flight costs
        gov.rt.set_limits(scope, budget_usd=0.0000001)
    call.join(10)
    assert results == ["ok"]

    events = budget_events(gov)
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert [(e.threshold_percent, e.scope) for e in events] == [
        (t, s) for t in (50, 80, 95, 100) for s in scopes
    ]
    assert [e.kind for e in events] == ["BudgetWarning"] * 9 + ["BudgetExhausted"] * 3
    assert all(e.agent_id == agent_id for e in events)
    # And `ironrt events` prints them so: 50 %, 80 %, 95 %, then exhausted.
    shown = gov.cli("events", "-n", "1000")
    assert shown.returncode == 0, shown.stderr
    lines = [
        line
        for line in shown.stdout.splitlines()
        if f"scope=agent:{agent_id}" in line and "threshold_percent=" in line
    ]
    percents = [line.split("threshold_percent=")[1].split()[0] for line in lines]
    assert percents == ["50", "80", "95", "100"] and "BudgetExhausted" in lines[-1]


@pytest.mark.parametrize("on_budget", ["block", "pause"])
def test_a_refusal_or_pause_right_after_a_call_crossed_thresholds_comes_after_its_warnings(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path, on_budget: str
) -> None:
    """Six concurrent calls against 1.6 calls' worth: the second is clamped and crosses
    80 and 95 % as it settles, and the calls queued behind it are refused (or parked) at
    that moment. Their `BudgetExhausted` once reached the database before the warnings,
    whose call was still committing its trace."""
    upstream.latency = 0.2
    upstream.usage = TokenUsage(input_tokens=30, output_tokens=20)
    agent_id, token = token_agent(gov, tmp_path, on_budget=on_budget)
    per_call = (30 * 0.15 + 20 * 0.60) / 1_000_000  # gpt-4o-mini
    gov.rt.set_limits(agent_id, budget_usd=round(per_call * 1.6, 9))
    c = sdk_client(gov, token)
    results: list[str] = []
    calls = [threading.Thread(target=lambda: results.append(ask(c))) for _ in range(6)]
    try:
        for t in calls:
            t.start()
        if on_budget == "pause":
            wait_until(lambda: gov.rt.get_agent(agent_id).status.value == "paused", timeout=20)
            wait_until(lambda: "AgentPaused" in kinds(gov), timeout=10)
        else:
            for t in calls:
                t.join(30)
            assert "402" in results and "ok" in results
        events = budget_events(gov, f"agent:{agent_id}")
        percents = [e.threshold_percent for e in sorted(events, key=lambda e: e.id)]
        assert percents == sorted(percents) and percents[-1] == 100, percents
        assert events[-1].kind == "BudgetExhausted" and {50, 80} <= set(percents)
        if on_budget == "pause":
            [paused] = [e for e in gov.rt.events(limit=1000) if e.kind == "AgentPaused"]
            assert events[-1].paused and paused.id > events[-1].id
        else:
            assert events[-1].refused
    finally:
        if on_budget == "pause":
            gov.rt.set_limits(agent_id, budget_usd=1.0)  # let the parked calls go
        for t in calls:
            t.join(30)
        c.close()
