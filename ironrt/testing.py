"""Test helpers: a fake OpenAI + Anthropic upstream that is a real HTTP server.

`FakeUpstream` is what ironrt's own tests point `IRONRT_OPENAI_BASE_URL` and
`IRONRT_ANTHROPIC_BASE_URL` at, and what a user can reuse to test agents or gateways
without a key or a network. It is a real uvicorn server on 127.0.0.1 (a free port), run
in a background thread with its own event loop, so anything that speaks HTTP can use it:
the official SDKs, the ironrt router, another process. It answers both APIs with the
offline provider's replies (`ironrt.providers.offline`), and streams them event by event
with a real write per event, so a test can prove that nothing in between buffers.

    with FakeUpstream() as up:
        client = openai.OpenAI(base_url=up.url + "/v1", api_key="sk-test")
        ...
        assert up.requests[-1].headers["authorization"] == "Bearer sk-test"

Controls (from the test, thread-safe; each fault applies to the next API requests in
arrival order and is bounded in time, so a forgotten fault cannot hang a test run):

- `delay` seconds between stream events; `latency` seconds before any response.
- `usage`: a `TokenUsage` reported instead of the computed one (any numbers, negative
  ones included, to test what a gateway does with a lying provider).
- `answer_model`: the model named in answers instead of the requested one.
- `expect_key`: answer 401 (provider-shaped) unless the request carries this key.
- `fail(times, status, retry_after)`: the next `times` requests get that error.
- `hang(times, seconds)`: accept, read the request, answer nothing for `seconds` (then a
  504), for read-timeout tests.
- `drop_mid_stream(times, after)`: send `after` events of the next stream(s), then cut the
  connection without finishing the response.
- `hold_stream(timeout)`: the next stream sends its first event, then waits until the
  returned `StreamHold` is released (or `timeout` passes).
- `requests`: every API request received (method, path as received and decoded, query,
  headers, decoded body).

The same controls over HTTP, for a test driving the fake from another process (JSON
bodies; every field optional):

- `GET /_fake/requests` -> list of `{method, path, query, headers, body}`;
  `DELETE /_fake/requests` clears it.
- `POST /_fake/config` `{"delay", "latency", "usage": {"input_tokens", "output_tokens",
  "cached_tokens", "cache_write_tokens", "reasoning_tokens"} | null, "expect_key",
  "answer_model"}`.
- `POST /_fake/fail` `{"times", "status", "retry_after", "message"}`.
- `POST /_fake/hang` `{"times", "seconds"}`.
- `POST /_fake/drop` `{"times", "after"}`.
- `POST /_fake/hold` `{"timeout"}` -> `{"hold": id}`; `POST /_fake/release` `{"hold": id}`
  (no id: release all) -> `{"released": n}`.
- `POST /_fake/reset`: clear faults, holds, settings and the request log.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import msgspec
import uvicorn

from ironrt.governance.flow import TokenUsage
from ironrt.providers import adapter_for
from ironrt.providers.offline import offline_response
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing_flows import tagent, tattempt, tevent, tflow

__all__ = [
    "FakeUpstream",
    "ReceivedRequest",
    "StreamHold",
    "TempDaemon",
    "tagent",
    "tattempt",
    "tevent",
    "tflow",
    "wait_until",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: No fault waits longer than this, whatever a test asks.
MAX_FAULT_SECONDS = 60.0
_START_TIMEOUT = 10.0
_ENCODE = msgspec.json.encode
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _Dropped(Exception):
    """Raised inside the app to make uvicorn cut a started response (drop_mid_stream)."""


class _QuietDrops(logging.Filter):
    """Keep uvicorn from logging an intended connection drop as an application error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _Dropped)


_QUIET = _QuietDrops()


class _Gate:
    """A one-shot signal set from any thread and awaited in the server's event loop."""

    def __init__(self) -> None:
        self._set = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def is_set(self) -> bool:
        return self._set.is_set()

    def set(self) -> None:
        with self._lock:
            self._set.set()
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is already closed
                loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout: float) -> bool:
        """True once set; False if `timeout` passed first."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            if self._set.is_set():
                return True
            self._waiters.append(entry)
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            return False
        finally:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)


class StreamHold:
    """Holds one stream after its first event until released (or its timeout passes)."""

    def __init__(self, ident: int, timeout: float) -> None:
        self.id = ident
        self.timeout = min(timeout, MAX_FAULT_SECONDS)
        self._release = _Gate()
        self._first_sent = threading.Event()

    def release(self) -> None:
        self._release.set()

    @property
    def released(self) -> bool:
        return self._release.is_set()

    def wait_first_sent(self, timeout: float = 5.0) -> bool:
        """Block until the held stream's first event went out (True), or `timeout`."""
        return self._first_sent.wait(timeout)

    def __enter__(self) -> StreamHold:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@dataclass(slots=True)
class ReceivedRequest:
    """One API request as the fake received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    #: The decoded JSON body, or None if the body was empty or not JSON (see `raw`).
    body: Any
    raw: bytes = b""
    #: The path exactly as it came over the wire (`path` is percent-decoded).
    raw_path: str = ""


@dataclass(slots=True)
class _Fault:
    kind: str  # "fail" | "hang" | "drop"
    times: int
    status: int = 500
    retry_after: float | None = None
    message: str | None = None
    seconds: float = 10.0
    after: int = 1


class _UsageBody(msgspec.Struct, forbid_unknown_fields=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


class _ConfigBody(msgspec.Struct, forbid_unknown_fields=True):
    delay: float | None = None
    latency: float | None = None
    usage: _UsageBody | msgspec.UnsetType | None = msgspec.UNSET
    expect_key: str | msgspec.UnsetType | None = msgspec.UNSET
    answer_model: str | msgspec.UnsetType | None = msgspec.UNSET


class _FailBody(msgspec.Struct, forbid_unknown_fields=True):
    times: int = 1
    status: int = 500
    retry_after: float | None = None
    message: str | None = None


class _HangBody(msgspec.Struct, forbid_unknown_fields=True):
    times: int = 1
    seconds: float = 10.0


class _DropBody(msgspec.Struct, forbid_unknown_fields=True):
    times: int = 1
    after: int = 1


class _HoldBody(msgspec.Struct, forbid_unknown_fields=True):
    timeout: float = 10.0


class _ReleaseBody(msgspec.Struct, forbid_unknown_fields=True):
    hold: int | None = None


@dataclass
class _State:
    """Everything the test controls; guarded by `lock` (the test and server threads share it)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0
    latency: float = 0.0
    usage: TokenUsage | None = None
    expect_key: str | None = None
    says: str | None = None
    answer_model: str | None = None
    faults: deque[_Fault] = field(default_factory=deque)
    holds: deque[StreamHold] = field(default_factory=deque)
    all_holds: dict[int, StreamHold] = field(default_factory=dict)
    requests: list[ReceivedRequest] = field(default_factory=list)


class FakeUpstream:
    """A real HTTP server speaking the OpenAI and Anthropic APIs from the offline provider."""

    def __init__(
        self,
        *,
        delay: float = 0.0,
        latency: float = 0.0,
        usage: TokenUsage | None = None,
        expect_key: str | None = None,
    ) -> None:
        self._state = _State(delay=delay, latency=latency, usage=usage, expect_key=expect_key)
        self._closing = _Gate()
        self._hold_ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None
        self.port = 0

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, no trailing slash (the OpenAI SDK wants `url + "/v1"`)."""
        if not self.port:
            raise RuntimeError("FakeUpstream is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeUpstream:
        if self._thread is not None:
            raise RuntimeError("FakeUpstream already started")
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
        # `proto` says TCP, and without it every response written in two parts (headers,
        # body) waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self._sock = sock
        self.port = sock.getsockname()[1]
        logging.getLogger("uvicorn.error").addFilter(_QUIET)
        config = uvicorn.Config(
            self._app,
            log_config=None,
            log_level=None,
            access_log=False,
            lifespan="off",
            interface="asgi3",
            proxy_headers=False,
            loop="asyncio",
            http="httptools",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=self._run, args=(server, sock), name=f"FakeUpstream:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if self._error is not None or not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"FakeUpstream failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("FakeUpstream did not start in time")
            time.sleep(0.002)
        return self

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported by start(); never escapes the thread
            self._error = exc

    def stop(self) -> None:
        """Release every hold and hang, stop the server, join its thread, close the socket."""
        self._closing.set()
        with self._state.lock:
            holds = list(self._state.all_holds.values())
        for hold in holds:
            hold.release()
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=5.0)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout=5.0)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- controls -------------------------------------------------------------------------

    @property
    def delay(self) -> float:
        return self._state.delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self._state.delay = max(0.0, min(seconds, MAX_FAULT_SECONDS))

    @property
    def latency(self) -> float:
        return self._state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._state.latency = max(0.0, min(seconds, MAX_FAULT_SECONDS))

    @property
    def usage(self) -> TokenUsage | None:
        return self._state.usage

    @usage.setter
    def usage(self, usage: TokenUsage | None) -> None:
        self._state.usage = usage

    @property
    def says(self) -> str | None:
        """Words the model puts in its answer (streamed one word per event), instead of
        echoing the prompt: for testing what a model says, PII included."""
        return self._state.says

    @says.setter
    def says(self, text: str | None) -> None:
        with self._state.lock:
            self._state.says = text

    @property
    def answer_model(self) -> str | None:
        return self._state.answer_model

    @answer_model.setter
    def answer_model(self, model: str | None) -> None:
        with self._state.lock:
            self._state.answer_model = model

    @property
    def expect_key(self) -> str | None:
        return self._state.expect_key

    @expect_key.setter
    def expect_key(self, key: str | None) -> None:
        self._state.expect_key = key

    def fail(
        self,
        times: int = 1,
        status: int = 500,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `times` API requests with `status` (provider-shaped error)."""
        self._add_fault(
            _Fault("fail", times, status=status, retry_after=retry_after, message=message)
        )

    def hang(self, times: int = 1, seconds: float = 10.0) -> None:
        """Read the next `times` requests and answer nothing for `seconds` (then 504)."""
        self._add_fault(_Fault("hang", times, seconds=min(seconds, MAX_FAULT_SECONDS)))

    def drop_mid_stream(self, times: int = 1, after: int = 1) -> None:
        """Cut the next `times` responses after `after` stream events (or the headers)."""
        self._add_fault(_Fault("drop", times, after=max(after, 0)))

    def hold_stream(self, timeout: float = 10.0) -> StreamHold:
        """Hold the next stream after its first event; release with the returned handle."""
        hold = StreamHold(next(self._hold_ids), timeout)
        with self._state.lock:
            self._state.holds.append(hold)
            self._state.all_holds[hold.id] = hold
        if self._closing.is_set():
            hold.release()
        return hold

    def reset(self) -> None:
        """Clear faults, holds (released), settings and the request log."""
        with self._state.lock:
            holds = list(self._state.all_holds.values())
            self._state.faults.clear()
            self._state.holds.clear()
            self._state.all_holds.clear()
            self._state.requests.clear()
            self._state.delay = self._state.latency = 0.0
            self._state.usage = self._state.expect_key = self._state.says = None
            self._state.answer_model = None
        for hold in holds:
            hold.release()

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of the API requests received so far (admin requests excluded)."""
        with self._state.lock:
            return list(self._state.requests)

    def clear_requests(self) -> None:
        with self._state.lock:
            self._state.requests.clear()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Wait until at least `count` API requests arrived; returns the log."""
        deadline = time.monotonic() + min(timeout, MAX_FAULT_SECONDS)
        while True:
            got = self.requests
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.002)

    def _add_fault(self, fault: _Fault) -> None:
        if fault.times > 0:
            with self._state.lock:
                self._state.faults.append(fault)

    def _take_fault(self) -> _Fault | None:
        with self._state.lock:
            if not self._state.faults:
                return None
            fault = self._state.faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._state.faults.popleft()
            return fault

    def _take_hold(self) -> StreamHold | None:
        with self._state.lock:
            return self._state.holds.popleft() if self._state.holds else None

    # ---- the ASGI app -------------------------------------------------------------------------

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        path: str = scope["path"]
        if path.startswith("/_fake/"):
            await self._admin(scope["method"], path, raw, send)
        else:
            await self._api(scope, raw, send)

    async def _api(self, scope: Scope, raw: bytes, send: Send) -> None:
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            name, text = key.decode("latin-1").lower(), value.decode("latin-1")
            headers[name] = f"{headers[name]}, {text}" if name in headers else text
        try:
            body: Any = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            body = None
        method: str = scope["method"]
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        raw_path = (scope.get("raw_path") or path.encode()).decode("latin-1")
        with self._state.lock:
            self._state.requests.append(
                ReceivedRequest(method, path, query, headers, body, raw, raw_path)
            )
            latency, usage, expect_key, says, answer_model = (
                self._state.latency,
                self._state.usage,
                self._state.expect_key,
                self._state.says,
                self._state.answer_model,
            )
        adapter = adapter_for(path, headers)
        if adapter is None:
            await _respond(send, 404, _ENCODE({"error": {"message": f"no route {path}"}}))
            return
        if latency:
            await self._closing.wait(latency)
        if expect_key is not None and adapter.token_from_headers(headers) != expect_key:
            error = adapter.error_body(
                401, "Incorrect API key provided.", "authentication_error", "invalid_api_key"
            )
            await _respond(send, 401, error)
            return
        fault = self._take_fault()
        if fault is not None and fault.kind == "hang":
            await self._closing.wait(fault.seconds)
            error = adapter.error_body(
                504, "The fake upstream hung on purpose.", "timeout_error", None
            )
            await _respond(send, 504, error)
            return
        if fault is not None and fault.kind == "fail":
            message = fault.message or f"Injected failure (HTTP {fault.status})."
            kind = "rate_limit_error" if fault.status == 429 else "server_error"
            extra: list[tuple[bytes, bytes]] = []
            if fault.retry_after is not None:
                extra.append((b"retry-after", _seconds(fault.retry_after)))
            await _respond(
                send, fault.status, adapter.error_body(fault.status, message, kind, None), extra
            )
            return
        endpoint = adapter.endpoint_for(method, path) or "unmetered"
        if says is not None and isinstance(body, dict):
            body = _saying(endpoint, body, says)
        if answer_model is not None and isinstance(body, dict):
            body = {**body, "model": answer_model}  # the offline reply names the body's model
        reply = offline_response(adapter.name, endpoint, body, path=path, usage=usage)
        reply_headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()
        ]
        drop_after = fault.after if fault is not None and fault.kind == "drop" else None
        if reply.events is None:
            if drop_after is not None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": reply.status,
                        "headers": reply_headers,
                    }
                )
                raise _Dropped
            await _respond(send, reply.status, reply.body, reply_headers, content_type=False)
            return
        await self._stream(send, reply.status, reply_headers, reply.events, drop_after)

    async def _stream(
        self,
        send: Send,
        status: int,
        headers: list[tuple[bytes, bytes]],
        events: list[bytes],
        drop_after: int | None,
    ) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        hold = self._take_hold()
        for number, event in enumerate(events):
            if drop_after is not None and number >= drop_after:
                raise _Dropped
            if number:
                if hold is not None and number == 1:
                    await hold._release.wait(hold.timeout)
                delay = self._state.delay
                if delay:
                    await self._closing.wait(delay)
            await send({"type": "http.response.body", "body": event, "more_body": True})
            if hold is not None and number == 0:
                hold._first_sent.set()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _admin(self, method: str, path: str, raw: bytes, send: Send) -> None:
        action = path[len("/_fake/") :].strip("/")
        try:
            result = self._admin_action(method, action, raw or b"{}")
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            await _respond(send, 400, _ENCODE({"error": str(exc)}))
            return
        if result is None:
            await _respond(send, 404, _ENCODE({"error": f"no admin action {method} {action}"}))
            return
        await _respond(send, 200, _ENCODE(result))

    def _admin_action(self, method: str, action: str, raw: bytes) -> Any:
        decode = msgspec.json.decode
        if action == "requests" and method == "GET":
            return [
                {
                    "method": r.method,
                    "path": r.path,
                    "query": r.query,
                    "headers": r.headers,
                    "body": r.body,
                }
                for r in self.requests
            ]
        if action == "requests" and method == "DELETE":
            self.clear_requests()
            return {"ok": True}
        if method != "POST":
            return None
        if action == "config":
            config = decode(raw, type=_ConfigBody)
            if config.delay is not None:
                self.delay = config.delay
            if config.latency is not None:
                self.latency = config.latency
            if config.usage is not msgspec.UNSET:
                usage = config.usage
                self.usage = None if usage is None else TokenUsage(**msgspec.structs.asdict(usage))
            if config.expect_key is not msgspec.UNSET:
                self.expect_key = config.expect_key
            if config.answer_model is not msgspec.UNSET:
                self.answer_model = config.answer_model
            return {"ok": True}
        if action == "fail":
            fail = decode(raw, type=_FailBody)
            self.fail(fail.times, fail.status, fail.retry_after, fail.message)
            return {"ok": True}
        if action == "hang":
            hang = decode(raw, type=_HangBody)
            self.hang(hang.times, hang.seconds)
            return {"ok": True}
        if action == "drop":
            drop = decode(raw, type=_DropBody)
            self.drop_mid_stream(drop.times, drop.after)
            return {"ok": True}
        if action == "hold":
            return {"hold": self.hold_stream(decode(raw, type=_HoldBody).timeout).id}
        if action == "release":
            wanted = decode(raw, type=_ReleaseBody).hold
            with self._state.lock:
                holds = [h for i, h in self._state.all_holds.items() if wanted in (None, i)]
            for hold in holds:
                hold.release()
            return {"released": len(holds)}
        if action == "reset":
            self.reset()
            return {"ok": True}
        return None


def _seconds(value: float) -> bytes:
    return (str(int(value)) if float(value).is_integer() else str(value)).encode()


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: bool = True,
) -> None:
    all_headers = [*(_JSON_HEADERS if content_type else []), *(headers or [])]
    all_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _saying(endpoint: str, body: dict[str, Any], text: str) -> dict[str, Any]:
    """The request as if the user had written `text`: the offline reply echoes it."""
    if endpoint in ("chat.completions", "messages"):
        return {**body, "messages": [{"role": "user", "content": text}]}
    if endpoint == "responses":
        return {**body, "input": text}
    return body
