"""Where library mode meets the SDKs: the `send` of the HTTP clients they use.

The current `openai` (3.x) and `anthropic` (2.x) send through `httpx2`, older ones through
`httpx`; both clients' `send` are wrapped once, the first time a scope opens. Outside a
scope the wrapper is one context-variable read and the original `send`. Inside one, a
request an SDK built (the Stainless SDKs mark theirs with `x-stainless-lang`) to an API
path (`.../v1/...`) is governed; anything else the process sends goes out untouched.

An SDK whose client is neither is refused at `protect()` (`check_sdks`): its calls would
go out ungoverned, which is worse than an error. Only the SDKs the process has imported are
checked (importing `anthropic` costs seconds, a notebook using only `openai` must not pay
it), at every `protect()`: an SDK first imported inside a scope is checked at the next one.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import queue
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ironrt.errors import LibraryModeError
from ironrt.governance.agent import AgentGovernance
from ironrt.library.calls import SdkCall
from ironrt.library.kernel import Started, kernel

#: The scope the current context's calls belong to.
CURRENT_SCOPE: contextvars.ContextVar[AgentGovernance | None] = contextvars.ContextVar(
    "ironrt_library_scope", default=None
)

_CLIENT_MODULES = ("httpx2", "httpx")
_installed: set[str] = set()


def _governed(request: Any) -> tuple[str, bytes, bytes] | None:
    """(base, raw path, query) of an SDK's API request, or None for any other request."""
    if "x-stainless-lang" not in request.headers:
        return None
    url = request.url
    raw = url.raw_path
    path, _, query = raw.partition(b"?")
    at = path.find(b"/v1/")
    if at < 0:
        if not path.endswith(b"/v1"):
            # An SDK call library mode cannot route (Azure's deployments, a /v1beta
            # gateway): refused, rather than let out ungoverned from inside a scope.
            shown = f"{url.scheme}://{url.host}{path.decode('ascii', 'replace')[:200]}"
            raise LibraryModeError(
                f"ironrt library mode cannot govern {request.method} {shown}: not an "
                "OpenAI or Anthropic API path (/v1/...). Call it outside `ironrt.protect`, "
                "or run the agent under the daemon (`ironrt start`)"
            )
        at = len(path) - 3
    netloc = url.netloc.decode("ascii") if isinstance(url.netloc, bytes) else str(url.netloc)
    base = f"{url.scheme}://{netloc}{path[:at].decode('ascii', 'replace')}"
    return base, path[at:], query


def _asgi_scope(request: Any, path: bytes, query: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": path.decode("ascii", "replace"),
        "raw_path": path,
        "query_string": query,
        "headers": [(k.lower(), v) for k, v in request.headers.raw],
        "client": None,
        "server": None,
    }


def _response(module: Any, request: Any, started: Started, stream: Any) -> Any:
    headers = [(k, v) for k, v in started.headers if k.lower() != b"content-length"]
    if started.body is not None:
        return module.Response(
            started.status, headers=headers, content=started.body, request=request
        )
    return module.Response(started.status, headers=headers, stream=stream, request=request)


def _wrap_sync(module: Any) -> None:
    original: Callable[..., Any] = module.Client.send

    class GovernedStream(module.SyncByteStream):  # type: ignore[misc]
        def __init__(self, started: Started) -> None:
            self.started = started

        def __iter__(self) -> Iterator[bytes]:
            k = kernel()
            while True:
                chunk = k.run(k.next_chunk(self.started))
                if chunk is None:
                    return
                yield chunk

        def close(self) -> None:
            k = kernel()
            k.run(k.hang_up(self.started))

    def send(self: Any, request: Any, *, stream: bool = False, **options: Any) -> Any:
        gov = CURRENT_SCOPE.get()
        target = _governed(request) if gov is not None else None
        if gov is None or target is None:
            return original(self, request, stream=stream, **options)
        base, path, query = target
        body = request.read()
        jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        call = SdkCall(gov, self, original, request, base, options, jobs=jobs)
        k = kernel()
        assert k.loop is not None
        serving = asyncio.run_coroutine_threadsafe(
            k.serve(call, _asgi_scope(request, path, query), body), k.loop
        )
        serving.add_done_callback(lambda _: jobs.put(None))
        # This thread waits for the answer anyway: it sends the request itself, when the
        # kernel asks, rather than a worker thread.
        while (job := jobs.get()) is not None:
            job()
        call.jobs = None
        started = serving.result()
        return _response(module, request, started, GovernedStream(started))

    send.__wrapped__ = original  # type: ignore[attr-defined]
    module.Client.send = send


def _wrap_async(module: Any) -> None:
    original: Callable[..., Any] = module.AsyncClient.send

    class GovernedStream(module.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, started: Started) -> None:
            self.started = started

        async def __aiter__(self) -> AsyncIterator[bytes]:
            while True:
                k = kernel()
                chunk = await k.arun(k.next_chunk(self.started))
                if chunk is None:
                    return
                yield chunk

        async def aclose(self) -> None:
            k = kernel()
            await k.arun(k.hang_up(self.started))

    async def send(self: Any, request: Any, *, stream: bool = False, **options: Any) -> Any:
        gov = CURRENT_SCOPE.get()
        target = _governed(request) if gov is not None else None
        if gov is None or target is None:
            return await original(self, request, stream=stream, **options)
        base, path, query = target
        body = await request.aread()
        call = SdkCall(gov, self, original, request, base, options, asyncio.get_running_loop())
        k = kernel()
        started = await k.arun(k.serve(call, _asgi_scope(request, path, query), body))
        return _response(module, request, started, GovernedStream(started))

    send.__wrapped__ = original  # type: ignore[attr-defined]
    module.AsyncClient.send = send


def install() -> None:
    """Wrap the `send` of every HTTP client module importable here (once each)."""
    for name in _CLIENT_MODULES:
        if name in _installed:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        _wrap_sync(module)
        _wrap_async(module)
        _installed.add(name)


def check_sdks() -> None:
    """Refuse to run with an imported SDK whose HTTP client library mode does not wrap."""
    wrapped = tuple(
        cls
        for name in _installed
        for cls in (sys.modules[name].Client, sys.modules[name].AsyncClient)
    )
    for sdk in ("openai", "anthropic"):
        if sdk not in sys.modules:
            continue  # not imported: no client of it can exist yet
        try:
            base_client = importlib.import_module(f"{sdk}._base_client")
        except ImportError:
            continue
        version = getattr(sys.modules.get(sdk), "__version__", "?")
        for attr in ("SyncAPIClient", "AsyncAPIClient"):
            api_client = getattr(base_client, attr, None)
            hints = getattr(api_client, "__annotations__", {}) if api_client else {}
            kind = hints.get("_client")
            found = _resolve(base_client, kind)
            if found is None or not issubclass(found, wrapped):
                raise LibraryModeError(
                    f"ironrt library mode does not recognise how {sdk} {version} sends "
                    f"requests ({attr}._client is {kind!r}, not an httpx or httpx2 client): "
                    "its calls would go out ungoverned. Run the agent under the daemon "
                    "(`ironrt start`) instead, or use a supported SDK version"
                )


def _resolve(module: Any, hint: Any) -> type | None:
    if isinstance(hint, type):
        return hint
    if not isinstance(hint, str):
        return None
    owner, _, attr = hint.rpartition(".")
    target = sys.modules.get(owner) if owner else module
    if target is None and owner:
        target = getattr(module, owner, None)
    found = getattr(target, attr, None)
    return found if isinstance(found, type) else None
