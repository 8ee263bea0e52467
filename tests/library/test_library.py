"""Library mode (`ironrt.protect`, `ironrt.protect_agent`) through the real `openai` and
`anthropic` SDKs against a real FakeUpstream over TCP, checked against what the real CLI
(`ironrt ps --all`, `ironrt usage`, `ironrt traces`) shows afterwards.

The scenarios run in processes of their own (see conftest.py and helpers.py); the tests
here only read what those saw and what the CLI shows, plus argument checks that need no
kernel.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import ironrt
from ironrt.providers.offline import offline_response
from tests.library.helpers import KEY, Runs, assert_books

EMAIL = "jane.doe@example.com"
SAFE = "[EMAIL_1]"
#: Scenario check -> (provider, endpoint) of its calls.
SDK_CHECKS = {
    "openai_sync": ("openai", "chat.completions"),
    "openai_async": ("openai", "chat.completions"),
    "anthropic_sync": ("anthropic", "messages"),
    "anthropic_async": ("anthropic", "messages"),
}
#: Library mode records every scope of the SDK scenario, and nothing else.
SDK_SCOPES = {
    "nb",
    "claude",
    "nb-async",
    "claude-async",
    "tiny",
    "raw-http",
    "down",
    "flaky",
    "left-early",
}


def _tool_arguments(events: list[bytes]) -> list[str]:
    """The tool-argument pieces of a stream, event by event (both APIs)."""
    pieces = []
    for event in events:
        for line in event.decode().splitlines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line.removeprefix("data: "))
            delta = data.get("delta") or {}
            if isinstance(delta.get("partial_json"), str):
                pieces.append(delta["partial_json"])
            for choice in data.get("choices") or []:
                for call in choice["delta"].get("tool_calls") or []:
                    pieces.append(call["function"].get("arguments", ""))
    return [p for p in pieces if p]


# ---- both SDKs, sync and async: redaction, restoration, the client's key, the books ---------


@pytest.mark.parametrize("check", SDK_CHECKS)
def test_upstream_gets_redacted_text_and_the_clients_own_key(runs: Runs, check: str) -> None:
    upstream = runs.sdks[check]["upstream"]
    said = [request["body"]["messages"][-1]["content"] for request in upstream]
    # plain, streamed, streamed tool call
    assert said == [f"hello, please write to {SAFE} today"] * 2 + [f"use the tool to mail {SAFE}"]
    for request in upstream:
        assert request["key"] == KEY and EMAIL not in json.dumps(request["body"])


@pytest.mark.parametrize("check", SDK_CHECKS)
def test_the_client_gets_the_original_text_back(runs: Runs, check: str) -> None:
    seen = runs.sdks[check]
    plain, streamed = seen["texts"]
    assert (
        plain
        == streamed
        == (f"This is an offline reply from ironrt. You said: hello, please write to {EMAIL} today")
    )
    # The tool's arguments, streamed: the placeholder came in pieces and went out whole.
    assert "".join(seen["pieces"]) == json.dumps({"to": EMAIL}, separators=(",", ":"))
    assert not any(SAFE[1:-1] in piece for piece in seen["pieces"])


@pytest.mark.parametrize("check", SDK_CHECKS)
def test_the_placeholder_reached_ironrt_split_across_events(runs: Runs, check: str) -> None:
    """The premise of the restoration check above: what the upstream streamed for the tool
    call (the offline provider's answer to the very body it received) splits it."""
    provider, endpoint = SDK_CHECKS[check]
    body = runs.sdks[check]["upstream"][2]["body"]
    reply = offline_response(provider, endpoint, body)  # type: ignore[arg-type]
    assert reply.events is not None
    pieces = _tool_arguments(reply.events)
    assert "".join(pieces) == json.dumps({"to": SAFE}, separators=(",", ":"))
    assert len(pieces) > 1 and not any(SAFE in piece for piece in pieces)


@pytest.mark.parametrize("check", SDK_CHECKS)
def test_the_scope_spend_is_what_ps_usage_and_traces_show(runs: Runs, check: str) -> None:
    scope = runs.sdks[check]["scope"]
    assert scope["spent"] > 0
    assert_books(runs.quiet, scope, calls=3)


# ---- a budget refusal: the SDK's own 402, no network, no retry -----------------------------


def test_a_budget_refusal_raises_the_sdks_402_without_a_network_call(runs: Runs) -> None:
    seen = runs.sdks["refusals"]
    assert seen["upstream"] == []
    assert seen["tries"] == [1, 1, 1]  # openai, anthropic, async anthropic: no SDK retry
    classes = [e["class"] for e in seen["errors"]]
    assert classes == ["APIStatusError", "PaymentRequiredError", "PaymentRequiredError"]
    for error in seen["errors"]:
        assert error["status"] == 402 and error["should_retry"] == "false"
        assert f"ironrt budget exhausted in agent:{seen['scope']['id']}" in error["message"]
    assert seen["scope"]["spent"] == 0
    agent = runs.quiet.agent(seen["scope"]["id"])
    assert agent["spent_usd"] == 0 and agent["budget_usd"] == 0.000001
    refusals = runs.quiet.traces_of(seen["scope"]["id"])
    assert [(t["status_code"], t["cost_usd"]) for t in refusals] == [(402, 0)] * 3


# ---- outside a scope, or not an SDK's request: untouched -----------------------------------


def test_calls_outside_a_scope_and_other_requests_go_out_ungoverned(runs: Runs) -> None:
    seen = runs.sdks["ungoverned"]
    upstream = seen["upstream"]
    assert len(upstream) == 2  # the SDK call outside any scope, the raw httpx2 post in one
    for request in upstream:
        assert EMAIL in json.dumps(request["body"]) and request["key"] == KEY
    assert all(EMAIL in text for text in seen["texts"])
    # The scope around the raw request neither charged nor recorded it.
    assert seen["scope"]["spent"] == 0
    assert runs.quiet.traces_of(seen["scope"]["id"]) == []
    assert seen["scope"]["id"] not in runs.quiet.usage


def test_library_mode_never_freezes_the_agents_heap(runs: Runs) -> None:
    """The daemon freezes its own heap after its first call (daemon_heap.py); the kernel
    in an agent's process, after dozens of calls, has frozen nothing of the agent's."""
    assert runs.sdks["frozen_objects"] == 0


# ---- faults ------------------------------------------------------------------------------


def test_an_upstream_that_is_down_is_a_clear_502_and_costs_nothing(runs: Runs) -> None:
    seen = runs.sdks["down"]
    error = seen["error"]
    assert (error["class"], error["status"], error["should_retry"]) == (
        "InternalServerError",
        502,
        "false",
    )
    assert "the openai API is unreachable: ConnectError" in error["message"]
    assert seen["tries"] == 1  # the kernel retried; the SDK was told not to
    assert seen["scope"]["spent"] == 0
    (trace,) = runs.quiet.traces_of(seen["scope"]["id"])
    assert (trace["status_code"], trace["cost_usd"]) == (502, 0) and trace["error"]


def test_a_provider_500_is_retried_by_the_kernel(runs: Runs) -> None:
    seen = runs.sdks["flaky"]
    assert seen["text"] == "This is an offline reply from ironrt. You said: hi"
    assert len(seen["upstream"]) == 2 and seen["tries"] == 1
    assert seen["scope"]["spent"] > 0
    assert_books(runs.quiet, seen["scope"], calls=1)


def test_an_unrecognised_sdk_transport_fails_loudly(runs: Runs) -> None:
    openai_error, anthropic_error = runs.sdks["unrecognised"]
    assert openai_error.startswith("ironrt library mode does not recognise how openai 3.")
    assert "SyncAPIClient._client is <class '__main__.NotHttpx'>" in openai_error
    assert anthropic_error.startswith("ironrt library mode does not recognise how anthropic 2.")
    assert "AsyncAPIClient._client is 'aiohttp.ClientSession'" in anthropic_error
    assert not runs.quiet.named("unrecognised")  # refused before any record


# ---- records: no daemon needed; and beside a running one ------------------------------------


def test_scopes_recorded_without_a_daemon_show_in_the_cli(runs: Runs) -> None:
    assert not runs.daemon_after_sdks  # library mode neither needed nor started one
    assert {a["name"] for a in runs.quiet.agents} == SDK_SCOPES
    for agent in runs.quiet.agents:
        assert (agent["kind"], agent["status"], agent["lost"]) == ("library", "stopped", False)
        assert agent["ended_at"] and agent["restart"] == "no"
    # Every call a scope made is a trace of it; the call outside any scope is none.
    expected = 4 * 3 + 3 + 1 + 1 + 1  # the SDK checks, the refusals, down, flaky, left-early
    assert len(runs.quiet.traces) == expected


def test_a_stream_left_just_before_the_process_exits_is_still_recorded(runs: Runs) -> None:
    """The exit waited for the call to drain and settle: its trace and spend are written."""
    agent_id = runs.sdks["left_early"]["scope"]["id"]
    (trace,) = runs.quiet.traces_of(agent_id)
    assert trace["error"] == "client disconnected mid-stream" and trace["cost_usd"] > 0
    assert runs.quiet.agent(agent_id)["spent_usd"] == pytest.approx(trace["cost_usd"])
    assert runs.quiet.usage[agent_id]["cost_usd"] == pytest.approx(trace["cost_usd"])


def test_the_clients_key_is_never_stored(runs: Runs) -> None:
    for home in runs.homes:
        for path in home.rglob("*"):
            if path.is_file():
                assert KEY.encode() not in path.read_bytes(), path


def test_the_running_daemon_lists_an_open_scope(runs: Runs) -> None:
    seen = runs.scopes["watched"]
    assert seen["listed"] == {
        "kind": "library",
        "status": "running",
        "pid": seen["pid"],
        "budget": 0.25,
    }
    assert_books(runs.busy, seen["scope"], calls=1)


# ---- scopes kept apart: threads, nesting, tasks ---------------------------------------------


def _apart(runs: Runs, scopes: list[dict[str, Any]]) -> None:
    assert len({s["id"] for s in scopes}) == len(scopes)
    for scope in scopes:
        assert_books(runs.busy, scope, calls=scope["calls"])


def test_concurrent_scopes_in_threads_are_kept_apart(runs: Runs) -> None:
    seen = runs.scopes["threads"]
    # Threads 1-3 made all their calls while thread 0's stream was held open upstream.
    assert seen["first_sent"] and seen["done_while_held"]
    scopes = seen["scopes"]
    assert [s["calls"] for s in scopes] == [1, 2, 3, 4]
    _apart(runs, scopes)
    assert scopes[1]["spent"] < scopes[2]["spent"] < scopes[3]["spent"]


def test_nested_scopes_charge_the_innermost(runs: Runs) -> None:
    seen = runs.scopes["nested"]
    _apart(runs, [seen["outer"], seen["inner"]])
    assert seen["inner"]["spent"] > seen["outer"]["spent"]  # longer prompts, inner only


def test_asyncio_tasks_have_their_own_scopes(runs: Runs) -> None:
    scopes = runs.scopes["tasks"]
    assert [s["calls"] for s in scopes] == [1, 2, 3]
    _apart(runs, scopes)


# ---- the decorator ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "which"),
    [("Bots.spend", slice(0, 2)), ("make_async_agent.spend_async", slice(2, 4))],
)
def test_each_decorated_call_is_a_scope_with_its_own_budget(
    runs: Runs, name: str, which: slice
) -> None:
    seen = runs.scopes["decorated"]
    calls = seen["runs"][which]
    # Each call spent until its own budget refused: the second had a budget of its own.
    assert calls[0]["ok"] >= 1 and calls[0] == calls[1] == {"ok": calls[0]["ok"], "status": 402}
    agents = runs.busy.named(name)
    assert len(agents) == 2
    for agent in agents:
        assert agent["kind"] == "library" and agent["status"] == "stopped"
        assert agent["budget_usd"] == seen["budget"]
        assert 0 < agent["spent_usd"] <= seen["budget"]
        traces = runs.busy.traces_of(agent["id"])
        assert [t["status_code"] for t in traces] == [200] * calls[0]["ok"] + [402]
        assert sum(t["cost_usd"] for t in traces) == pytest.approx(agent["spent_usd"])


def test_a_decorated_call_that_raises_ends_its_scope_failed(runs: Runs) -> None:
    assert runs.scopes["decorated"]["raised"] == "the agent broke"
    (agent,) = runs.busy.named("breaks")
    assert agent["status"] == "failed" and agent["ended_at"]
    assert agent["error"] == "RuntimeError: the agent broke"


# ---- bad arguments: refused when written, not at the first call ------------------------------


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"budget": -1}, "`budget` must be a number of USD"),
        ({"budget": float("nan")}, "`budget` must be a number of USD"),
        ({"budget": "0.5"}, "`budget` must be a number of USD"),
        ({"budget": True}, "`budget` must be a number of USD"),
        ({"pii": "nope"}, "pii must be one of off, detect, redact, block, not 'nope'"),
        ({"rpm": 0}, "`rpm` must be between 1 and"),
        ({"tpm": 2.5}, "`tpm` must be a whole number"),
        ({"name": ""}, "`name` must be 1 to 128 characters"),
        ({"name": "   "}, "`name` must be 1 to 128 characters"),
    ],
)
def test_bad_arguments_are_refused_at_construction(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(says)):
        ironrt.protect(**kwargs)
    with pytest.raises(ValueError, match="^" + re.escape(says)):  # not at the first call
        ironrt.protect_agent(**kwargs)


def test_an_sdk_call_that_cannot_be_routed_is_refused_not_let_out(tmp_path: Path) -> None:
    """Inside a scope, an SDK request to a path that is not an API path (`/v1/...`, as an
    Azure deployment's) raises LibraryModeError before anything is sent."""
    script = tmp_path / "azure.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, sys
            import openai, ironrt
            from ironrt.testing import FakeUpstream
            up = FakeUpstream().start()
            client = openai.OpenAI(base_url=up.url + "/openai/deployments/x", api_key="k",
                                   max_retries=0)
            out = {}
            with ironrt.protect(budget=1.0, name="azure"):
                try:
                    client.chat.completions.create(model="gpt-4o-mini",
                        messages=[{"role": "user", "content": "hi"}])
                except ironrt.LibraryModeError as exc:
                    out["error"] = str(exc)
            out["sent"] = len(up.requests)
            up.stop()
            print(json.dumps(out))
            """
        )
    )
    env = {**os.environ, "IRONRT_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "cannot govern POST" in out["error"] and "/openai/deployments/x" in out["error"]
    assert out["sent"] == 0


def test_a_home_of_another_user_or_a_broken_one_is_refused_clearly(tmp_path: Path) -> None:
    """The kernel opens `$IRONRT_HOME` at the first scope: a home another user owns is
    refused naming it (HomeNotPrivate), an unusable one with its own error, no thread or
    record is left behind, and a later scope with a good home works."""
    if os.getuid() != 0:
        pytest.skip("needs root to give the home to another user")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, 65534, 65534)
    broken = tmp_path / "broken"
    broken.write_text("not a folder")
    good = tmp_path / "good"
    script = tmp_path / "homes.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os, threading
            import ironrt
            from ironrt.errors import HomeNotPrivate
            out = {{}}
            os.environ["IRONRT_HOME"] = {str(foreign)!r}
            try:
                with ironrt.protect(budget=1.0, name="x"):
                    pass
            except HomeNotPrivate as exc:
                out["foreign"] = str(exc)
            os.environ["IRONRT_HOME"] = {str(broken)!r}
            try:
                with ironrt.protect(budget=1.0, name="x"):
                    pass
            except Exception as exc:
                out["broken"] = type(exc).__name__ + ": " + str(exc)
            out["threads"] = sum(t.name == "ironrt-library" for t in threading.enumerate())
            os.environ["IRONRT_HOME"] = {str(good)!r}
            with ironrt.protect(budget=1.0, name="good") as scope:
                out["good"] = scope.agent_id
            print(json.dumps(out))
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert str(foreign) in out["foreign"] and "uid 65534" in out["foreign"]
    assert str(broken) in out["broken"]
    assert out["threads"] == 0
    assert out["good"] and not any(foreign.iterdir())
