"""Path tricks against the router: the endpoint is decided on the canonical path, that
exact path is what the provider receives, and anything without a single meaning is a 404
that never leaves the router.

A real daemon forwards to a real fake upstream over TCP, which records the raw path it
received. Requests go out over `http.client`, which sends a path exactly as written (an
HTTP client library would resolve the dot-segments being tested before sending them).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from ironrt.protocol import Trace
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import governed_env, token_agent

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


@dataclass
class Router:
    daemon: TempDaemon
    upstream: FakeUpstream
    #: An agent started with --allow-unmetered, and one without.
    free_id: str
    free_token: str
    strict_id: str
    strict_token: str

    def traces(self, agent_id: str) -> list[Trace]:
        return self.daemon.rt.traces(agent=agent_id, limit=500)


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    with FakeUpstream() as up:
        env = governed_env(up.url)
        with TempDaemon(offline=False, env=env) as d:
            free_id, free = token_agent(d, tmp_path_factory.mktemp("free"), allow_unmetered=True)
            strict_id, strict = token_agent(d, tmp_path_factory.mktemp("strict"))
            yield Router(d, up, free_id, free, strict_id, strict)


@pytest.fixture(autouse=True)
def _clean(router: Router) -> None:
    router.upstream.clear_requests()


def send(
    r: Router, method: str, path: str, token: str | None, body: Any = None, **headers: str
) -> tuple[int, dict[str, str], Any]:
    """One request with `path` written on the wire as given; (status, headers, JSON body)."""
    url = urlsplit(r.daemon.router_url)
    assert url.hostname and url.port
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    raw = b"" if body is None else json.dumps(body).encode()
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        if token is not None:
            conn.putheader("authorization", f"Bearer {token}")
        for name, value in headers.items():
            conn.putheader(name.replace("_", "-"), value)
        conn.putheader("content-type", "application/json")
        conn.putheader("content-length", str(len(raw)))
        conn.endheaders(raw)
        answer = conn.getresponse()
        data = answer.read()
    finally:
        conn.close()
    assert answer.getheader("content-type", "").startswith("application/json"), data
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, json.loads(data)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/./chat/completions",
        "/v1/x/../chat/completions",
        "/v1/models/../chat/completions",
        "/v1/%63hat/completions",
        "/v1/chat/completions/",
        "/v1/chat/completions/.",
    ],
)
def test_a_disguised_chat_call_is_metered_as_chat_and_forwarded_as_decided(
    router: Router, path: str
) -> None:
    # Before: decided as `unmetered` ($0) while the upstream client normalised the path and
    # the provider served (and billed) a chat call.
    status, _, body = send(router, "POST", path, router.free_token, CHAT)
    assert status == 200, body
    [sent] = router.upstream.requests
    assert sent.raw_path == "/v1/chat/completions"
    trace = router.traces(router.free_id)[-1]
    assert trace.endpoint == "chat.completions"
    assert trace.cost_usd is not None and trace.cost_usd > 0
    assert trace.input_tokens > 0


def test_traversal_to_an_unmetered_path_never_reaches_the_provider(router: Router) -> None:
    # Before: `GET /v1/models/../files` was decided as the free model list and reached the
    # provider, with the real key, as `GET /v1/files`.
    before = len(router.traces(router.strict_id))
    status, headers, body = send(router, "GET", "/v1/models/../files", router.strict_token)
    assert status == 404 and body["error"]["code"] == "endpoint_not_supported", body
    assert headers["x-should-retry"] == "false"
    assert router.upstream.requests == []
    traces = router.traces(router.strict_id)
    assert len(traces) == before + 1
    assert traces[-1].status_code == 404 and traces[-1].endpoint == "unmetered"
    assert "endpoint_not_supported" in (traces[-1].error or "")
    assert "/v1/models/../files" in (traces[-1].error or "")


def test_traversal_with_allow_unmetered_is_forwarded_where_it_was_decided(router: Router) -> None:
    status, _, _ = send(router, "GET", "/v1/models/../files", router.free_token)
    assert status == 404  # the fake provider serves no files; the router forwarded it
    [sent] = router.upstream.requests
    assert sent.raw_path == "/v1/files" and sent.method == "GET"
    assert router.traces(router.free_id)[-1].endpoint == "unmetered"


AMBIGUOUS = [
    "/v1/models/%2E%2E/files",
    "/v1/models/%2e%2e%2ffiles",
    "/v1/chat%2Fcompletions",
    "/v1/chat%2fcompletions",
    "/v1/%2E/chat/completions",
    "/v1//chat/completions",
    "/v1/chat\\completions",
    "/v1/%5Cchat/completions",
    "/v1/models/a%00b",
    "/v1/models/a%0Ab",
    "/v1/models/%zz",
    "/v1/../../etc/passwd",
    "/v1/models/{id}",
]


def test_paths_without_a_single_meaning_are_refused_and_traced(router: Router) -> None:
    before = len(router.traces(router.free_id))
    for path in AMBIGUOUS:
        status, headers, body = send(router, "POST", path, router.free_token, CHAT)
        assert status == 404, (path, body)
        assert body["error"]["code"] == "unknown_endpoint", (path, body)
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert headers["x-should-retry"] == "false", path
    assert router.upstream.requests == []  # not one reached the provider
    traces = router.traces(router.free_id)[before:]
    assert len(traces) == len(AMBIGUOUS)
    assert all(t.status_code == 404 and t.cost_usd == 0 for t in traces)
    assert all("unknown_endpoint" in (t.error or "") for t in traces)


def test_a_refused_path_is_answered_in_the_shape_the_client_speaks(router: Router) -> None:
    status, headers, body = send(
        router,
        "POST",
        "/v1/messages%2F..%2Fcount_tokens",
        None,
        {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": []},
        x_api_key=router.strict_token,
        anthropic_version="2023-06-01",
    )
    assert status == 404 and headers["x-should-retry"] == "false"
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert "%2F" in body["error"]["message"]
    assert router.upstream.requests == []


def test_the_forwarded_path_and_query_are_byte_for_byte_the_decided_ones(router: Router) -> None:
    status, _, body = send(
        router, "GET", "/v1/models/ft%3agpt-4o-mini:org::x1", router.strict_token
    )
    assert status == 200 and body["id"] == "ft:gpt-4o-mini:org::x1", body
    status, _, _ = send(
        router,
        "POST",
        "/v1/chat/completions?x=/../../v1/files&y=%2F#frag",
        router.strict_token,
        CHAT,
    )
    assert status == 200
    models, chat = router.upstream.requests
    assert models.raw_path == "/v1/models/ft%3Agpt-4o-mini:org::x1"  # escape case normalised
    assert chat.raw_path == "/v1/chat/completions"
    assert chat.query == "x=/../../v1/files&y=%2F"  # a query is forwarded as it came


def test_requests_without_a_known_agent_are_logged_at_a_bounded_rate(router: Router) -> None:
    traces = {a: len(router.traces(a)) for a in (router.free_id, router.strict_id)}
    secret = "sk-proj-NOTATOKENbutarealkey0123456789"
    for i in range(50):
        token = secret if i % 2 else None
        status, headers, _ = send(router, "POST", f"/v1/chat%2F{i}", token, CHAT)
        assert status == 404 and headers["x-should-retry"] == "false"
    status, headers, _ = send(router, "POST", "/v1/chat/completions", secret, CHAT)
    assert status == 401 and headers["x-should-retry"] == "false"
    assert router.upstream.requests == []

    def logged() -> list[str]:
        return [line for line in router.daemon.log().splitlines() if "no known agent" in line]

    wait_until(lambda: len(logged()) >= 20, timeout=5)
    lines = logged()
    # At most 20 a minute: 50 within a second never all get a line (a minute boundary
    # inside the burst lets at most 20 more through).
    assert 20 <= len(lines) <= 40, len(lines)
    assert "unknown_endpoint" in lines[0] and "/v1/chat%2F" in lines[0]
    assert secret not in router.daemon.log()
    assert {a: len(router.traces(a)) for a in traces} == traces  # no agent, no trace
