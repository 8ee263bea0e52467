"""The least governance any Python router can do per call, on the least proxy (floor.py).

`governed_proxy` is floor.py's raw asyncio proxy (httptools both ways, one upstream
connection per client connection, one write each way) plus the per-call work issue 14's
router cannot skip, each step written as plainly as Python allows, with no abstraction
of ironrt's own except the PII detector (the work itself):

- the token: read from `authorization`, hashed (sha256), looked up in a dict;
- the request: its JSON decoded (msgspec), model and `max_tokens` read, each message's
  text scanned for PII (`ironrt.pii.detectors.find_pii`, default rules);
- the budget: a hold from the prompt's size and `max_tokens` at the model's price,
  checked against what is left, reserved;
- the forward: a new head with the real key in place of the token, the agent's body
  bytes as they came, one write;
- the answer: its JSON decoded, the usage read, the completion's text scanned for PII,
  the cost priced, the hold released and the spend added;
- the record: the trace row msgpack-encoded with a CRC-32 frame and appended to a
  journal file (`os.write`) before the answer goes out; SQLite committed behind, every
  25 ms, on the loop (ironrt.store.books' scheme);
- then the answer, head and body in one write.

No retries, breaker, rate limit, events, metrics or error paths: those cost nothing on a
call that needs none of them only in a router written for this one call. What it adds
over the raw proxy is therefore a lower bound of what governance costs in CPython here.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sqlite3
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import httptools
import msgspec
from _proxy_parts import ClientSide, UpstreamSide, WholeMessages, serve

from ironrt.pii.detectors import find_pii

_FRAME = struct.Struct("<IIQ")
#: USD per token (gpt-4o-mini's list price), in and out.
_PRICE_IN, _PRICE_OUT = 0.15e-6, 0.60e-6


class _Agent:
    __slots__ = ("agent_id", "held", "limit", "spent")

    def __init__(self, agent_id: str, limit: float) -> None:
        self.agent_id = agent_id
        self.limit = limit
        self.spent = 0.0
        self.held = 0.0


class _Books:
    """The journal append before the answer, SQLite behind it."""

    def __init__(self, home: Path) -> None:
        self.fd = os.open(home / "journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.db = sqlite3.connect(home / "books.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS traces (agent_id TEXT, model TEXT, input_tokens INT,"
            " output_tokens INT, cost_usd REAL, latency_ms REAL, started_at REAL)"
        )
        self.seq = 0
        self.pending: list[tuple[Any, ...]] = []
        self.encode = msgspec.msgpack.Encoder().encode

    def record(self, row: tuple[Any, ...]) -> None:
        self.seq += 1
        payload = self.encode(row)
        crc = zlib.crc32(payload, zlib.crc32(self.seq.to_bytes(8, "little")))
        os.write(self.fd, _FRAME.pack(len(payload), crc, self.seq) + payload)
        self.pending.append(row)

    async def commit_behind(self) -> None:
        while True:
            await asyncio.sleep(0.025)
            if self.pending:
                rows, self.pending = self.pending, []
                self.db.execute("BEGIN")
                self.db.executemany("INSERT INTO traces VALUES (?,?,?,?,?,?,?)", rows)
                self.db.execute("COMMIT")


class FloorGovernance:
    """The per-call work itself, apart from any socket: `admit` a request, `settle` its
    answer. `governed_proxy` serves it; bench/governance.py times it in process, next to
    the router's own."""

    def __init__(self, home: Path, tokens: dict[str, str]) -> None:
        """`tokens` maps an agent's token to its id."""
        self.books = _Books(home)
        self.agents = {
            hashlib.sha256(t.encode()).hexdigest(): _Agent(a, 1_000_000.0)
            for t, a in tokens.items()
        }
        self.decode = msgspec.json.Decoder().decode

    def admit(self, auth: bytes, raw: bytes) -> tuple[_Agent, float, str] | int:
        """(agent, hold, model) of an admitted request, or the status that refuses it."""
        token = auth.decode("latin-1").removeprefix("Bearer ")
        agent = self.agents.get(hashlib.sha256(token.encode()).hexdigest())
        if agent is None:
            return 401
        req = self.decode(raw)
        chars = 0
        for message in req["messages"]:
            content = message.get("content")
            if isinstance(content, str):
                chars += len(content)
                find_pii(content)
        hold = (chars / 2 + 16) * _PRICE_IN + req.get("max_tokens", 4096) * _PRICE_OUT
        if agent.spent + agent.held + hold > agent.limit:
            return 429
        agent.held += hold
        return agent, hold, req["model"]

    def settle(self, agent: _Agent, hold: float, model: str, data: bytes, began: float) -> None:
        """Read the answer's usage, scan its text, price it, release the hold, and journal
        the trace row (before the answer goes out)."""
        reply = self.decode(data)
        usage = reply.get("usage") or {}
        tin, tout = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        for choice in reply.get("choices", ()):
            content = (choice.get("message") or {}).get("content")
            if isinstance(content, str):
                find_pii(content)
        cost = tin * _PRICE_IN + tout * _PRICE_OUT
        agent.held -= hold
        agent.spent += cost
        took_ms = (time.monotonic() - began) * 1e3
        self.books.record((agent.agent_id, model, tin, tout, cost, took_ms, time.time()))


def governed_proxy(sock: socket.socket, up_port: int, tokens: dict[str, str], key: str) -> None:
    """Serve on `sock`: `tokens` maps an agent's token to its id; `key` is the real one."""
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"irt-governed-floor-{os.getpid()}"
    home.mkdir(exist_ok=True)
    gov = FloorGovernance(home, tokens)
    auth = f"Bearer {key}".encode()

    class Upstream(UpstreamSide, WholeMessages):
        def __init__(self, client: Client) -> None:
            UpstreamSide.__init__(self)
            WholeMessages.__init__(self)
            self.client = client
            self.parser = httptools.HttpResponseParser(self)

        def message(self, body: bytes) -> None:
            self.client.answer(self.parser.get_status_code(), body)

    class Client(ClientSide):
        def __init__(self) -> None:
            super().__init__()
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""
            self.auth = b""
            self.body: list[bytes] = []
            self.admitted: tuple[_Agent, float, str] | None = None
            self.started = 0.0

        def upstream(self) -> UpstreamSide:
            return Upstream(self)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            if name.lower() == b"authorization":
                self.auth = value

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            self.started = time.monotonic()
            raw, self.body = b"".join(self.body), []
            url, self.url = self.url, b""
            admitted = gov.admit(self.auth, raw)
            if isinstance(admitted, int):
                reason = b"Unauthorized" if admitted == 401 else b"Too Many Requests"
                self.transport.write(
                    b"HTTP/1.1 %d %b\r\ncontent-length: 0\r\n\r\n" % (admitted, reason)
                )
                return
            self.admitted = admitted
            head = (
                b"POST %b HTTP/1.1\r\nhost: 127.0.0.1:%d\r\ncontent-type: application/json\r\n"
                b"authorization: %b\r\ncontent-length: %d\r\n\r\n" % (url, up_port, auth, len(raw))
            )
            self.forward(head + raw)

        def answer(self, status: int, data: bytes) -> None:
            assert self.admitted is not None
            agent, hold, model = self.admitted
            gov.settle(agent, hold, model, data, self.started)
            self.transport.write(
                b"HTTP/1.1 %d OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
                % (status, len(data), data)
            )

    Client.up_port = up_port
    serve(sock, Client, gov.books.commit_behind)
