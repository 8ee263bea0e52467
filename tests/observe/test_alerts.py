"""Alert webhooks against a local webhook receiver over TCP and one real daemon (a fake
upstream with latency, real agents): budget warnings, exhaustion and a PII block arrive
with a Slack-style `text`; config.toml's per-webhook filters hold; a webhook that fails
twice still gets the alert; one that hangs never slows a call; bad settings are refused
in one clear line."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest

from ironrt.config import ConfigError, Settings
from ironrt.governance.flow import TokenUsage
from ironrt.settings_table import DEFAULT_ALERT_KINDS, EVENT_KINDS
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import OPENAI_KEY, governed_env, sdk_client, token_agent

EMAIL = "jane.doe@example.com"


class Receiver:
    """Webhooks on 127.0.0.1, one per path: `/hang*` never answers (until closed), a path
    in `failures` answers 503 that many times, every other request is taken (200)."""

    def __init__(self) -> None:
        self.taken: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.hits: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                path = self.path.split("?")[0]
                with receiver.lock:
                    receiver.hits[path] += 1
                    fail = receiver.failures[path] > 0
                    if fail:
                        receiver.failures[path] -= 1
                    elif not path.startswith("/hang"):
                        receiver.taken[path].append(json.loads(body))
                if path.startswith("/hang"):
                    receiver.release.wait(60)
                    return
                self.send_response(503 if fail else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def kinds(self, path: str) -> list[str]:
        with self.lock:
            return [a["event"]["kind"] for a in self.taken[path]]

    def alerts(self, path: str, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [a for a in self.taken[path] if a["event"]["kind"] == kind]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.failures["/flaky"] = 2
    yield r
    r.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        up.latency = 0.05
        up.usage = TokenUsage(input_tokens=30, output_tokens=20)
        yield up


@pytest.fixture(scope="module")
def d(upstream: FakeUpstream, receiver: Receiver) -> Iterator[TempDaemon]:
    """One daemon for the module; its config.toml names four webhooks."""
    daemon = TempDaemon(offline=False, env=governed_env(upstream.url))
    (daemon.home / "config.toml").write_text(
        f"""
[[alerts.webhooks]]
url = "{receiver.url("/all?token=hush")}"

[[alerts.webhooks]]
url = "{receiver.url("/pii")}"
events = ["PiiBlocked"]

[[alerts.webhooks]]
url = "{receiver.url("/flaky")}"
events = ["BudgetWarning", "BudgetExhausted"]

[[alerts.webhooks]]
url = "{receiver.url("/hang/secret-path")}"
"""
    )
    with daemon:
        yield daemon


def ask(c: openai.OpenAI, content: str = "go") -> str:
    try:
        c.chat.completions.create(
            model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": content}]
        )
        return "ok"
    except openai.APIStatusError as exc:
        return str(exc.status_code)


def test_budget_warnings_and_exhaustion_reach_the_webhooks_with_text(
    d: TempDaemon, receiver: Receiver, tmp_path: Path
) -> None:
    agent_id, token = token_agent(d, tmp_path, name="budgeted")
    per_call = (30 * 0.15 + 20 * 0.60) / 1_000_000  # gpt-4o-mini
    d.rt.set_limits(agent_id, budget_usd=round(per_call * 1.05, 9))
    c = sdk_client(d, token)
    try:
        assert ask(c) == "ok"  # 95 % spent: warnings at 50, 80 and 95 %
        assert ask(c) == "402"  # the next one does not fit: exhausted
    finally:
        c.close()

    wait_until(lambda: len(receiver.alerts("/all", "BudgetExhausted")) == 1, timeout=10)
    warnings = receiver.alerts("/all", "BudgetWarning")
    assert [w["event"]["threshold_percent"] for w in warnings] == [50, 80, 95]
    assert all(w["event"]["agent_id"] == agent_id for w in warnings)
    text = warnings[-1]["text"]
    assert text.startswith(":warning: ironrt@") and "BudgetWarning" in text
    assert "95% used" in text and agent_id in text and "\n" not in text
    exhausted = receiver.alerts("/all", "BudgetExhausted")[0]
    assert "exhausted" in exhausted["text"] and f"agent:{agent_id}" in exhausted["text"]

    # The flaky webhook failed twice, was retried, and got every one of them, in order.
    wait_until(lambda: len(receiver.kinds("/flaky")) == 4, timeout=15)
    assert receiver.kinds("/flaky") == ["BudgetWarning"] * 3 + ["BudgetExhausted"]
    assert receiver.hits["/flaky"] == 4 + 2
    # The PII-only webhook got none of them.
    assert "BudgetWarning" not in receiver.kinds("/pii")


def test_a_pii_block_reaches_the_webhooks_without_the_value(
    d: TempDaemon, receiver: Receiver, tmp_path: Path
) -> None:
    agent_id, token = token_agent(d, tmp_path, pii="block")
    c = sdk_client(d, token)
    try:
        assert ask(c, f"write to {EMAIL} about it").startswith("4")
    finally:
        c.close()
    wait_until(lambda: receiver.alerts("/pii", "PiiBlocked"), timeout=10)
    [alert] = receiver.alerts("/pii", "PiiBlocked")
    assert alert["event"]["agent_id"] == agent_id and "EMAIL" in alert["event"]["types"]
    assert "blocked for PII (EMAIL x1)" in alert["text"]
    assert receiver.kinds("/pii") == ["PiiBlocked"]  # its filter: nothing else
    wait_until(lambda: receiver.alerts("/all", "PiiBlocked"), timeout=10)
    # The default kinds leave PiiAlert (a finding, not a block) out.
    assert "PiiAlert" not in receiver.kinds("/all")
    everything = json.dumps(receiver.taken)
    assert EMAIL not in everything and OPENAI_KEY not in everything


def test_a_hanging_webhook_slows_no_call_and_no_other_webhook(
    d: TempDaemon, receiver: Receiver, tmp_path: Path
) -> None:
    wait_until(lambda: receiver.hits["/hang/secret-path"] >= 1, timeout=10)
    assert not receiver.release.is_set()  # still hanging: its alerts wait behind it
    _, token = token_agent(d, tmp_path)
    c = sdk_client(d, token)
    try:
        took = []
        for _ in range(5):
            began = time.monotonic()
            assert ask(c) == "ok"
            took.append(time.monotonic() - began)
    finally:
        c.close()
    assert max(took) < 1.0, took  # upstream latency 0.05 s
    # The webhooks' URLs (their path and query are secrets) never reach the log.
    logged = d.log()
    assert "secret-path" not in logged and "hush" not in logged


def test_the_default_alert_kinds_are_kinds_there_are() -> None:
    """A default kind renamed among the typed events would silently never alert."""
    assert set(DEFAULT_ALERT_KINDS) <= set(EVENT_KINDS)
    assert "PiiBlocked" in EVENT_KINDS and "CostUpdate" in EVENT_KINDS


def test_bad_alert_settings_are_refused_in_one_clear_line(tmp_path: Path) -> None:
    def refused(env: dict[str, str], toml: str = "") -> str:
        (tmp_path / "config.toml").write_text(toml)
        with pytest.raises(ConfigError) as info:
            Settings.load({"IRONRT_HOME": str(tmp_path), **env})
        return str(info.value)

    said = refused({"IRONRT_ALERT_WEBHOOKS": "https://ok.example/a,ftp://u:pw@x.example/k"})
    assert "ftp://x.example/… is not an http:// or https:// URL" in said
    assert "pw" not in said and "/k" not in said
    said = refused(
        {}, '[[alerts.webhooks]]\nurl = "https://h.example/s"\nevents = ["BudgetWarn"]\n'
    )
    assert "unknown event kind 'BudgetWarn' (did you mean 'BudgetWarning'?)" in said
    said = refused({}, '[[alerts.webhooks]]\nurl = "https://h.example/s"\nchannel = "#ops"\n')
    assert "unknown key 'channel' in a webhook (url, events)" in said
    said = refused({}, "[alerts]\nhooks = []\n")
    assert said.startswith("unknown key 'hooks' in [alerts]")
    said = refused(
        {}, 'alert_webhooks = "https://a.example"\n[[alerts.webhooks]]\nurl = "https://b.example"\n'
    )
    assert "IRONRT_ALERT_WEBHOOKS is set twice" in said
    # A comma-separated list in the environment, over the file's tables.
    (tmp_path / "config.toml").write_text('[[alerts.webhooks]]\nurl = "https://b.example"\n')
    s = Settings.load(
        {
            "IRONRT_HOME": str(tmp_path),
            "IRONRT_ALERT_WEBHOOKS": "https://a.example/x, http://127.0.0.1:9/y",
        }
    )
    assert [h.url for h in s.alert_webhooks] == ["https://a.example/x", "http://127.0.0.1:9/y"]
    assert all(h.events == DEFAULT_ALERT_KINDS for h in s.alert_webhooks)
    assert "/x" not in repr(s.alert_webhooks)


def test_each_default_kind_reads_as_one_slack_line() -> None:
    from ironrt.observe.alerts_text import alert_text
    from ironrt.protocol import events

    failed = events.AgentFailed(agent_id="a1", agent_name="crew<1>", reason="exit 3 & more")
    opened = events.CircuitOpened(circuit="openai:https://api.openai.com")
    text = alert_text(failed)
    assert text.startswith(":x: ironrt@") and "AgentFailed: agent 'crew&lt;1&gt;' (a1)" in text
    assert text.endswith("failed: exit 3 &amp; more")
    assert "circuit opened for openai:https://api.openai.com" in alert_text(opened)
