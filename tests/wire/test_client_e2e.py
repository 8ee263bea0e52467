"""The upstream client under the router: a real daemon, the openai and anthropic SDKs, a
FakeUpstream behind a TCP relay that counts (and can cut) the daemon's connections, and a
forwarding proxy for the anthropic side (HTTP_PROXY), all over real sockets.

Also `Upstream.attempt`'s mapping of wire errors to `AttemptFailed` kinds, against local
servers, and the response header filter."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anthropic
import pytest

from ironrt.policies.settings import ReliabilitySettings
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream, tflow
from ironrt.transports.base import AttemptFailed, Outgoing
from ironrt.transports.http import Upstream, response_headers
from tests.router.helpers import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    governed_env,
    sdk_client,
    token_agent,
)


@dataclass
class Relay:
    """A TCP relay to `target` in a thread: counts connections, records each one's first
    bytes, and can cut every open connection (an upstream closing kept-alive sockets)."""

    target: int
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    socks: list[socket.socket] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.connections += 1
                self.socks += [client, upstream]
            first = [True]
            threading.Thread(target=self._pump, args=(client, upstream, first), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, [False]), daemon=True
            ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, first: list[bool]) -> None:
        try:
            while data := src.recv(65536):
                if first[0]:
                    first[0] = False
                    with self.lock:
                        self.heads.append(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


@dataclass
class Setup:
    d: TempDaemon
    up: FakeUpstream
    relay: Relay  # openai: daemon -> relay -> fake (NO_PROXY)
    proxy: Relay  # anthropic: daemon -> proxy (absolute form) -> fake
    token: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with FakeUpstream() as up:
        relay, proxy = Relay(up.port), Relay(up.port)
        proxy_url = f"http://user:pa%20ss@127.0.0.1:{proxy.port}"
        env = governed_env(up.url)
        env |= {
            "IRONRT_OPENAI_BASE_URL": f"http://localhost:{relay.port}",
            "HTTP_PROXY": proxy_url,
            "http_proxy": proxy_url,
            "NO_PROXY": "localhost",
            "no_proxy": "localhost",
        }
        try:
            with TempDaemon(offline=False, env=env) as d:
                _, token = token_agent(d, tmp_path_factory.mktemp("wire-agent"))
                yield Setup(d, up, relay, proxy, token)
        finally:
            relay.close()
            proxy.close()


def chat(s: Setup, stream: bool = False) -> str:
    client = sdk_client(s.d, s.token)
    messages = [{"role": "user", "content": "hi"}]
    if stream:
        parts = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
        )
        return "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    return r.choices[0].message.content or ""


def test_calls_reuse_one_upstream_connection(setup: Setup) -> None:
    setup.relay.cut()
    before = setup.relay.connections
    assert chat(setup) and chat(setup, stream=True) and chat(setup)
    assert setup.relay.connections - before == 1


def test_an_upstream_that_closes_kept_alive_connections_costs_the_agent_nothing(
    setup: Setup,
) -> None:
    chat(setup)
    setup.relay.cut()  # idle: the daemon sees the EOF and drops the connection
    before = setup.relay.connections
    wait_until(lambda: chat(setup) != "", timeout=10)
    assert setup.relay.connections - before == 1
    for _ in range(5):  # cut, then call at once: a stale connection is retried fresh
        setup.relay.cut()
        assert chat(setup)
    traces = setup.d.rt.traces(limit=20)
    assert all(t.error is None and t.status_code == 200 for t in traces)


def test_a_call_through_the_proxy_goes_in_absolute_form_with_its_credentials(
    setup: Setup,
) -> None:
    client = anthropic.Anthropic(base_url=setup.d.router_url, api_key=setup.token, max_retries=0)
    for _ in range(2):
        msg = client.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=20,
            messages=[{"role": "user", "content": "hi"}],
        )
        assert msg.content
    head = setup.proxy.heads[0]
    target = f"POST http://127.0.0.1:{setup.up.port}/v1/messages HTTP/1.1\r\n".encode()
    assert head.startswith(target)
    assert b"proxy-authorization: Basic " + base64.b64encode(b"user:pa ss") in head
    assert ANTHROPIC_KEY.encode() in head  # the real key, to the provider only
    assert setup.proxy.connections == 1  # kept alive through the proxy too
    assert setup.up.requests[-1].headers["x-api-key"] == ANTHROPIC_KEY
    assert all(OPENAI_KEY.encode() not in h for h in setup.proxy.heads)


# ---- Upstream.attempt: wire errors as AttemptFailed kinds ---------------------------------


def test_response_headers_keep_raw_bytes_and_drop_what_cannot_be_relayed() -> None:
    raw = [
        (b"Content-Type", b"application/json"),
        (b"X-Raw", b"caf\xe9"),
        (b"Connection", b"keep-alive"),
        (b"Content-Encoding", b"gzip"),
        (b"x-bad", b"a\x01b"),
        (b"Retry-After", b"3"),
    ]
    out, read = response_headers(raw)
    assert out == [
        (b"content-type", b"application/json"),
        (b"x-raw", b"caf\xe9"),
        (b"retry-after", b"3"),
    ]
    assert read == {"content-type": "application/json", "retry-after": "3"}


async def test_attempt_failures_are_named_and_never_carry_the_key() -> None:
    over = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b" /drop " not in head:
            await over.wait()  # /stall: never answers
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = closed.getsockname()[1]
    closed.close()
    up = Upstream(ReliabilitySettings(read_timeout_s=0.2, connect_timeout_s=1))
    key = {"authorization": f"Bearer {OPENAI_KEY}"}
    cases = {
        f"http://127.0.0.1:{dead}/v1/x": ("connect", "ConnectError reaching 127.0.0.1"),
        f"http://127.0.0.1:{port}/stall": ("timeout", "ReadTimeout reaching 127.0.0.1"),
        f"http://127.0.0.1:{port}/drop": ("protocol", "RemoteProtocolError reaching 127.0.0.1"),
    }
    for url, (kind, message) in cases.items():
        with pytest.raises(AttemptFailed) as err:
            await up.attempt(tflow(), Outgoing("POST", url, key, b"{}"))
        assert err.value.kind == kind and str(err.value).startswith(message), str(err.value)
        assert OPENAI_KEY not in str(err.value)
    await up.aclose()
    over.set()
    server.close()


def test_the_daemon_never_imports_aiohttp(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, ironrt.daemon, ironrt.router.app, ironrt.transports.http;"
        "print('aiohttp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
