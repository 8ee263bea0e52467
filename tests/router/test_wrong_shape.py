"""Requests of the wrong shape, answers the router cannot relay as they are, and bugs:
every refusal or failure is provider-shaped, says whether a retry can help, and is traced.

Before: valid JSON of the wrong shape (`messages` not a list, deep nesting) and an upstream
header with a control character or a non-Latin-1 character got a plain-text `Internal
Server Error` with no `x-should-retry: false` (so the SDKs retried it) and no trace.

A real daemon routes OpenAI calls to the fake upstream and Anthropic calls to a bare
socket "provider" whose answers carry odd headers; both count what reaches them. The
last-resort guard is exercised in process at the end: no request can reach it through the
daemon any more (each path that did is fixed), so a collaborator of the real `RouterApp`
raises the way a bug would.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from ironrt.config import ReliabilitySettings
from ironrt.governance.agent import AgentGovernance
from ironrt.governance.flow import Flow
from ironrt.governance.ledger import Ledger
from ironrt.governance.pipeline import Pipeline
from ironrt.protocol import Trace
from ironrt.router.app import RouterApp
from ironrt.router.egress import RouterConfig
from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream
from ironrt.transports.http import Upstream
from tests.router.helpers import ANTHROPIC_KEY, OPENAI_KEY, token_agent

MESSAGE = (
    b'{"id":"msg_1","type":"message","role":"assistant","model":"claude-3-5-haiku-latest",'
    b'"content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,'
    b'"usage":{"input_tokens":12,"output_tokens":3}}'
)
ODD_ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nrequest-id: req_odd\r\n"
    b"x-control: a\x01b\r\n"  # aiohttp reads it; the router's HTTP server refuses to send it
    b"x-utf8: caf\xc3\xa9 \xe2\x82\xac\r\n"  # not Latin-1: the router used to crash on it
    b"connection: close\r\ncontent-length: " + str(len(MESSAGE)).encode() + b"\r\n\r\n" + MESSAGE
)


class _OddProvider(socketserver.ThreadingTCPServer):
    daemon_threads = True
    hits = 0


class _OddHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        length = 0
        while (line := self.rfile.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        self.rfile.read(length)
        assert isinstance(self.server, _OddProvider)
        self.server.hits += 1
        self.wfile.write(ODD_ANSWER)


@dataclass
class Router:
    daemon: TempDaemon
    openai_upstream: FakeUpstream
    anthropic_upstream: _OddProvider
    agent_id: str
    token: str

    def traces(self) -> list[Trace]:
        return self.daemon.rt.traces(agent=self.agent_id, limit=500)

    def upstream_hits(self) -> int:
        return len(self.openai_upstream.requests) + self.anthropic_upstream.hits


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    odd = _OddProvider(("127.0.0.1", 0), _OddHandler)
    thread = threading.Thread(target=odd.serve_forever, daemon=True)
    thread.start()
    try:
        with FakeUpstream() as up:
            env = {
                "IRONRT_OPENAI_BASE_URL": up.url,
                "IRONRT_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{odd.server_address[1]}",
                "OPENAI_API_KEY": OPENAI_KEY,
                "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
                "IRONRT_RETRY_MAX_ATTEMPTS": "1",
            }
            with TempDaemon(offline=False, env=env) as d:
                agent_id, token = token_agent(d, tmp_path_factory.mktemp("agent"))
                yield Router(d, up, odd, agent_id, token)
    finally:
        odd.shutdown()
        odd.server_close()


def _auth(provider: str, token: str) -> dict[str, str]:
    if provider == "anthropic":
        return {"x-api-key": token, "anthropic-version": "2023-06-01"}
    return {"authorization": f"Bearer {token}"}


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-3-5-haiku-latest", "max_tokens": 8, "messages": CHAT["messages"]}
WRONG: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/chat/completions", {**CHAT, "messages": 5}, "messages"),
    ("/v1/chat/completions", {**CHAT, "messages": ["hi"]}, "messages[0]"),
    (
        "/v1/chat/completions",
        {**CHAT, "messages": [{"role": "user", "content": 5}]},
        "messages[0].content",
    ),
    (
        "/v1/chat/completions",
        {**CHAT, "messages": [{"role": "assistant", "content": "x", "tool_calls": 3}]},
        "messages[0].tool_calls",
    ),
    ("/v1/chat/completions", {**CHAT, "stream": True, "stream_options": 3}, "stream_options"),
    ("/v1/chat/completions", {**CHAT, "tools": {"a": 1}}, "tools"),
    ("/v1/chat/completions", {**CHAT, "model": 5}, "model"),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": 5}, "input"),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "tools": 7}, "tools"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": {"a": 1}}, "input"),
    ("/v1/messages", {**MESSAGES, "messages": 5}, "messages"),
    ("/v1/messages", {**MESSAGES, "system": 4}, "system"),
    (
        "/v1/messages",
        {**MESSAGES, "messages": [{"role": "user", "content": {}}]},
        "messages[0].content",
    ),
    (
        "/v1/messages/count_tokens",
        {"model": "claude-3-5-haiku-latest", "messages": "x"},
        "messages",
    ),
]


@pytest.mark.parametrize(("path", "body", "param"), WRONG, ids=[f"{w[0]}:{w[2]}" for w in WRONG])
def test_a_wrong_shaped_body_is_a_400_naming_the_field(
    router: Router, path: str, body: dict[str, Any], param: str
) -> None:
    provider = "anthropic" if path.startswith("/v1/messages") else "openai"
    hits, before = router.upstream_hits(), len(router.traces())
    r = httpx.post(
        router.daemon.router_url + path, json=body, headers=_auth(provider, router.token)
    )
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-should-retry"] == "false"
    error = r.json()["error"]
    if provider == "openai":
        assert error["param"] == param and error["code"] == "invalid_type", error
    else:
        assert r.json()["type"] == "error" and error["type"] == "invalid_request_error"
    assert f"'{param}'" in error["message"]
    assert router.upstream_hits() == hits  # refused before anything was forwarded
    traces = router.traces()
    assert len(traces) == before + 1
    assert traces[-1].status_code == 400 and traces[-1].cost_usd == 0
    assert "invalid_type" in (traces[-1].error or "") and param in (traces[-1].error or "")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"gpt-4o-mini","messages":[],"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"[" * 100_000,
        b"[1, 2]",
    ],
    ids=["deep-field", "deep-objects", "deep-arrays", "not-an-object"],
)
def test_json_the_router_cannot_read_is_a_traced_400(router: Router, raw: bytes) -> None:
    before = len(router.traces())
    r = httpx.post(
        router.daemon.router_url + "/v1/chat/completions",
        content=raw,
        headers={**_auth("openai", router.token), "content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
    assert r.headers["x-should-retry"] == "false"
    assert len(router.traces()) == before + 1


def test_the_openai_sdk_gets_its_error_and_does_not_retry(router: Router) -> None:
    client = openai.OpenAI(base_url=router.daemon.router_url + "/v1", api_key=router.token)
    assert client.max_retries > 0  # the SDK's default: it would retry a plain 500
    hits, before = router.upstream_hits(), len(router.traces())
    with client:
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"messages": {"role": "user"}},
            )
        assert info.value.param == "messages" and info.value.code == "invalid_type"
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="gpt-4o-mini", input="hi", extra_body={"input": 5})
        assert info.value.param == "input"
    assert len(router.traces()) == before + 2  # one attempt each
    assert router.upstream_hits() == hits


def test_the_anthropic_sdk_gets_its_error_and_does_not_retry(router: Router) -> None:
    client = anthropic.Anthropic(base_url=router.daemon.router_url, api_key=router.token)
    assert client.max_retries > 0
    hits, before = router.upstream_hits(), len(router.traces())
    with client, pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=8,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"messages": 5},
        )
    assert "'messages'" in info.value.message
    assert len(router.traces()) == before + 1
    assert router.upstream_hits() == hits


def test_an_upstream_header_the_router_cannot_send_is_dropped_not_a_500(router: Router) -> None:
    before = len(router.traces())
    r = httpx.post(
        router.daemon.router_url + "/v1/messages",
        json=MESSAGES,
        headers=_auth("anthropic", router.token),
    )
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == "hi"
    assert (b"x-utf8", "café €".encode()) in r.headers.raw  # relayed byte for byte
    assert "x-control" not in r.headers
    traces = router.traces()
    assert len(traces) == before + 1
    assert traces[-1].status_code == 200 and traces[-1].input_tokens == 12
    assert traces[-1].cost_usd is not None and traces[-1].cost_usd > 0


# ---- the last-resort guard, in process -----------------------------------------------------


class _Books:
    """Stands in for the daemon's settle (RouterService.settle), optionally failing."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.flows: list[Flow] = []

    async def settle(self, flow: Flow) -> None:
        if self.fail:  # every time: the router's own handling of a failure fails too
            raise RuntimeError("the books broke")
        if not flow.settled:
            flow.settled = True
            self.flows.append(flow)


def _app(books: _Books, *, offline: bool, keys: Any) -> RouterApp:
    agent = AgentGovernance("a1")
    config = RouterConfig(offline=offline, base_urls={"openai": None, "anthropic": None}, keys=keys)
    settings = ReliabilitySettings()
    return RouterApp(
        config, Pipeline([]), Upstream(settings), lambda _: agent, books.settle, Ledger(), 5.0
    )


def _no_keys(provider: str) -> tuple[str, str] | None:
    raise LookupError(f"a bug looking up the {provider} key")


async def test_an_unexpected_exception_is_logged_answered_and_traced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    books = _Books()
    app = _app(books, offline=False, keys=_no_keys)
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.ERROR, logger="ironrt.router"):
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            r = await client.post(
                "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer t"}
            )
    assert r.status_code == 500 and r.headers["x-should-retry"] == "false"
    assert r.json()["error"]["code"] == "internal_error"
    assert "LookupError" in r.json()["error"]["message"]
    [flow] = books.flows
    assert flow.status_code == 500 and "internal error (LookupError)" in (flow.error or "")
    [record] = [rec for rec in caplog.records if rec.name == "ironrt.router"]
    assert record.exc_info is not None and record.exc_info[0] is LookupError


async def test_an_unexpected_exception_mid_stream_ends_it_with_the_providers_error_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    books = _Books(fail=True)
    app = _app(books, offline=True, keys=lambda provider: None)
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.ERROR, logger="ironrt.router"):
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            r = await client.post(
                "/v1/messages",
                json={**MESSAGES, "stream": True},
                headers={"x-api-key": "t", "anthropic-version": "2023-06-01"},
            )
    assert r.status_code == 200  # the stream had started
    assert r.text.startswith("event: message_start")
    assert "message_stop" not in r.text  # the end of the answer never went out
    last = r.text.strip().split("\n\n")[-1]
    assert last.startswith("event: error\ndata: "), last
    error = json.loads(last.split("data: ", 1)[1])
    assert error["error"]["type"] == "api_error"
    assert "internal error (RuntimeError)" in error["error"]["message"]
    assert any(
        rec.exc_info and "unexpected" in rec.getMessage()
        for rec in caplog.records
        if rec.name == "ironrt.router"
    )
