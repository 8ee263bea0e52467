"""The anyio twin of `Runtime`: the same calls, awaited, over httpx's Unix-socket transport.

Requests are built by the same functions as the sync client's (`ironrt.client_requests`)
and answers decoded by the same `ironrt.client._decode`, so the two cannot disagree.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

import msgspec

from ironrt.client import Runtime, _decode
from ironrt.client_requests import (
    StartOptions,
    agent_path,
    given,
    limits_body,
    limits_path,
    start_body,
    unset_changes,
    update_body,
)
from ironrt.errors import DaemonUnavailable, WaitTimeout
from ironrt.protocol import (
    Agent,
    AgentList,
    Event,
    EventList,
    Health,
    LimitsList,
    Metrics,
    ScopeLimits,
    StopRequest,
)

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover
    from typing_extensions import Unpack

T = TypeVar("T")


class AsyncRuntime:
    """The anyio twin of `Runtime`, over httpx's Unix-socket transport."""

    def __init__(
        self,
        budget: float | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        autostart: bool | None = None,
        timeout: float = 60.0,
        project: str | None = None,
    ) -> None:
        import httpx

        self._sync = Runtime(
            budget, home=home, autostart=autostart, timeout=timeout, project=project
        )
        self.settings = self._sync.settings
        self.budget = budget
        self.project = self._sync.project
        self.timeout = timeout
        transport = httpx.AsyncHTTPTransport(uds=str(self.settings.socket_path))
        self._client = httpx.AsyncClient(
            transport=transport, base_url="http://ironrt", timeout=timeout
        )

    async def _call(
        self,
        method: str,
        path: str,
        type_: type[T],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> T:
        import anyio
        import httpx

        for attempt in (1, 2):
            try:
                resp = await self._client.request(
                    method,
                    path,
                    content=body,
                    timeout=self.timeout if timeout is None else timeout,
                    headers={"content-type": "application/json"} if body is not None else None,
                )
                return _decode(resp.status_code, resp.content, type_)
            except httpx.ConnectError:
                if attempt == 2 or not self._sync.autostart:
                    raise DaemonUnavailable(self._sync._down_message()) from None
                await anyio.to_thread.run_sync(self._sync.ensure_daemon)
        raise AssertionError("unreachable")

    async def start_agent(
        self, path: str | Sequence[str], args: Sequence[str] = (), **options: Unpack[StartOptions]
    ) -> str:
        """Start an agent (see `StartOptions`); returns its id."""
        body = start_body(path, args, self.budget, options, self.project)
        return (await self._call("POST", "/v1/agents", Agent, body)).id

    async def list_agents(self) -> list[Agent]:
        return (await self._call("GET", "/v1/agents", AgentList)).agents

    async def get_agent(self, ref: str) -> Agent:
        return await self._call("GET", agent_path(ref), Agent)

    async def get_metrics(self, ref: str) -> Metrics:
        return await self._call("GET", f"{agent_path(ref)}/metrics", Metrics)

    async def stop_agent(self, ref: str, timeout: float = 10.0) -> Agent:
        body = msgspec.json.encode(StopRequest(timeout=timeout))
        return await self._call(
            "POST", f"{agent_path(ref)}/stop", Agent, body, timeout=timeout + 30
        )

    async def remove_agent(self, ref: str, *, force: bool = False) -> Agent:
        return await self._call("DELETE", f"{agent_path(ref)}?force={str(force).lower()}", Agent)

    async def update_agent(self, ref: str, **changes: Any) -> Agent:
        return await self._call("PATCH", agent_path(ref), Agent, update_body(changes))

    async def set_budget(self, ref: str, budget_usd: float) -> Agent:
        return await self.update_agent(ref, budget_usd=budget_usd)

    async def wait(self, ref: str, timeout: float | None = None) -> Agent:
        import anyio

        with anyio.move_on_after(timeout):
            while True:
                agent = await self._call(
                    "GET", f"{agent_path(ref)}/wait?timeout=300", Agent, timeout=330
                )
                if not agent.status.live:
                    return agent
        raise WaitTimeout(f"agent {ref} still running after {timeout}s")

    async def logs(self, ref: str, tail: int = 100) -> str:
        resp = await self._client.get(f"{agent_path(ref)}/logs", params={"tail": tail})
        if resp.status_code >= 400:
            _decode(resp.status_code, resp.content, bytes)
        return resp.text

    async def events(
        self, *, agent: str | None = None, follow: bool = False
    ) -> AsyncIterator[Event]:
        params: dict[str, Any] = {"follow": str(follow).lower()}
        if agent:
            params["agent"] = agent
        if not follow:
            for event in (
                await self._call("GET", f"/v1/events?{urlencode(params)}", EventList)
            ).events:
                yield event
            return
        async with self._client.stream("GET", "/v1/events", params=params, timeout=None) as resp:
            async for line in resp.aiter_lines():
                if line.strip():
                    yield msgspec.json.decode(line, type=Event)

    # ---- limits (see `Runtime`: the same bodies, built by the same functions) -----------
    async def limits(self) -> list[ScopeLimits]:
        """Every budget scope with its limits, spend and calls in flight."""
        return (await self._call("GET", "/v1/limits", LimitsList)).limits

    async def get_limits(self, scope: str) -> ScopeLimits:
        return await self._call("GET", limits_path(scope), ScopeLimits)

    async def set_limits(
        self,
        scope: str,
        *,
        budget_usd: float | msgspec.UnsetType | None = msgspec.UNSET,
        window: str | msgspec.UnsetType | None = msgspec.UNSET,
        rpm: int | msgspec.UnsetType | None = msgspec.UNSET,
        tpm: int | msgspec.UnsetType | None = msgspec.UNSET,
        max_concurrent: int | msgspec.UnsetType | None = msgspec.UNSET,
        models: Sequence[str] | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> ScopeLimits:
        """Set the given limits of `scope` (None clears one; the others are left as they
        are). `window` is a duration like `1h` or `7d`; `models` are glob patterns."""
        body = limits_body(
            given(
                budget_usd=budget_usd,
                window=window,
                rpm=rpm,
                tpm=tpm,
                max_concurrent=max_concurrent,
                models=models,
            )
        )
        return await self._call("PUT", limits_path(scope), ScopeLimits, body)

    async def unset_limits(self, scope: str, *fields: str) -> ScopeLimits:
        """Clear the named limits of `scope` (names as in `LimitsUpdate`)."""
        body = limits_body(unset_changes(fields))
        return await self._call("PUT", limits_path(scope), ScopeLimits, body)

    async def remove_limits(self, scope: str) -> ScopeLimits:
        """Remove every limit of `scope`; its spend is kept."""
        return await self._call("DELETE", limits_path(scope), ScopeLimits)

    async def health(self) -> Health:
        return await self._call("GET", "/v1/health", Health)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AsyncRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
