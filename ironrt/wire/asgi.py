"""An ASGI 3 app served by `ironrt.wire`: the scope, `receive` and `send` as thin message
wrappers over a `Cycle`'s direct calls (cycle.py). The control API is served this way;
the router is called directly (`serve_wire`), without the messages."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from ironrt.wire.cycle import Cycle

__all__ = ["run_asgi", "scope_of"]

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}


def scope_of(cycle: Cycle) -> dict[str, Any]:
    """The request as an ASGI `http` scope."""
    path = cycle.raw_path.decode("ascii")  # checked ASCII as the head was parsed
    conn = cycle.conn
    return {
        "type": "http",
        "asgi": _ASGI,
        "http_version": cycle.http_version,
        "server": conn._local,
        "client": conn._client,
        "scheme": "http",
        "method": cycle.method,
        "root_path": "",
        "path": unquote(path) if "%" in path else path,
        "raw_path": cycle.raw_path,
        "query_string": cycle.query,
        "headers": cycle.headers,
    }


async def run_asgi(app: Any, cycle: Cycle) -> None:
    """Serve `cycle` to an ASGI 3 app."""

    async def receive() -> dict[str, Any]:
        got = await cycle.next_body()
        if got is None:
            return _DISCONNECT
        return {"type": "http.request", "body": got[0], "more_body": got[1]}

    async def send(message: dict[str, Any]) -> None:
        conn = cycle.conn
        if conn.write_paused and not cycle.disconnected:
            await conn.drain()
        if cycle.disconnected:
            return  # the client left: what it would have read goes nowhere
        kind = message["type"]
        if not cycle.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            cycle.start(message["status"], message.get("headers", ()))
            return
        if cycle.response_complete:
            raise RuntimeError(f"unexpected {kind!r} after the answer completed")
        if kind != "http.response.body":
            raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
        await cycle.write(message.get("body", b""), message.get("more_body", False))

    await app(scope_of(cycle), receive, send)
