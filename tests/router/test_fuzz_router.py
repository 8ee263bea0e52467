"""Fuzz the router with malformed requests from an agent that holds a valid IC_TOKEN.

A real daemon routes to a real fake upstream over TCP; requests go out over a raw HTTP/1.1
connection (`http.client`), so paths reach the router exactly as written: a client library
would resolve `..` and `//` before sending, and hide the very tricks being tested.

What is generated, for both surfaces (OpenAI `/v1/chat/completions`, `/v1/responses`,
`/v1/embeddings`, `/v1/models`; Anthropic `/v1/messages`, `/v1/messages/count_tokens`):
- paths: dot-segments, percent-encoded slashes and dots, `//`, a trailing slash, traversal
  to endpoints that cannot be metered (`/v1/models/../files`), unknown endpoints;
- methods, headers (auth variants, content types, junk beta flags);
- bodies: bytes that are not JSON, JSON that is not an object, and the endpoint's own body
  with one field of the wrong shape: `messages` not a list, numbers where strings go,
  huge ints (2**64, 1e400), NaN, deep nesting, very long strings.

The upstream answers every forwarded request as a provider answers a malformed one: a
provider-shaped 400. So every answer, the router's own or passed through, must be:
- JSON shaped like the provider's error (OpenAI `{"error": {"message", "type", "param",
  "code"}}`, Anthropic `{"type": "error", "error": {"type", "message"}}`), never a
  plain-text 500; the provider is told apart as docs/router.md says (by path: `/v1/messages…`
  Anthropic's, OpenAI's own endpoints OpenAI's; then the `anthropic-version` / `x-api-key`
  headers);
- when the router answered it itself (nothing reached the upstream) with an error a retry
  cannot help (any but 408, 429, 502, 503, 504), marked `x-should-retry: false`, so the
  SDKs do not retry it;
- forwarded only to the path of a metered endpoint, written canonically (no `.`/`..`
  segment, no empty one, no encoded separator): what the router decided is what it sends.
After the run the daemon and the router are healthy and the agent's token still works.

Runs a few seconds in CI; `IRONRT_FUZZ_EXAMPLES=5000` runs longer (see tests/fuzzing.py).
"""

from __future__ import annotations

import http.client
import json
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ironrt.providers import OpenAIAdapter
from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream
from tests.fuzzing import TimeCap, fuzz_settings
from tests.router.helpers import governed_env, token_agent

#: The metered endpoints and the free ones, each as the router must forward it.
FORWARDABLE = re.compile(
    r"^/v1/(chat/completions|responses|responses/input_tokens|embeddings|messages"
    r"|messages/count_tokens|models|models/[^/]+)$"
)
#: Statuses a retry may help: a timeout, a rate limit, an upstream gone or unreachable.
RETRYABLE = {408, 429, 502, 503, 504}


@dataclass
class Router:
    daemon: TempDaemon
    upstream: FakeUpstream
    host: str
    port: int
    token: str


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    with FakeUpstream() as up:
        env = governed_env(up.url)
        with TempDaemon(offline=False, env=env) as d:
            _, token = token_agent(d, tmp_path_factory.mktemp("fuzz-agent"))
            url = urlsplit(d.router_url)
            assert url.hostname is not None and url.port is not None
            # A provider answers a malformed request with a 400 of its own shape.
            up.fail(times=10**9, status=400, message="the fake provider refuses this request")
            yield Router(d, up, url.hostname, url.port, token)


def assert_healthy(r: Router) -> None:
    """The daemon, the router and the agent's token outlived the fuzz."""
    d = r.daemon
    assert d.proc is not None and d.proc.poll() is None, d.stderr()
    assert d.rt.health().ok
    assert send(r, Request("openai", "GET", "/health", {}, b""))[0] == 200
    r.upstream.reset()  # the upstream answers again
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    status, _, body = send(r, _request("openai", "POST", "/v1/chat/completions", chat, r))
    assert status == 200 and json.loads(body)["choices"], body


# ---- requests ---------------------------------------------------------------------------------


@dataclass
class Request:
    provider: str  # whose SDK it imitates: "openai" or "anthropic"
    method: str
    path: str  # as sent, raw
    headers: dict[str, str]
    body: bytes
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"{self.method} {self.path[:300]} ({self.provider}) headers={self.headers!r} "
            f"body={self.body[:300]!r}{f'... ({len(self.body)} bytes)' if len(self.body) > 300 else ''}"
            f" ({', '.join(self.notes)})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints this for a falsifying example


def _request(provider: str, method: str, path: str, body: dict[str, Any], r: Router) -> Request:
    return Request(provider, method, path, _auth(provider, r.token), json.dumps(body).encode())


def _auth(provider: str, token: str) -> dict[str, str]:
    if provider == "anthropic":
        return {"x-api-key": token, "anthropic-version": "2023-06-01"}
    return {"authorization": f"Bearer {token}"}


def send(r: Router, req: Request) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(r.host, r.port, timeout=30)
    try:
        conn.putrequest(req.method, req.path, skip_accept_encoding=True)
        for name, value in req.headers.items():
            conn.putheader(name, value)
        conn.putheader("content-length", str(len(req.body)))
        conn.endheaders(req.body)
        answer = conn.getresponse()
        body = answer.read()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, body
    finally:
        conn.close()


ENDPOINTS = {
    "openai": [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/responses"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/gpt-4o-mini"),
    ],
    "anthropic": [
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/count_tokens"),
        ("GET", "/v1/models"),
    ],
}
TEMPLATES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16,
    },
    "/v1/responses": {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 16},
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": "hi"},
    "/v1/messages": {
        "model": "claude-haiku-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/v1/messages/count_tokens": {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": "hi"}],
    },
}
UNKNOWN_PATHS = [
    "/",
    "/v1",
    "/v1/",
    "/v2/chat/completions",
    "/V1/chat/completions",
    "/v1/files",
    "/v1/images/generations",
    "/v1/audio/speech",
    "/v1/chat/completions/extra",
    "/v1/models/../files",
    "/v1/models/..%2Ffiles",
    "/v1/models/%2E%2E/files",
    "/v1/models/%2e%2e%2ffiles",
    "/v1/messages/../files",
    "/v1/chat/../../v1/files",
    "/v1/models/a/../../files",
    "/v1/batches",
    "/api/v1/messages",
    "/v1/v1/chat/completions",
]
#: Rewrites of a canonical path that name the same endpoint, or try to name another.
MANGLES = [
    lambda p: p.replace("/v1/", "/v1/./", 1),
    lambda p: p.replace("/v1/", "/v1/x/../", 1),
    lambda p: p.replace("/v1/", "/v1//", 1),
    lambda p: "/" + p,
    lambda p: p + "/",
    lambda p: p + "/.",
    lambda p: p + "/..",
    lambda p: p.replace("/", "%2F", 2).replace("%2F", "/", 1),
    lambda p: "/" + p[1:].replace("/", "%2f"),
    lambda p: p.replace("/v1/", "/v1/%2E/", 1),
    lambda p: p.replace("/v1/", "/v1/%2e%2e/v1/", 1),
    lambda p: p.replace("c", "%63", 1),
    lambda p: p.replace("/", "\\", 2).replace("\\", "/", 1),
    lambda p: p.replace("/v1/", "/v1/;x=1/", 1),
    lambda p: p + "?stream=true&model=%zz",
    lambda p: p + "#frag",
    lambda p: p.replace("/v1/", "/v1/models/../", 1),
]
#: JSON text for values JSON encoders will not write: NaN, infinities, numbers past float.
RAW_VALUES = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" + b"0" * 400]
HOSTILE_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    1.5,
    -1e308,
    "",
    "x",
    "NaN",
    [],
    {},
    [None],
    [1, 2],
    {"role": 5},
    [{"role": "user", "content": 5}],
    [{"role": "user", "content": [{"type": "text", "text": 5}]}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": None}]}],
    [{"type": "function", "function": None}],
    "\u0000\ud800",
    "A" * 100_000,
    "alice@example.com " * 2000,
]
FIELDS = [
    "model",
    "messages",
    "input",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "n",
    "stream",
    "stream_options",
    "tools",
    "system",
    "temperature",
    "messages.0",
    "messages.0.content",
    "messages.0.role",
    "input.0",
    "metadata",
]
RAW_BODIES = [
    b"{",
    b"{'model': 'gpt-4o'}",
    b"\xff\xfe\x00",
    b'{"model":"gpt-4o-mini",}',
    b'{"model":"gpt-4o-mini"} trailing',
    b"\x00",
    b"[" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"model":"gpt-4o-mini","model":5}',
]
CONTENT_TYPES = [
    "application/json",
    None,
    "text/plain",
    "application/json; charset=utf-16",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
]
EXTRA_HEADERS = [
    ("anthropic-beta", "junk,,tools-2024-04-04"),
    ("openai-beta", "assistants=v2"),
    ("x-stainless-retry-count", "abc"),
    ("accept", "text/event-stream"),
    ("accept-encoding", "gzip, br"),
    ("x-forwarded-for", "10.0.0.1"),
    ("openai-organization", "org-" + "x" * 300),
    ("idempotency-key", "\u00e9t\u00e9"),
]


def _set(body: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.0.b` in a body; a path that is not there sets the top-level key instead."""
    *parents, last = dotted.split(".")
    target: Any = body
    for part in parents:
        if isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        elif isinstance(target, dict) and part in target:
            target = target[part]
        else:
            body[dotted.split(".")[0]] = value
            return
    if isinstance(target, list) and last.isdigit() and int(last) < len(target):
        target[int(last)] = value
    elif isinstance(target, dict):
        target[last] = value
    else:
        body[dotted.split(".")[0]] = value


@st.composite
def bodies(draw: st.DrawFn, path: str) -> tuple[bytes, str]:
    # The simplest choices first: hypothesis shrinks a failure toward them.
    kind = draw(
        st.sampled_from(["valid", "field", "field", "field", "raw", "top", "nested", "empty"])
    )
    template = json.loads(json.dumps(TEMPLATES.get(path, TEMPLATES["/v1/chat/completions"])))
    if kind == "valid":
        return json.dumps(template).encode(), "valid body"
    if kind == "raw":
        return draw(st.sampled_from(RAW_BODIES)), "raw"
    if kind == "empty":
        return b"", "empty"
    if kind == "top":
        value = draw(st.sampled_from([[], [template], 1, "x", None, True]))
        return json.dumps(value).encode(), "top"
    name = draw(st.sampled_from(FIELDS))
    if kind == "nested":
        depth = draw(st.integers(min_value=2, max_value=5000))
        opener, closer = (b"[", b"]") if depth % 2 else (b'{"a":', b"}")
        _set(template, name, "RAW-VALUE")
        raw = opener * depth + b"1" + closer * depth
        return json.dumps(template).encode().replace(b'"RAW-VALUE"', raw), f"nested {name}"
    if draw(st.integers(min_value=0, max_value=4)) == 4:
        _set(template, name, "RAW-VALUE")
        raw = draw(st.sampled_from(RAW_VALUES))
        return json.dumps(template).encode().replace(b'"RAW-VALUE"', raw), f"raw {name}"
    value = draw(
        st.sampled_from(HOSTILE_VALUES)
        | st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
            ),
            max_leaves=8,
        )
    )
    _set(template, name, value)
    return json.dumps(template).encode(), f"field {name}"


@st.composite
def router_requests(draw: st.DrawFn, token: str) -> Request:
    provider = draw(st.sampled_from(["openai", "anthropic"]))
    method, path = draw(st.sampled_from(ENDPOINTS[provider]))
    how = draw(st.sampled_from(["as is", "mangled", "mangled", "unknown"]))
    notes = [how]
    if how == "mangled":
        path = draw(st.sampled_from(MANGLES))(path)
    elif how == "unknown":
        path = draw(st.sampled_from(UNKNOWN_PATHS))
    if draw(st.integers(min_value=0, max_value=9)) == 9:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    headers = _auth(provider, token)
    auth = draw(st.sampled_from(["token"] * 8 + ["none", "wrong", "both"]))
    notes.append(auth)
    if auth == "none":
        headers = {k: v for k, v in headers.items() if k == "anthropic-version"}
    elif auth == "wrong":
        headers = _auth(provider, "ic-not-a-real-token")
    elif auth == "both":
        headers = {**headers, **_auth("openai" if provider == "anthropic" else "anthropic", token)}
    content_type = draw(st.sampled_from(CONTENT_TYPES[:2] * 3 + CONTENT_TYPES[2:]))
    if content_type is not None:
        headers["content-type"] = content_type
    for name, value in draw(st.lists(st.sampled_from(EXTRA_HEADERS), max_size=2, unique=True)):
        headers[name] = value
    body, what = draw(bodies(urlsplit(path).path))
    notes.append(what)
    return Request(provider, method, path, headers, body, notes)


# ---- what every answer must be ----------------------------------------------------------------


def _resolved(path: str) -> str:
    """The path as a server that resolves escapes and dot-segments reads it."""
    plain = unquote(urlsplit(path).path).replace("\\", "/")
    resolved = posixpath.normpath(plain) if plain else "/"
    return re.sub("/+", "/", resolved)


def _provider(req: Request, path: str) -> str:
    """docs/router.md: by path (`/v1/messages…` Anthropic's, OpenAI's own endpoints
    OpenAI's), then by Anthropic's headers."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    if path in OPENAI_ONLY:
        return "openai"
    if "anthropic-version" in req.headers or "x-api-key" in req.headers:
        return "anthropic"
    return "openai"


#: The paths only OpenAI has: its adapter's, whatever the headers say.
OPENAI_ONLY = frozenset(OpenAIAdapter.posts)


def _shape(body: Any) -> str | None:
    """Which provider's error shape a decoded body has, if any."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    if body.get("type") == "error" and isinstance(error.get("type"), str) and len(body) == 2:
        return "anthropic"
    if {"message", "type", "param", "code"} <= error.keys() and len(body) == 1:
        return "openai"
    return None


def pinned(token: str) -> list[Request]:
    """Inputs that broke the router (issue 10, and earlier runs of this fuzz), tried first."""
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    nested = b'{"model":' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b', "messages": []}'

    def req(provider: str, method: str, path: str, body: Any = chat) -> Request:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {**_auth(provider, token), "content-type": "application/json"}
        return Request(provider, method, path, headers, raw, ["pinned"])

    return [
        req("openai", "GET", "/v1/models/../files", b""),
        req("openai", "GET", "/v1/models/..%2Ffiles", b""),
        req("anthropic", "GET", "/v1/models/.", b""),
        req("openai", "POST", "/v1/./chat/completions"),
        req("openai", "POST", "/v1/x/../chat/completions"),
        req("openai", "POST", "/v1/chat/completions/"),
        req("openai", "POST", "//v1/chat/completions"),
        req("anthropic", "POST", "//v1/messages"),
        req("anthropic", "POST", "/"),
        req("openai", "POST", "/v1/chat/completions", nested),
        req("openai", "POST", "/v1/chat/completions", {**chat, "messages": "hi"}),
        req("anthropic", "POST", "/v1/messages", {**chat, "messages": {"role": "user"}}),
    ]


def test_malformed_router_requests_get_provider_shaped_refusals(router: Router) -> None:
    cap = TimeCap()

    @fuzz_settings(ci_examples=120)
    @given(req=router_requests(router.token))
    @cap.guard
    def run(req: Request) -> None:
        router.upstream.clear_requests()
        status, headers, raw = send(router, req)
        forwarded = router.upstream.requests
        exchange = f"{req!r}\n-> {status} {headers} {raw[:500]!r}"
        for sent in forwarded:  # as the upstream read it: percent-escapes decoded
            assert FORWARDABLE.match(sent.path), f"forwarded to {sent.path!r}: {exchange}"
            segments = sent.path.split("/")[1:]
            assert not {".", "..", ""} & set(segments), f"forwarded to {sent.path!r}: {exchange}"
        assert headers.get("content-type", "").startswith("application/json"), exchange
        try:
            body = json.loads(raw)
        except ValueError:
            raise AssertionError(f"not JSON: {exchange}") from None
        if status < 400:
            return
        wanted = {_provider(req, urlsplit(req.path).path), _provider(req, _resolved(req.path))}
        assert _shape(body) in wanted, f"not shaped like {wanted}: {exchange}"
        if not forwarded and status not in RETRYABLE:
            assert headers.get("x-should-retry") == "false", f"retryable refusal: {exchange}"

    for req in pinned(router.token):
        run = example(req=req)(run)
    run()
    assert_healthy(router)
