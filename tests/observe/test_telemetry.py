"""Control Panel telemetry against a local fake Control Panel over TCP and a real daemon
with real agents: it accepts, then fails (telemetry disables itself, calls keep their
speed), the daemon restarts while it is down, then it comes back (re-probed, the queue
drains: every item exactly once, nothing lost). Plus the on-disk queue alone."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ironrt.config import ConfigError, Settings
from ironrt.observe.controlpanel_queue import TelemetryQueue
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import OPENAI_KEY, governed_env, sdk_client, token_agent

TOKEN = "cp-token-SECRETnevershown-0123456789"
PROMPT = "the secret plan is marmalade-42"


class FakeControlPanel:
    """`POST /api/telemetry` on 127.0.0.1: records accepted batches; `failing` answers 503."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.failing = False
        self.failed = 0
        self.bad_auth = 0
        self.lock = threading.Lock()
        panel = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with panel.lock:
                    if self.path != "/api/telemetry" or (
                        self.headers.get("authorization") != f"Bearer {TOKEN}"
                    ):
                        panel.bad_auth += 1
                        status = 401
                    elif panel.failing:
                        panel.failed += 1
                        status = 503
                    else:
                        panel.raw.append(body)
                        panel.batches.append(json.loads(body))
                        status = 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def items(self) -> list[dict[str, Any]]:
        with self.lock:
            return [item for batch in self.batches for item in batch["items"]]

    def calls(self) -> list[dict[str, Any]]:
        return [i["data"] for i in self.items() if i["type"] == "call"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        up.latency = 0.05
        yield up


@pytest.fixture(scope="module")
def panel() -> Iterator[FakeControlPanel]:
    p = FakeControlPanel()
    yield p
    p.close()


def ask(c: openai.OpenAI) -> float:
    """One call through the router; its duration."""
    began = time.monotonic()
    c.chat.completions.create(
        model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": PROMPT}]
    )
    return time.monotonic() - began


def scrape(d: TempDaemon) -> str:
    transport = httpx.HTTPTransport(uds=str(d.home / "ironrt.sock"))
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get("http://ironrt/metrics").text


def gauge(d: TempDaemon) -> float:
    lines = [ln for ln in scrape(d).splitlines() if ln.startswith("ironrt_telemetry_enabled ")]
    assert len(lines) == 1, lines
    return float(lines[0].split()[1])


def doctor_line(d: TempDaemon) -> str:
    out = d.cli("doctor").stdout
    return next(line for line in out.splitlines() if "Control Panel telemetry" in line)


def test_telemetry_disables_itself_survives_a_restart_and_drains_exactly_once(
    upstream: FakeUpstream, panel: FakeControlPanel, tmp_path: Path
) -> None:
    env = governed_env(
        upstream.url,
        IRONRT_TELEMETRY_URL=panel.url,
        IRONRT_TELEMETRY_TOKEN=TOKEN,
        IRONRT_TELEMETRY_REPROBE="1s",
    )
    with TempDaemon(offline=False, env=env) as d:
        # 1. The panel accepts: call records and events arrive, with the bearer token.
        agent_id, token = token_agent(d, tmp_path)
        c = sdk_client(d, token)
        for _ in range(3):
            ask(c)
        wait_until(lambda: len(panel.calls()) == 3, timeout=10)
        assert d.rt.health().telemetry == "enabled" and gauge(d) == 1.0
        call = panel.calls()[0]
        assert call["agent_id"] == agent_id and call["model"].startswith("gpt-4o-mini")
        assert call["input_tokens"] > 0 and call["latency_ms"] > 0
        assert {"DaemonStarted", "AgentStarted"} <= set(event_kinds(panel))
        source = panel.batches[0]["source"]
        assert source["daemon"] and source["host"] and source["version"]

        # 2. The panel fails: 3 failed attempts disable telemetry; calls keep their speed.
        panel.failing = True
        durations = [ask(c) for _ in range(5)]
        wait_until(lambda: d.rt.health().telemetry == "disabled", timeout=15)
        assert panel.failed >= 3
        durations += [ask(c) for _ in range(5)]
        assert max(durations) < 1.0, durations  # upstream latency 0.05 s
        assert gauge(d) == 0.0
        assert "! Control Panel telemetry: disabled" in doctor_line(d)
        # Re-probed while down: one batch every IRONRT_TELEMETRY_REPROBE (1 s).
        tried = panel.failed
        wait_until(lambda: panel.failed > tried, timeout=5)
        c.close()

        # 3. The daemon stops while the panel is down, and starts again: the queue is kept.
        d.stop()
        assert (d.home / "telemetry.sqlite").exists()
        d.start()
        again = tmp_path / "again"  # token_agent waits for a file of its own
        again.mkdir()
        agent_id2, token2 = token_agent(d, again)
        c = sdk_client(d, token2)
        ask(c)
        wait_until(lambda: d.rt.health().telemetry == "disabled", timeout=15)

        # 4. The panel comes back: re-probed, enabled, the queue drains.
        panel.failing = False
        wait_until(lambda: d.rt.health().telemetry == "enabled", timeout=10)
        assert gauge(d) == 1.0
        every_call = {(t.agent_id, t.started_at, t.latency_ms) for t in d.rt.traces(limit=1000)}
        assert len(every_call) == 14
        wait_until(lambda: set(map(call_key, panel.calls())) >= every_call, timeout=10)
        c.close()
        # The first daemon's last events were queued as it stopped, and arrive now.
        wait_until(lambda: "DaemonStopped" in event_kinds(panel), timeout=10)

        # Every item exactly once, none lost: the seqs are 1..N without a gap or a repeat.
        seqs = [i["seq"] for i in panel.items()]
        assert sorted(seqs) == list(range(1, max(seqs) + 1)), seqs
        keys = [call_key(c) for c in panel.calls()]
        assert sorted(keys) == sorted(every_call)  # each call record once
        # Nothing secret or private left the host: no prompt, no provider key, no token.
        sent = b"".join(panel.raw)
        for secret in (PROMPT, OPENAI_KEY, TOKEN):
            assert secret.encode() not in sent
        assert panel.bad_auth == 0
        logged = d.log() + d.stderr()
        assert TOKEN not in logged and "telemetry disabled after 3 failed attempts" in logged
        assert agent_id2 != agent_id


def call_key(call: dict[str, Any]) -> tuple[str, str, float]:
    """A call record's identity (the record an observer gets has no row id yet)."""
    return (call["agent_id"], call["started_at"], call["latency_ms"])


def event_kinds(panel: FakeControlPanel) -> list[str]:
    return [i["data"]["kind"] for i in panel.items() if i["type"] == "event"]


async def test_the_queue_is_bounded_and_its_seqs_never_repeat(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite"
    queue = TelemetryQueue(path, max_items=100)
    await queue.open()
    await queue.append([("event", b'{"n":%d}' % n) for n in range(150)])
    assert await queue.count() == 100 and queue.dropped == 50
    oldest = await queue.peek(10)
    assert [seq for seq, _, _ in oldest] == list(range(51, 61))  # the oldest 50 went
    await queue.ack(oldest[-1][0])
    daemon_id = queue.daemon_id
    await queue.close()

    again = TelemetryQueue(path, max_items=100)  # a restart
    await again.open()
    assert again.daemon_id == daemon_id and await again.count() == 90
    await again.ack(150)
    await again.append([("call", b"{}")])
    assert [seq for seq, _, _ in await again.peek(10)] == [151]  # never a reused seq
    await again.close()
    assert path.stat().st_mode & 0o077 == 0


def test_bad_telemetry_settings_are_refused_in_one_line_without_the_token(
    tmp_path: Path,
) -> None:
    cases = [
        ({"IRONRT_TELEMETRY_URL": "http://cp.example"}, "must be https://"),
        ({"IRONRT_TELEMETRY_REPROBE": "0"}, "IRONRT_TELEMETRY_REPROBE must be a duration"),
        ({"IRONRT_TELEMETRY_REPROBE": "5x"}, "IRONRT_TELEMETRY_REPROBE must be a duration"),
        ({"IRONRT_TELEMETRY_QUEUE_MAX": "5"}, "IRONRT_TELEMETRY_QUEUE_MAX must be a whole"),
    ]
    for env, says in cases:
        with pytest.raises(ConfigError, match=re.escape(says)):
            Settings.load({"IRONRT_HOME": str(tmp_path), "IRONRT_TELEMETRY_TOKEN": TOKEN, **env})
    with pytest.raises(ConfigError, match="IRONRT_TELEMETRY_URL is set but") as info:
        Settings.load({"IRONRT_HOME": str(tmp_path), "IRONRT_TELEMETRY_URL": "https://x.io"})
    assert TOKEN not in str(info.value)
    ok = Settings.load(
        {
            "IRONRT_HOME": str(tmp_path),
            "IRONRT_TELEMETRY_URL": "https://cp.example/base",
            "IRONRT_TELEMETRY_TOKEN": TOKEN,
            "IRONRT_TELEMETRY_REPROBE": "5m",
        }
    )
    assert (ok.telemetry_reprobe, ok.telemetry_queue_max) == (300.0, 100_000)
    assert TOKEN not in repr(ok)
    # Through the real daemon start: a bad token is refused in one line that never shows it.
    bad = "bad token " + TOKEN
    d = TempDaemon(
        env={"IRONRT_TELEMETRY_URL": "https://cp.example", "IRONRT_TELEMETRY_TOKEN": bad}
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ironrt.daemon"],
            env=d.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        d.__exit__(None, None, None)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "IRONRT_TELEMETRY_TOKEN must be a token" in lines[0], lines
    assert TOKEN not in done.stderr
