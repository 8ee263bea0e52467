"""The router's app: from the agent's request to the provider and back. The daemon's
server calls it directly (`serve_wire`); library mode, as an ASGI app (exchange.py).

    agent SDK ──▶ authenticate (IC_TOKEN → agent) ──▶ parse ──▶ Flow
              ──▶ pipeline.request (budget → safety → reliability)
              ──▶ upstream (real key swapped in; retries per policy) or offline provider
              ──▶ relay.py: whole body through pipeline.response, or stream event by
                  event through pipeline.stream_event (usage read on the way)
              ──▶ settle (service.py): price usage, pipeline.complete, record trace + spend

Answers the router makes itself (refusals, errors) are provider-shaped, in responses.py,
and carry `x-should-retry: false` unless a retry can help. A refusal of a request from a
known agent (a valid IC_TOKEN) is settled like any call: it leaves a trace. One no agent
owns (no token, an unknown one) is logged instead, at a bounded rate (strays.py).

The endpoint is decided on the canonical form of the raw request path (paths.py), and that
exact path is what goes upstream. Request bodies are decoded and checked in one place
(bodies.py) before anything reads them.

Whatever else goes wrong is a bug, and `__call__` is its last stop: it is logged with its
traceback, the call is settled with the error in its trace, and the agent gets a
provider-shaped 500 `internal_error` with `x-should-retry: false` (the same request would
meet the same bug), or, when its answer has started, the provider's stream error event.

Everything provider-specific is asked of the adapter; everything governance-specific is
decided by the policies. This module only moves bytes and keeps the books straight: the
agent gets provider-shaped errors, and every call, however it ends (refused, failed,
client gone mid-stream), is settled exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import anyio
import msgspec

from ironrt.governance.admission import Admitter
from ironrt.governance.agent import AgentGovernance
from ironrt.governance.flow import Endpoint, Flow, Refusal
from ironrt.governance.ledger import Ledger
from ironrt.governance.pipeline import Pipeline, PolicyFailed
from ironrt.governance.tokens import token_hash
from ironrt.providers import OPENAI, ProviderAdapter, adapter_for
from ironrt.providers.base import adapter_of
from ironrt.router.bodies import BadBody, encode_json, parse_request_off_loop
from ironrt.router.counting import Sender, exact_input_tokens
from ironrt.router.egress import MalformedKey, RouterConfig, count_sender, upstream_lines
from ironrt.router.exchange import (
    MAX_BODY_BYTES,
    AsgiExchange,
    BodyTooLarge,
    ClientGone,
    Exchange,
    Receive,
    Scope,
    Send,
    WireExchange,
    innermost,
)
from ironrt.router.paths import BadPath, canonical_path, check_query, describe_target
from ironrt.router.relay import relay_body, relay_stream
from ironrt.router.responses import (
    note_refusal,
    send_error,
    send_json,
    send_policy_error,
    send_refused,
)
from ironrt.router.strays import StrayLog
from ironrt.transports.base import Outgoing, Transport
from ironrt.transports.http import Upstream
from ironrt.transports.offline import OfflineTransport
from ironrt.transports.retrying import Unreachable, send_with_retries
from ironrt.wire.cycle import Cycle

log = logging.getLogger("ironrt.router")

_ENCODE = msgspec.json.encode
_SUPPORTED = (
    "OpenAI /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models; "
    "Anthropic /v1/messages, /v1/messages/count_tokens; a registered provider under "
    "/NAME/v1/..."
)


class RouterApp:
    """The daemon's router. Library mode subclasses it (`ironrt.library`): it knows the
    agent by its scope instead of a token (`agent_for`), and sends each call where the
    SDK's client itself was going, with the client's own key (`outgoing`), through the
    SDK's own HTTP client (its `transport`)."""

    def __init__(
        self,
        config: RouterConfig,
        pipeline: Pipeline,
        upstream: Upstream,
        lookup: Callable[[str], AgentGovernance | None],
        settle: Callable[[Flow], Awaitable[None]],
        ledger: Ledger,
        admission_timeout: float,
        transport: Transport | None = None,
        after_answer: Callable[[Flow], None] = Flow.run_afterwards,
    ) -> None:
        """`settle` closes a call's books before its answer; `after_answer` does what the
        policies left for after it (`Flow.later`) and publishes what that reported."""
        self.config = config
        self.pipeline = pipeline
        self.upstream = upstream
        self.transport: Transport = transport or (
            OfflineTransport() if config.offline else upstream
        )
        self.lookup = lookup
        self.settle = settle
        self.after_answer = after_answer
        self.admitter = Admitter(ledger, self._count, admission_timeout)
        self.strays = StrayLog()

    def agent_for(
        self, x: Exchange, adapter: ProviderAdapter, headers: Mapping[str, str]
    ) -> tuple[bool, AgentGovernance | None]:
        """Whether the request carries a credential, and the live agent it opens."""
        token = adapter.token_from_headers(headers)
        gov = self.lookup(token_hash(token)) if token else None
        return bool(token), gov

    def outgoing(
        self,
        adapter: ProviderAdapter,
        x: Exchange,
        target: str,
        headers: Mapping[str, str],
        content: bytes,
    ) -> Outgoing | None:
        """The request to send: the real key swapped in for the IC_TOKEN, the provider's
        base URL (None: no key for this provider). Offline, the canonical path as it is."""
        if self.config.offline:
            return Outgoing(x.method, target, dict(headers), content)
        found = self.config.keys(adapter.name)
        if found is None:
            return None
        base = self.config.base_urls.get(adapter.name)
        url = adapter.upstream_url(target, base)
        return Outgoing(x.method, url, {}, content, upstream_lines(adapter, x.raw_headers, found))

    def upstream_of(self, adapter: ProviderAdapter, x: Exchange) -> str:
        """`"<provider>:<base url>"`: the upstream a call goes to (the breaker's circuit)."""
        base = self.config.base_urls.get(adapter.name)
        return f"{adapter.name}:{base or adapter.default_base_url}"

    def count_sender(self, adapter: ProviderAdapter, headers: Mapping[str, str]) -> Sender | None:
        return count_sender(self.config, self.upstream, adapter, headers)

    async def _count(self, flow: Flow) -> int | None:
        if flow.body is None:
            return None
        send = self.count_sender(adapter_of(flow), flow.headers)
        if send is None:
            return None
        return await exact_input_tokens(adapter_of(flow), flow.endpoint, flow.body, send=send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """As an ASGI app (library mode's kernel, any ASGI server)."""
        if scope["type"] != "http":
            return
        await self.serve(AsgiExchange(scope, receive, send))

    async def serve_wire(self, cycle: Cycle) -> None:
        """As the daemon's server calls it: directly, no ASGI messages (`ironrt.wire`)."""
        await self.serve(WireExchange(cycle))

    async def serve(self, x: Exchange) -> None:
        """One call, from its request to its answer and settlement."""
        try:
            await self._serve(x)
        except Exception as exc:
            await self._fail(x, exc)
        finally:
            flow = x.flow
            if flow is not None:
                if not flow.settled:
                    with anyio.CancelScope(shield=True):
                        await self._settle_quietly(flow)
                if flow.afterwards is not None:
                    # The answer is out (or refused, or failed). On the answered path nothing
                    # between its last byte and here yields to the event loop: a read of
                    # the events that the answer prompted cannot come in between.
                    self.after_answer(flow)

    async def _serve(self, x: Exchange) -> None:
        method = x.method
        headers = x.headers
        raw_path = x.raw_path
        if raw_path in (b"/health", b"/healthz"):
            await send_json(x, 200, b'{"ok":true}')
            return
        try:
            path = canonical_path(raw_path)
            query = check_query(x.query)
            bad: str | None = None
        except BadPath as exc:
            path, query, bad = "", "", str(exc)
        adapter = adapter_for(path, headers) if bad is None else None
        # Errors speak the path's provider, or else the one the client's headers say.
        x.adapter = adapter or adapter_for("/v1", headers) or OPENAI
        token, agent = self.agent_for(x, x.adapter, headers)
        if adapter is None:
            target = f"{method} {describe_target(raw_path)}"
            because = f" ({bad})" if bad else ""
            refusal = Refusal(
                404,
                f"ironrt router: no such endpoint {target}{because}; supported: {_SUPPORTED}",
                code="unknown_endpoint",
                policy="router",
            )
            why = bad or "not an API path"
            await self._refuse_early(x, agent, "unmetered", headers, refusal, target, why)
            return
        if agent is None:
            target = f"{method} {describe_target(raw_path)}"
            reason = (
                "no IC_TOKEN was sent (set the SDK's api_key from the agent's environment)"
                if not token
                else "the IC_TOKEN is unknown or revoked (the agent was stopped?)"
            )
            refusal = Refusal(
                401,
                f"ironrt router: {reason}",
                type="authentication_error",
                code="invalid_ic_token",
                policy="router",
            )
            why = "no token" if not token else "unknown or revoked token"
            await self._refuse_early(x, None, "unmetered", headers, refusal, target, why)
            return
        endpoint = adapter.endpoint_for(method, path)
        if endpoint is None or (endpoint == "unmetered" and not agent.allow_unmetered):
            target = f"{method} {describe_target(raw_path)}"
            refusal = Refusal(
                404,
                f"ironrt router: {target} cannot be metered, so it is not forwarded (start "
                f"the agent with --allow-unmetered to allow it); supported: {_SUPPORTED}",
                code="endpoint_not_supported",
                policy="router",
            )
            why = "cannot be metered"
            await self._refuse_early(x, agent, "unmetered", headers, refusal, target, why)
            return
        flow = x.flow = Flow(
            agent=agent, adapter=adapter, endpoint=endpoint, body=None, headers=headers
        )
        try:
            raw = await x.read_body()
        except BodyTooLarge:
            refusal = Refusal(
                413,
                f"ironrt router: request body larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB",
                code="request_too_large",
                policy="router",
            )
            await self._refuse(x, flow, refusal)
            return
        except ClientGone:
            x.flow = None  # nothing was asked: no call to record
            return
        if raw and endpoint != "unmetered":
            try:
                parsed = await parse_request_off_loop(adapter, endpoint, raw)
            except BadBody as exc:
                refusal = Refusal(400, exc.message, code=exc.code, policy="router", param=exc.param)
                await self._refuse(x, flow, refusal)
                return
            flow.body, flow.body_size = parsed.body, len(raw)
            flow.model, flow.stream, flow.input_bound = (
                parsed.model,
                parsed.stream,
                parsed.input_bound,
            )
        flow.upstream = self.upstream_of(adapter, x)
        target_url = path + ("?" + query if query else "")
        await self._handle(flow, x, raw, target_url)

    async def _refuse_early(
        self,
        x: Exchange,
        agent: AgentGovernance | None,
        endpoint: Endpoint,
        headers: Mapping[str, str],
        refusal: Refusal,
        target: str,
        why: str,
    ) -> None:
        """A refusal before the call has a body: traced if an agent is known, else logged."""
        assert x.adapter is not None
        if agent is None:
            self.strays.refused(refusal.status, refusal.code or refusal.type, target, why)
            await send_refused(x, x.adapter, refusal)
            return
        flow = x.flow = Flow(
            agent=agent, adapter=x.adapter, endpoint=endpoint, body=None, headers=headers
        )
        await self._refuse(x, flow, refusal, target)

    async def _refuse(
        self, x: Exchange, flow: Flow, refusal: Refusal, detail: str | None = None
    ) -> None:
        """Record the refusal (settled: its trace says who refused what), then answer."""
        note_refusal(flow, refusal)
        if refusal.param:
            flow.error = f"{flow.error} ({refusal.param})"
        if detail:
            flow.error = f"{flow.error} ({detail[:300]})"
        await self.settle(flow)
        await send_refused(x, adapter_of(flow), refusal)

    async def _settle_quietly(self, flow: Flow) -> None:
        try:
            await self.settle(flow)
        except Exception:
            log.exception("router: could not settle a call of agent %s", flow.agent.agent_id)

    async def _fail(self, x: Exchange, exc: Exception) -> None:
        """The last stop of an unexpected exception: logged, traced, answered."""
        kind = type(innermost(exc)).__name__
        where = f"{x.method} {describe_target(x.raw_path)}"
        log.error("router: unexpected %s on %s", kind, where, exc_info=exc)
        flow = x.flow
        if flow is not None and not flow.settled:
            if not x.started:
                flow.status_code = 500
            note = f"internal error ({kind}); the daemon log has the traceback"
            flow.error = f"{flow.error}; {note}" if flow.error else note
            with anyio.CancelScope(shield=True):
                await self._settle_quietly(flow)
        message = (
            f"ironrt router: internal error ({kind}); the call was not completed. "
            "This is a bug in ironrt: the daemon log has the details"
        )
        adapter = x.adapter or OPENAI
        try:
            if not x.started:
                await send_error(
                    x, adapter, 500, message, "api_error", "internal_error", retry=False
                )
            elif not x.finished:
                if flow is not None and flow.stream:
                    event = adapter.stream_error_event(message, "api_error")
                    await x.write(event, more=True)
                await x.write(b"")
        except Exception:  # the client is gone, or the server refused the message
            log.debug("router: could not answer after an internal error", exc_info=True)

    async def _handle(self, flow: Flow, x: Exchange, raw: bytes, target: str) -> None:
        """Forward a call whose path and body were checked: `target` is its canonical path
        and query, exactly what goes upstream."""
        adapter = adapter_of(flow)
        drop_usage = False
        if (
            flow.stream
            and flow.body is not None
            and adapter.ensure_stream_usage(flow.endpoint, flow.body)
        ):
            drop_usage = True
            flow.body_changed = True
        await self.pipeline.request(flow)
        if flow.refusal is None and flow.claim is not None:
            await self.admitter.admit(flow)
        if flow.refusal is not None:
            await self._refuse(x, flow, flow.refusal)
            return
        if flow.body_changed and flow.body is not None:
            try:
                raw = await encode_json(flow.body, len(raw))
            except RecursionError:
                refusal = Refusal(
                    400,
                    "ironrt router: the JSON body is nested too deeply",
                    code="invalid_json",
                    policy="router",
                )
                await self._refuse(x, flow, refusal)
                return
        try:
            request = self.outgoing(adapter, x, target, x.headers, raw)
        except MalformedKey as exc:
            flow.status_code, flow.error = 500, "malformed provider key"
            await self.settle(flow)
            await send_error(
                x, adapter, 500, str(exc), "api_error", "malformed_provider_key", retry=False
            )
            return
        if request is None:
            flow.status_code = 401
            flow.error = "no provider key"
            await self.settle(flow)
            await send_error(
                x,
                adapter,
                401,
                f"ironrt has no {adapter.name} API key: export {adapter.key_env[0]} in the "
                "environment that starts the daemon (then `ironrt daemon stop`; the next "
                "command restarts it), add it to $IRONRT_HOME/keys.toml, or run offline "
                "with IRONRT_OFFLINE=1",
                "authentication_error",
                "no_provider_key",
                retry=False,
            )
            return
        try:
            upstream = await send_with_retries(self.transport, flow, self.pipeline, request)
        except PolicyFailed as exc:
            flow.status_code, flow.error = 500, str(exc)
            await self.settle(flow)
            await send_policy_error(x, adapter, exc.policy)
            return
        except Unreachable as exc:
            gave_up = flow.retry is not None and flow.retry.gave_up
            status = 504 if exc.kind == "timeout" else 502
            flow.status_code, flow.error = status, str(exc)
            flow.upstream_failure = exc.kind
            await self.settle(flow)
            await send_error(
                x,
                adapter,
                status,
                f"ironrt router: the {adapter.name} API is unreachable: {exc}",
                "api_error",
                "upstream_unreachable",
                retry=not gave_up,
            )
            return
        except Exception:
            # Unexpected, and the request may have left: charged as one that did.
            flow.upstream_failure = flow.upstream_failure or "protocol"
            raise
        try:
            if flow.stream and upstream.status < 300 and "event-stream" in upstream.content_type:
                await relay_stream(
                    flow,
                    upstream,
                    x,
                    self.pipeline,
                    drop_usage,
                    self.settle,
                    capture=self.config.capture_completions,
                )
            else:
                await relay_body(
                    flow,
                    upstream,
                    x,
                    self.pipeline,
                    self.settle,
                    capture=self.config.capture_completions,
                )
        finally:
            await upstream.aclose()  # completes even when cancelled (`Answer.aclose`)
