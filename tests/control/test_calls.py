"""The control protocol is declared once (`ironrt.calls`): every entry has a handler, every
route the daemon serves comes from the table, every request the clients send is one the
table declares, and `/v1/openapi.json` lists exactly the table. No daemon: the router is
matched in-process (the daemon's own tests, and the fuzzer, drive the same router over its
socket)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest

from ironrt import calls
from ironrt import client_requests as req
from ironrt.calls import CALLS, Operation
from ironrt.control import api
from ironrt.control.http import Request, Router
from ironrt.control.openapi import openapi_document
from ironrt.errors import InvalidRequest, InvalidValue


def router() -> Router:
    # `build` only binds: no handler runs here, so the daemon's parts are not needed.
    return api.build(cast(api.DaemonContext, None))


def test_every_call_has_a_handler_and_every_route_comes_from_the_table() -> None:
    assert set(api.HANDLERS) == {c.name for c in CALLS}
    routes = router().routes
    assert [r.call for r in routes] == list(CALLS)
    assert [(r.method, r.template) for r in routes] == [(c.method, c.path) for c in CALLS]


def test_calls_are_unique_by_name_and_by_method_and_path() -> None:
    assert len({c.name for c in CALLS}) == len(CALLS)
    assert len({(c.method, c.path) for c in CALLS}) == len(CALLS)
    named = {v for k, v in vars(calls).items() if k.isupper() and isinstance(v, Operation)}
    assert named == set(CALLS), "a call declared but not in CALLS is served by nobody"


def test_build_refuses_a_call_without_a_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    handlers = dict(api.HANDLERS)
    del handlers[calls.USAGE.name]
    monkeypatch.setattr(api, "HANDLERS", handlers)
    with pytest.raises(LookupError, match="usage"):
        router()


def test_build_refuses_a_handler_without_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "HANDLERS", {**api.HANDLERS, "colour": api.HANDLERS["health"]})
    with pytest.raises(LookupError, match="colour"):
        router()


#: Every request builder of the clients, with arguments that need quoting, and the call
#: of the table it must be.
BUILDERS: list[tuple[Callable[[], req.Call[Any]], Operation[Any]]] = [
    (lambda: req.health(), calls.HEALTH),
    (lambda: req.version(), calls.VERSION),
    (lambda: req.shutdown_daemon(True), calls.STOP_DAEMON),
    (lambda: req.list_agents(metrics=True), calls.LIST_AGENTS),
    (lambda: req.start_agent(["true"], [], {}, budget=None, project=None), calls.START_AGENT),
    (lambda: req.get_agent("a/b c"), calls.GET_AGENT),
    (lambda: req.update_agent("x:y", {"rpm": 3}), calls.UPDATE_AGENT),
    (lambda: req.remove_agent("..", True), calls.REMOVE_AGENT),
    (lambda: req.stop_agent("名前", 5.0), calls.STOP_AGENT),
    (lambda: req.restart_agent("%", 1.0), calls.RESTART_AGENT),
    (lambda: req.wait_poll("a?b", None), calls.WAIT_AGENT),
    (lambda: req.get_metrics("a#b"), calls.AGENT_METRICS),
    (lambda: req.logs("a b", 7), calls.AGENT_LOGS),
    (lambda: req.follow_logs("a b", 7), calls.AGENT_LOGS),
    (lambda: req.events("a&b=c", 3, 9), calls.EVENTS),
    (lambda: req.follow_events(None, 0, 100), calls.EVENTS),
    (lambda: req.usage("model", "bot"), calls.USAGE),
    (lambda: req.traces("bot", 5), calls.TRACES),
    (lambda: req.get_trace(7), calls.GET_TRACE),
    (lambda: req.limits(), calls.LIST_LIMITS),
    (lambda: req.get_limits("project:a/b"), calls.GET_LIMITS),
    (lambda: req.set_limits("global", {"rpm": 4}), calls.SET_LIMITS),
    (lambda: req.remove_limits("agent:x"), calls.REMOVE_LIMITS),
]


#: Calls the clients do not make, each with its reason.
CLIENTLESS = {
    "openapi": "a description for tools (curl, code generators), not a client call",
    "metrics": "Prometheus text, read by scrapers and curl, not a client call",
}


def test_every_call_has_a_client_builder() -> None:
    assert {op.name for _, op in BUILDERS} == {c.name for c in CALLS} - set(CLIENTLESS)


@pytest.mark.parametrize(("build", "op"), BUILDERS, ids=[op.name for _, op in BUILDERS])
def test_client_requests_are_the_calls_of_the_table(
    build: Callable[[], req.Call[Any]], op: Operation[Any]
) -> None:
    """Routed by the daemon's own router to the call it was built from, each path
    parameter arriving whole, and only declared query parameters sent."""
    call = build()
    url = urlsplit(call.path)
    route, params = router().match(call.method, url.path)
    assert route.call is op
    assert set(params) == set(op.path_params)
    for name in parse_qs(url.query):
        op.param(name)  # KeyError: a parameter the call does not declare
    if op.body is not None:
        assert call.body is not None


def test_path_parameters_are_quoted_as_one_segment() -> None:
    assert req.get_limits("project:a/b").path == "/v1/limits/project%3Aa%2Fb"
    assert req.stop_agent("a/b", 1.0).path == "/v1/agents/a%2Fb/stop"
    assert req.usage("agent", "a&b").path == "/v1/usage?by=agent&agent=a%26b"
    with pytest.raises(InvalidRequest):
        req.get_limits(" ")  # would address the list of scopes


def test_a_query_parameter_the_call_does_not_declare_is_refused_before_sending() -> None:
    with pytest.raises(KeyError, match="colour"):
        req.call(calls.TRACES, query={"colour": "blue"})
    with pytest.raises(TypeError, match="ref"):
        req.call(calls.GET_AGENT)


def test_the_document_lists_exactly_the_table() -> None:
    doc = json.loads(openapi_document(CALLS, "0"))
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert listed == {(c.method, c.path) for c in CALLS}
    for c in CALLS:
        op = doc["paths"][c.path][c.method.lower()]
        assert str(c.status) in op["responses"]
        query = {p["name"]: p["schema"] for p in op.get("parameters", []) if p["in"] == "query"}
        assert list(query) == [q.name for q in c.query]
        for q in c.query:
            if q.type == "number":
                assert (query[q.name]["minimum"], query[q.name]["maximum"]) == (
                    q.minimum,
                    q.maximum,
                )
            assert query[q.name].get("default") == q.default
    logs = doc["paths"]["/v1/agents/{ref}/logs"]["get"]["responses"]["200"]["content"]
    assert list(logs) == ["text/plain"]
    events = doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
    assert set(events) == {"application/json", "application/x-ndjson", "text/event-stream"}


# ---- a handler reads its query as the table declares it --------------------------------------
def read(op: Operation[Any], query: dict[str, str], how: Callable[[Request], object]) -> object:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    return how(Request("GET", op.path, {}, query, receive, op))


def test_defaults_and_ranges_come_from_the_table() -> None:
    assert read(calls.REMOVE_AGENT, {}, lambda r: r.number("timeout")) == 10.0
    assert read(calls.WAIT_AGENT, {}, lambda r: r.number("timeout")) == 30.0
    assert read(calls.USAGE, {}, lambda r: r.choice("by")) == "agent"
    assert read(calls.EVENTS, {"agent": ""}, lambda r: r.text("agent")) is None
    assert read(calls.LIST_AGENTS, {"metrics": "yes"}, lambda r: r.flag("metrics")) is True
    with pytest.raises(InvalidValue) as out_of_range:
        read(calls.WAIT_AGENT, {"timeout": "3601"}, lambda r: r.number("timeout"))
    assert out_of_range.value.field == "timeout" and out_of_range.value.status == 422
    with pytest.raises(InvalidRequest, match="one of agent, provider, model"):
        read(calls.USAGE, {"by": "colour"}, lambda r: r.choice("by"))


def test_a_handler_cannot_read_a_parameter_its_call_does_not_declare() -> None:
    """An undeclared parameter would be missing from the document and the clients: a bug,
    answered 500 by the router, never silently read."""
    with pytest.raises(KeyError):
        read(calls.TRACES, {"colour": "1"}, lambda r: r.number("colour"))
    with pytest.raises(TypeError):
        read(calls.TRACES, {"limit": "1"}, lambda r: r.flag("limit"))


def test_a_route_answers_with_its_calls_status() -> None:
    """The handlers of start (201) and daemon stop (202) take the status from the table."""
    sent: list[dict[str, Any]] = []
    stopped: list[bool] = []

    class Ctx:
        request_shutdown = stopped.append

    r = api.build(cast(api.DaemonContext, Ctx()))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": calls.STOP_DAEMON.path}
    anyio.run(r, {**scope, "query_string": b"keep_agents=true"}, receive, send)
    assert sent[0]["status"] == calls.STOP_DAEMON.status == 202
    assert json.loads(sent[1]["body"]) == {"stopping": True, "keep_agents": True}
    assert stopped == [True]
