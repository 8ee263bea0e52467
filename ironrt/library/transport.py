"""Library mode's transport: the SDK's own HTTP client, with its own key and URL.

The kernel runs on its own event loop; the SDK's client belongs to the caller. A sync
client sends from a worker thread of the kernel (the caller's thread is blocked waiting
for the answer anyway); an async client sends on the caller's own loop, so its connection
pool stays on the loop that owns it. Either way it is one try, like every transport: the
retry loop and the policies are the kernel's.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from ironrt.governance.flow import Flow
from ironrt.library.calls import CURRENT_CALL, SdkCall
from ironrt.transports.base import Answer, AttemptFailed, Outgoing
from ironrt.transports.http import retry_after_seconds

T = TypeVar("T")

#: Headers of the answer that no longer describe the bytes the kernel relays (httpx
#: already decoded the body).
_DROP = frozenset({"content-encoding", "content-length", "transfer-encoding", "connection"})


def _failure(exc: BaseException) -> str | None:
    """ "connect", "timeout" or "protocol" for an httpx/httpx2 transport error, else None."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "TransportError" not in names:
        return None
    if names & {"ConnectError", "ConnectTimeout", "PoolTimeout"}:
        return "connect"
    if "TimeoutException" in names:
        return "timeout"
    return "protocol"


async def _on_caller_loop(call: SdkCall, coro: Coroutine[Any, Any, T]) -> T:
    assert call.loop is not None
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, call.loop))


async def _in_caller_thread(
    jobs: queue.SimpleQueue[Callable[[], None] | None], fn: Callable[[], T]
) -> T:
    """Run `fn` in the sync caller's thread (waiting in `hooks.py` for its answer) and
    await its result on the kernel's loop."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def job() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the kernel, which decides
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    jobs.put(job)
    return await done


@dataclass(slots=True)
class SdkAnswer:
    call: SdkCall
    response: Any
    #: The body is still on the wire (False: the client already read it whole).
    streaming: bool
    status: int
    headers: list[tuple[bytes, bytes]]
    content_type: str
    retry_after: float | None

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        call, response = self.call, self.response
        if not self.streaming:
            if response.content:
                yield response.content
            return
        if call.loop is not None:
            chunks = response.aiter_bytes()
            while True:
                try:
                    chunk = await _on_caller_loop(call, chunks.__anext__())
                except StopAsyncIteration:
                    return
                if chunk:
                    yield chunk
        else:
            sync_chunks: Iterator[bytes] = response.iter_bytes()
            while True:
                chunk = await anyio.to_thread.run_sync(next, sync_chunks, None)
                if chunk is None:
                    return
                if chunk:
                    yield chunk

    async def read(self) -> bytes:
        if not self.streaming:
            content: bytes = self.response.content
            return content
        if self.call.loop is not None:
            data: bytes = await _on_caller_loop(self.call, self.response.aread())
        else:
            data = await anyio.to_thread.run_sync(self.response.read)
        return data

    async def aclose(self) -> None:
        if not self.streaming:
            return
        with anyio.CancelScope(shield=True):  # the SDK's stream is closed, whatever comes
            if self.call.loop is not None:
                await _on_caller_loop(self.call, self.response.aclose())
            else:
                await anyio.to_thread.run_sync(self.response.close)


class SdkTransport:
    async def attempt(self, flow: Flow, request: Outgoing) -> Answer:
        call = CURRENT_CALL.get()
        if call is None:
            raise RuntimeError("library transport used outside a library call")
        original = call.request
        outgoing = type(original)(
            request.method, request.url, headers=request.headers, content=request.content
        )
        outgoing.extensions = dict(original.extensions)
        # A whole answer is read in the same hop that sends the request: one thread (or
        # loop) round trip per try instead of three. A stream is read chunk by chunk.
        stream = flow.stream
        try:
            if call.loop is not None:
                response = await _on_caller_loop(
                    call, call.send(call.client, outgoing, stream=stream, **call.options)
                )
            elif call.jobs is not None:
                response = await _in_caller_thread(
                    call.jobs,
                    lambda: call.send(call.client, outgoing, stream=stream, **call.options),
                )
            else:
                response = await anyio.to_thread.run_sync(
                    lambda: call.send(call.client, outgoing, stream=stream, **call.options)
                )
        except Exception as exc:
            kind = _failure(exc)
            if kind is None:
                raise
            raise AttemptFailed(kind, f"{type(exc).__name__}: {exc}") from None
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.items()
            if k.lower() not in _DROP
        ]
        return SdkAnswer(
            call,
            response,
            stream,
            response.status_code,
            headers,
            response.headers.get("content-type", ""),
            retry_after_seconds(response.headers),
        )
