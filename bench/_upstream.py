"""A minimal, fast fake OpenAI upstream for the router benchmark, run as its own process.

    python bench/_upstream.py [--port 0]      # prints "PORT <n>" on stdout once listening

It answers `POST /v1/chat/completions` (non-streaming JSON, or SSE when the body asks for
`"stream": true`) and `GET /v1/models` with canned bodies built once, at start-up, by
ironrt's offline provider (so they are real provider-shaped replies, with usage), and
`GET /health`. Zero added latency, unless a request's `x-bench-delay-ms` header asks to be
answered that much later, as a provider would be: raw asyncio + httptools, keep-alive,
TCP_NODELAY, one write per SSE event (as a real provider streams), chunked transfer
encoding. It keeps no request log, so it does not grow however long the benchmark runs.
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from typing import Any

import httptools
import msgspec

from ironrt.providers.offline import offline_response

_DECODE = msgspec.json.Decoder()


def _canned() -> tuple[bytes, list[bytes], bytes]:
    req: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello in five words."}],
    }
    body = offline_response("openai", "chat.completions", req).body
    stream_req = {**req, "stream": True, "stream_options": {"include_usage": True}}
    events = offline_response("openai", "chat.completions", stream_req).events or []
    models = offline_response("openai", "models", {}, path="/v1/models").body
    return body, list(events), models


class _Handler(asyncio.Protocol):
    def __init__(self, app: _App) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.keep_alive = True
        self.delay = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []
        self.delay = 0.0

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-bench-delay-ms":
            self.delay = float(value) / 1000

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        body = b"".join(self.body)
        if self.delay > 0:
            asyncio.get_running_loop().call_later(
                self.delay, self.app.answer, self, method, path, body
            )
        else:
            self.app.answer(self, method, path, body)


class _App:
    def __init__(self) -> None:
        body, events, models = _canned()
        json_head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        self.chat = (
            json_head + b"content-length: %d\r\nx-request-id: req_bench\r\n\r\n" % len(body) + body
        )
        self.models = json_head + b"content-length: %d\r\n\r\n" % len(models) + models
        self.health = json_head + b'content-length: 11\r\n\r\n{"ok":true}'
        self.not_found = (
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n"
            b'content-length: 38\r\n\r\n{"error":{"message":"no such route"}}'
        )
        self.stream_head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
            b"x-request-id: req_bench\r\n\r\n"
        )
        self.stream_events = [b"%x\r\n%s\r\n" % (len(e), e) for e in events]
        self.requests = 0

    def answer(self, h: _Handler, method: bytes, path: bytes, raw: bytes) -> None:
        t = h.transport
        assert t is not None
        self.requests += 1
        if method == b"POST" and path.endswith(b"/chat/completions"):
            stream = False
            if raw:
                try:
                    decoded = _DECODE.decode(raw)
                    stream = isinstance(decoded, dict) and decoded.get("stream") is True
                except msgspec.DecodeError:
                    stream = False
            if stream:
                # One write per event, as a provider streams them (no coalescing here).
                t.write(self.stream_head)
                for event in self.stream_events:
                    t.write(event)
                t.write(b"0\r\n\r\n")
            else:
                t.write(self.chat)
        elif method == b"GET" and path.endswith(b"/models"):
            t.write(self.models)
        elif path in (b"/health", b"/healthz"):
            t.write(self.health)
        else:
            t.write(self.not_found)
        if not h.keep_alive:
            t.close()


async def serve(port: int) -> None:
    app = _App()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Handler(app), "127.0.0.1", port, backlog=1024, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Bounded life: never outlive a crashed benchmark by more than an hour.
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=3600)
    server.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
