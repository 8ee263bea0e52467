"""The anyio twin of `Runtime`: the same calls, awaited, over httpx's Unix-socket transport.

Every public method of `Runtime` is here with the same parameters and the same result,
awaited (its generators are async iterators yielding the same items), so code moves
between the twins by adding or removing `await`; `tests/test_client_parity.py` keeps it so.
Requests are the same `ironrt.client_requests.Call`s the sync twin sends, and answers are
decoded by the same functions, so the two cannot disagree: only the transport differs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, TypeVar

import msgspec

from ironrt import client_requests as req
from ironrt.client import Runtime
from ironrt.client_requests import PiiTypes, StartOptions
from ironrt.errors import DaemonUnavailable
from ironrt.protocol import (
    Agent,
    Event,
    Health,
    Metrics,
    PiiMode,
    ScopeLimits,
    Trace,
    TraceList,
    Usage,
)

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover
    from typing_extensions import Unpack

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")


class AsyncRuntime:
    """Drive the ironrt daemon from anyio (asyncio or trio): `Runtime`, awaited.

    `async with AsyncRuntime(budget=50.0) as rt:` closes its connections on the way out;
    without `async with`, call `await rt.close()` (or `aclose()`)."""

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

        # The sync twin holds the settings and starts a daemon when one is needed (in a
        # worker thread): starting one is a subprocess and a poll, the same in both.
        self._sync = Runtime(
            budget, home=home, autostart=autostart, timeout=timeout, project=project
        )
        self.settings = self._sync.settings
        self.budget = budget
        self.project = self._sync.project
        self.autostart = self._sync.autostart
        self.timeout = timeout
        transport = httpx.AsyncHTTPTransport(uds=str(self.settings.socket_path))
        self._client = httpx.AsyncClient(
            transport=transport, base_url="http://ironrt", timeout=timeout
        )

    # ---- transport --------------------------------------------------------------------
    async def _send(
        self, method: str, path: str, body: bytes | None, timeout: float | None, *, stream: bool
    ) -> httpx.Response:
        """Send one request, starting the daemon first if none answers and autostart is on
        (as the sync twin does). `timeout` None: none (a followed stream)."""
        import anyio
        import httpx

        request = self._client.build_request(
            method,
            path,
            content=body,
            timeout=timeout,
            headers={"content-type": "application/json"} if body is not None else None,
        )
        for attempt in (1, 2):
            try:
                return await self._client.send(request, stream=stream)
            except httpx.ConnectError:
                if attempt == 2 or not self.autostart:
                    raise DaemonUnavailable(req.daemon_down(self.settings.home)) from None
                await anyio.to_thread.run_sync(self._sync.ensure_daemon)
            except httpx.TimeoutException:
                raise DaemonUnavailable(f"the daemon did not answer within {timeout}s") from None
            except httpx.TransportError:  # reset or closed mid-request: a daemon on its way out
                raise DaemonUnavailable(req.DAEMON_WENT) from None
        raise AssertionError("unreachable")

    async def _call(self, call: req.Call[T]) -> T:
        timeout = self.timeout if call.timeout is None else call.timeout
        resp = await self._send(call.method, call.path, call.body, timeout, stream=False)
        return req.decode(resp.status_code, resp.content, call.answer)

    async def _stream(self, call: req.Call[T]) -> httpx.Response:
        """A followed answer, to be closed by the caller (no timeout: it lasts as long as
        what it follows)."""
        resp = await self._send(call.method, call.path, call.body, None, stream=True)
        if resp.status_code >= 400:
            try:
                req.raise_for_error(resp.status_code, await resp.aread())
            finally:
                await resp.aclose()
        return resp

    # ---- the daemon -------------------------------------------------------------------
    async def ping(self) -> bool:
        """Whether a daemon answers (within 2 s); never starts one."""
        import httpx

        try:
            call = req.version()
            resp = await self._client.request(call.method, call.path, timeout=2.0)
        except httpx.TransportError:
            return False
        return resp.status_code == 200

    async def ensure_daemon(self) -> None:
        """Start the daemon in the background if none answers; return once it does."""
        import anyio

        if not await self.ping():
            await anyio.to_thread.run_sync(self._sync.ensure_daemon)

    async def health(self) -> Health:
        return await self._call(req.health())

    async def shutdown_daemon(self, *, keep_agents: bool = False, wait: float = 60.0) -> None:
        """Stop the daemon (and its agents unless keep_agents); returns once it is gone."""
        import anyio

        if not await self.ping():
            raise DaemonUnavailable(req.daemon_down(self.settings.home))
        await self._call(req.shutdown_daemon(keep_agents))
        with anyio.move_on_after(wait):
            while self.settings.socket_path.exists() and await self.ping():
                await anyio.sleep(0.05)
            return
        raise DaemonUnavailable(f"the daemon did not stop within {wait}s")

    # ---- agents -----------------------------------------------------------------------
    async def start_agent(
        self, path: str | Sequence[str], args: Sequence[str] = (), **options: Unpack[StartOptions]
    ) -> str:
        """Start an agent (see `StartOptions`); returns its id. An unknown option raises
        TypeError and a bad value InvalidRequest, before anything is sent."""
        call = req.start_agent(path, args, options, budget=self.budget, project=self.project)
        return (await self._call(call)).id

    async def list_agents(self) -> list[Agent]:
        return (await self._call(req.list_agents())).agents

    async def list_agents_with_metrics(self) -> list[tuple[Agent, Metrics]]:
        """Every agent with its metrics, in one request (what `ps` and `top` show)."""
        found = await self._call(req.list_agents(metrics=True))
        return list(zip(found.agents, found.metrics or [], strict=True))

    async def get_agent(self, ref: str) -> Agent:
        return await self._call(req.get_agent(ref))

    async def get_metrics(self, ref: str) -> Metrics:
        return await self._call(req.get_metrics(ref))

    async def stop_agent(self, ref: str, timeout: float = 10.0) -> Agent:
        return await self._call(req.stop_agent(ref, timeout))

    async def restart_agent(self, ref: str, timeout: float = 10.0) -> Agent:
        return await self._call(req.restart_agent(ref, timeout))

    async def remove_agent(self, ref: str, *, force: bool = False) -> Agent:
        return await self._call(req.remove_agent(ref, force))

    async def update_agent(self, ref: str, **changes: object) -> Agent:
        """Change budget_usd, pii, pii_types, on_budget, rpm or tpm of an agent, also while
        it runs (None removes a limit, or the type selection). An unknown field raises
        TypeError, a bad value InvalidRequest, before anything is sent.

        `pii_types` takes the map (`{"EMAIL": "redact"}`) or `start_agent`'s forms
        (`"email,secret=block"`); a type named without an action gets the `pii` given
        with it, else the agent's current one (fetched first)."""
        current = None
        if req.wants_update_pii(changes):
            current = (await self.get_agent(ref)).pii
        return await self._call(req.update_agent(ref, changes, current))

    async def set_budget(self, ref: str, budget_usd: float) -> Agent:
        return await self.update_agent(ref, budget_usd=budget_usd)

    async def wait(self, ref: str, timeout: float | None = None) -> Agent:
        """Until the agent has ended for good; WaitTimeout if it has not by `timeout`.

        Long polls, as the sync twin does, rather than a cancel scope: a poll cut short
        on the client's side would leave the daemon waiting for nobody."""
        until = req.deadline(timeout)
        while True:
            agent = await self._call(req.wait_poll(ref, until))
            if not agent.status.live:
                return agent
            if error := req.wait_timeout(agent, until, timeout):
                raise error

    async def logs(self, ref: str, tail: int = 100) -> str:
        return await self._call(req.logs(ref, tail))

    async def follow_logs(self, ref: str, tail: int = 10) -> AsyncIterator[bytes]:
        """Yield the agent's output as it is written, until the agent ends."""
        resp = await self._stream(req.follow_logs(ref, tail))
        try:
            async for chunk in resp.aiter_bytes():
                yield chunk
        finally:
            await resp.aclose()

    async def events(
        self,
        *,
        agent: str | None = None,
        since: int = 0,
        limit: int = 100,
        follow: bool = False,
        kind: str | Sequence[str] | None = None,
        project: str | None = None,
    ) -> AsyncIterator[Event]:
        """Typed events after id `since`, oldest first (see `Runtime.events`): a followed
        stream that breaks is opened again after the last event it gave."""
        import anyio
        import httpx

        kinds = req.event_kinds(kind)
        if not follow:
            call = req.events(agent, since, limit, kinds, project)
            for found in (await self._call(call)).events:
                yield found
            return
        last, tries = since, 0
        while tries < req.FOLLOW_RETRIES:
            if tries:
                await anyio.sleep(0.1 * tries)
                if not await anyio.to_thread.run_sync(self._sync.ping):
                    return  # the daemon is gone: the follower ends, as before
            resp = await self._stream(req.follow_events(agent, last, limit, kinds, project))
            tries += 1
            try:
                async for line in resp.aiter_lines():
                    if (event := req.event_line(line)) is not None and event.id > last:
                        last, tries = event.id, 0
                        yield event
            except (httpx.TransportError, msgspec.DecodeError):
                pass  # a broken stream: opened again after `last`
            finally:
                await resp.aclose()

    async def usage(
        self,
        by: str = "agent",
        agent: str | None = None,
        *,
        since: str | None = None,
        until: str | None = None,
        project: str | None = None,
    ) -> Usage:
        """Calls, tokens and spend grouped `by` agent, provider, model, project, day or
        hour (UTC), over [`since`, `until`): ISO 8601 times or durations before now
        (`24h`, `7d`). Refused calls are counted apart (`refused_calls`)."""
        return await self._call(req.usage(by, agent, since=since, until=until, project=project))

    async def traces(
        self,
        agent: str | None = None,
        limit: int = 50,
        *,
        project: str | None = None,
        model: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[Trace]:
        """The last `limit` LLM calls matching the filters, newest last (`status`: ok,
        error or refused). `trace_page` pages through all of them."""
        page = await self.trace_page(
            agent=agent,
            project=project,
            model=model,
            status=status,
            since=since,
            until=until,
            limit=limit,
        )
        return page.traces[::-1]

    async def trace_page(
        self,
        *,
        agent: str | None = None,
        project: str | None = None,
        model: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TraceList:
        """One page of LLM calls, newest first; pass its `next_cursor` back as `cursor`
        for the next (None: that was the last page)."""
        return await self._call(
            req.traces(
                agent,
                limit,
                project=project,
                model=model,
                status=status,
                since=since,
                until=until,
                cursor=cursor,
            )
        )

    async def trace(self, trace_id: int) -> Trace:
        """One LLM call by its id (`ironrt.errors.IronrtError` 404 if there is none)."""
        return await self._call(req.get_trace(trace_id))

    # ---- limits (see `Runtime`) ---------------------------------------------------------
    async def limits(self) -> list[ScopeLimits]:
        """Every budget scope with its limits, spend and calls in flight."""
        return (await self._call(req.limits())).limits

    async def get_limits(self, scope: str) -> ScopeLimits:
        return await self._call(req.get_limits(scope))

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
        pii: PiiMode | msgspec.UnsetType | None = msgspec.UNSET,
        pii_types: PiiTypes | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> ScopeLimits:
        """Set the given limits of `scope` (None clears one; the others are left as they
        are). `window` is a duration like `1h` or `7d`; `models` are glob patterns.

        `pii` and `pii_types` are a floor for every call in the scope: per type, the
        stricter of the agent's action and the scope's wins. `pii_types` takes the forms
        of `start_agent`'s; a type named without an action gets `pii`, else the scope's
        current `pii` (fetched first)."""
        changes = req.given(
            budget_usd=budget_usd,
            window=window,
            rpm=rpm,
            tpm=tpm,
            max_concurrent=max_concurrent,
            models=models,
            pii=pii,
            pii_types=pii_types,
        )
        current = None
        if req.wants_limits_pii(changes):
            current = (await self.get_limits(scope)).pii
        return await self._call(req.set_limits(scope, changes, current))

    async def unset_limits(self, scope: str, *fields: str) -> ScopeLimits:
        """Clear the named limits of `scope` (names as in `LimitsUpdate`)."""
        return await self._call(req.set_limits(scope, req.unset_changes(fields)))

    async def remove_limits(self, scope: str) -> ScopeLimits:
        """Remove every limit of `scope`; its spend is kept."""
        return await self._call(req.remove_limits(scope))

    # ---- lifetime ---------------------------------------------------------------------
    async def close(self) -> None:
        """Close the pooled connections (the sync twin keeps none open)."""
        await self._client.aclose()

    async def aclose(self) -> None:
        """`close`, under the name `contextlib.aclosing` and anyio's resources use."""
        await self.close()

    async def __aenter__(self) -> AsyncRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
