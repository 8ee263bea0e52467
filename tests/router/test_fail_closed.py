"""A policy that raises in any hook fails the call closed, through the real router.

The router is built in process as the daemon's router service builds it (`build_policies`
behind a `Pipeline`, a `RouterApp` with the HTTP transport, the budget's `Ledger`), with
one extra policy, first in the pipeline, that raises in a hook the test chooses. It is
served on loopback by the daemon's own HTTP server, the way the daemon serves it (`ironrt.server.make_server`)
and forwards to a `FakeUpstream` over TCP that answers after 100 ms. The agent is a real
SDK client (openai, anthropic) holding an IC_TOKEN of an agent with a budget.

For every hook: the SDK raises (a provider-shaped 500 `policy_error` naming the policy, or,
once a stream has started, the provider's own stream error event), no later policy sees a
request the failed one could not check, the call is settled exactly once, and the budget's
hold is released, whichever hook failed.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import anyio
import openai
import pytest

from ironrt.governance.charging import charge
from ironrt.governance.flow import Attempt, Flow, StreamEvent
from ironrt.governance.ledger import Ledger, usd_to_nanos
from ironrt.governance.output_limits import OutputLimits
from ironrt.governance.pipeline import Pipeline
from ironrt.governance.policy import Policy
from ironrt.governance.pricing import Pricer
from ironrt.governance.tokens import token_hash
from ironrt.policies.settings import ReliabilitySettings
from ironrt.router.app import RouterApp
from ironrt.router.egress import RouterConfig
from ironrt.router.service import build_policies
from ironrt.server import bind_tcp, make_server
from ironrt.testing import FakeUpstream, tagent, wait_until
from ironrt.transports.http import Upstream

TOKEN = "ic-fail-closed-test-token-0123456789abcdef0123456789abcdef"
UPSTREAM_KEY = "sk-upstream-fail-closed-0123456789"
POLICY = "faulty"
HOOKS = ("request", "upstream_attempt", "response", "stream_event", "stream_end", "complete")
#: Hooks met before the call is admitted: nothing is held, nothing goes upstream.
BEFORE_ADMISSION = ("request",)


class Faulty(Policy):
    """Overrides every hook (so the pipeline calls it for each), raises in `fails`."""

    name = POLICY

    def __init__(self) -> None:
        self.fails: str | None = None

    def _maybe_fail(self, hook: str) -> None:
        if hook == self.fails:
            raise RuntimeError(f"{POLICY} broke in {hook}")

    def request(self, flow: Flow) -> None:
        self._maybe_fail("request")

    def upstream_attempt(self, flow: Flow, attempt: Attempt) -> float | None:
        self._maybe_fail("upstream_attempt")
        return None

    def response(self, flow: Flow, body: object) -> bool:
        self._maybe_fail("response")
        return False

    def stream_event(self, flow: Flow, event: StreamEvent) -> list[StreamEvent]:
        self._maybe_fail("stream_event")
        return [event]

    def stream_end(self, flow: Flow) -> list[StreamEvent]:
        self._maybe_fail("stream_end")
        return []

    def complete(self, flow: Flow) -> None:
        self._maybe_fail("complete")


@dataclass
class Router:
    url: str
    upstream: FakeUpstream
    faulty: Faulty
    ledger: Ledger
    #: The agent holding TOKEN (a test may change its settings, as `ironrt set` would).
    agent: Any = None
    #: Every call settled (books closed), in order: what the daemon would trace.
    settled: list[Flow] = field(default_factory=list)
    #: The router's pipeline (a test may reach a policy, as `pipeline.get("pii")`).
    pipeline: Any = None

    def __post_init__(self) -> None:
        # One client per SDK for the module: the agent's SDK, holding its IC_TOKEN.
        self.openai = openai.OpenAI(base_url=self.url + "/v1", api_key=TOKEN, max_retries=0)
        self.anthropic = anthropic.Anthropic(base_url=self.url, api_key=TOKEN, max_retries=0)

    def scopes(self) -> list[Any]:
        return list(self.ledger.scopes.values())

    def spent(self) -> int:
        return self.ledger.scope("agent:fc1").spent_nanos


def _serve(router: Router, sock: socket.socket, ready: threading.Event, box: list[Any]) -> None:
    """The router's event loop, in its own thread (the SDK calls block the test's)."""

    async def main() -> None:
        pricer = Pricer()
        reliability = ReliabilitySettings(max_attempts=1)  # one try: a test counts requests
        policies = [
            router.faulty,
            *build_policies(pricer, OutputLimits(), router.ledger, reliability),
        ]
        pipeline = router.pipeline = Pipeline(policies)
        agent = router.agent = tagent("fc1", ledger=router.ledger, budget_usd=5.0)
        agents = {token_hash(TOKEN): agent}

        async def settle(flow: Flow) -> None:
            """RouterService.settle's books, without the database: charge, every
            policy's `complete` (the budget turns its hold into spend), record. Asked
            again for a settled call (the router may ask twice), it does nothing."""
            if flow.settled:
                return
            flow.settled = True
            charge(flow, pricer)
            pipeline.complete(flow)
            router.settled.append(flow)

        upstream = Upstream(reliability)
        config = RouterConfig(
            offline=False,
            base_urls={"openai": router.upstream.url, "anthropic": router.upstream.url},
            keys=lambda provider: (f"{provider.upper()}_API_KEY", UPSTREAM_KEY),
        )
        app = RouterApp(config, pipeline, upstream, agents.get, settle, router.ledger, 5.0)
        server = make_server(app, unix=False)
        box.append(server)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(router.ledger.run)

                async def started() -> None:
                    while not server.started:
                        await anyio.sleep(0.005)
                    ready.set()

                tg.start_soon(started)
                await server.serve(sockets=[sock])
                tg.cancel_scope.cancel()
        finally:
            await upstream.aclose()

    try:
        anyio.run(main)
    except BaseException as exc:  # reported by the fixture
        box.append(exc)
        ready.set()


@pytest.fixture(scope="module")
def router() -> Iterator[Router]:
    with FakeUpstream(latency=0.1) as up:
        sock = bind_tcp("127.0.0.1", 0)
        port = sock.getsockname()[1]
        state = Router(f"http://127.0.0.1:{port}", up, Faulty(), Ledger())
        ready = threading.Event()
        box: list[Any] = []
        thread = threading.Thread(target=_serve, args=(state, sock, ready, box), daemon=True)
        thread.start()
        try:
            assert ready.wait(10), "the router did not start"
            errors = [b for b in box if isinstance(b, BaseException)]
            assert not errors, errors
            yield state
        finally:
            for server in box:
                if not isinstance(server, BaseException):
                    server.should_exit = True
            thread.join(10)
            sock.close()
            state.openai.close()
            state.anthropic.close()


@dataclass
class Outcome:
    error: Exception
    #: Text the SDK delivered before it raised (streams).
    text: str = ""


def _openai_call(router: Router, stream: bool) -> Outcome:
    client = router.openai
    messages: Any = [{"role": "user", "content": "hello there"}]
    text = ""
    try:
        if not stream:
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        else:
            chunks = client.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True
            )
            for chunk in chunks:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
    except openai.APIError as exc:
        return Outcome(exc, text)
    raise AssertionError(f"the call went through (text {text!r})")


def _anthropic_call(router: Router, stream: bool) -> Outcome:
    client = router.anthropic
    messages: Any = [{"role": "user", "content": "hello there"}]
    text = ""
    try:
        if not stream:
            client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=messages)
        else:
            events = client.messages.create(
                model="claude-haiku-4-5", max_tokens=64, messages=messages, stream=True
            )
            for event in events:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    text += event.delta.text
    except anthropic.APIError as exc:
        return Outcome(exc, text)
    raise AssertionError(f"the call went through (text {text!r})")


def _error_message(outcome: Outcome, provider: str) -> str:
    """The message of the provider-shaped error body the SDK raised with."""
    body = outcome.error.body
    assert isinstance(body, dict), repr(outcome.error)
    if provider == "openai":  # the SDK hands over the `error` object itself
        assert body["type"] == "api_error", body
        return str(body["message"])
    assert body["type"] == "error" and body["error"]["type"] == "api_error", body
    return str(body["error"]["message"])


def _status_error(outcome: Outcome, provider: str) -> None:
    """A provider-shaped 500 naming the policy, that the SDK must not retry."""
    exc = outcome.error
    if provider == "openai":
        assert isinstance(exc, openai.InternalServerError), repr(exc)
        assert exc.code == "policy_error"
    else:
        assert isinstance(exc, anthropic.InternalServerError), repr(exc)
    assert exc.status_code == 500
    assert f"policy '{POLICY}' failed" in _error_message(outcome, provider)
    assert exc.response.headers["x-should-retry"] == "false"


def _stream_error(outcome: Outcome, provider: str) -> None:
    """The stream had started (200): it ends with the provider's error event instead of
    its end, naming the policy."""
    exc = outcome.error
    if provider == "openai":
        assert type(exc) is openai.APIError, repr(exc)  # raised from the event, not a status
        assert exc.code == "policy_error"
    else:
        assert isinstance(exc, anthropic.APIStatusError), repr(exc)
        assert exc.response.status_code == 200  # raised from the event, not the status
    assert f"policy '{POLICY}' failed" in _error_message(outcome, provider)


CASES = [
    # (provider, hook, stream, how it must fail)
    ("openai", "request", False, "status"),
    ("openai", "request", True, "status"),
    ("openai", "upstream_attempt", False, "status"),
    ("openai", "upstream_attempt", True, "status"),
    ("openai", "response", False, "status"),
    ("openai", "stream_event", True, "stream"),
    ("openai", "stream_end", True, "stream"),
    ("openai", "complete", False, "status"),
    ("openai", "complete", True, "stream"),
    ("anthropic", "request", False, "status"),
    ("anthropic", "response", False, "status"),
    ("anthropic", "stream_event", True, "stream"),
    ("anthropic", "complete", True, "stream"),
]


def test_every_hook_is_covered() -> None:
    """Every hook a policy has (a new one must join the cases) meets a failing policy."""
    hooks = {
        name
        for name, value in vars(Policy).items()
        if callable(value) and not name.startswith("_") and not name.endswith("_async")
    }
    assert hooks == set(HOOKS) == {hook for _, hook, _, _ in CASES}


@pytest.mark.parametrize(
    ("provider", "hook", "stream", "how"),
    CASES,
    ids=[f"{p}-{h}-{'stream' if s else 'body'}" for p, h, s, _ in CASES],
)
def test_a_policy_raising_fails_the_call_closed(
    router: Router, provider: str, hook: str, stream: bool, how: str
) -> None:
    settled_before, requests_before, spent_before = (
        len(router.settled),
        len(router.upstream.requests),
        router.spent(),
    )
    router.faulty.fails = hook
    try:
        call = _openai_call if provider == "openai" else _anthropic_call
        outcome = call(router, stream)
    finally:
        router.faulty.fails = None

    if how == "status":
        _status_error(outcome, provider)
    else:
        _stream_error(outcome, provider)
    if hook == "stream_event":
        assert outcome.text == ""  # not one event got past the policy that failed on it

    # Settled once: the books closed before the agent got its answer.
    wait_until(lambda: len(router.settled) > settled_before, timeout=5)
    (flow,) = router.settled[settled_before:]
    assert flow.failed_policy == POLICY
    assert flow.provider == provider and flow.stream == stream

    # Nothing held: a failed hook never strands a reservation, in any scope.
    stranded = [(s.key, s.held_nanos, s.in_flight) for s in router.scopes()]
    assert [h for h in stranded if h[1:] != (0, 0)] == []
    reached = len(router.upstream.requests) - requests_before
    if hook in BEFORE_ADMISSION:
        # Refused before anything was held or sent: nothing charged.
        assert reached == 0 and flow.hold is None
        assert flow.claim is None  # the budget after it never saw the request
        assert router.spent() == spent_before and flow.cost_usd == 0.0
    else:
        # Admitted, held, sent once (never retried), answered: charged as a sent call
        # (the provider may bill it) and the hold released by the budget's own `complete`.
        assert reached == 1
        assert flow.hold is not None and flow.hold.settled
        assert flow.cost_usd is not None and flow.cost_usd > 0
        assert router.spent() - spent_before == usd_to_nanos(flow.cost_usd)


def test_a_call_after_a_failure_goes_through(router: Router) -> None:
    """The failures above left nothing behind that blocks the next call (no hold, no
    open circuit, no stuck stream)."""
    answer = router.openai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
    )
    assert answer.choices[0].message.content
    assert router.settled[-1].failed_policy is None
    assert all(s.held_nanos == 0 for s in router.scopes())
