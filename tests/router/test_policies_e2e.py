"""Safety and reliability policies end to end: real daemon, real SDKs, real fake upstream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import OPENAI_KEY, agent_script, run_agent

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
AMEX = "3782 822463 10005"  # a valid Amex: 4-6-5 digits, three words


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def daemon_for(up: FakeUpstream, **env: str) -> TempDaemon:
    return TempDaemon(
        offline=False,
        env={
            "IRONRT_OPENAI_BASE_URL": up.url,
            "IRONRT_ANTHROPIC_BASE_URL": up.url,
            "OPENAI_API_KEY": OPENAI_KEY,
            "IRONRT_RETRY_BACKOFF_INITIAL_S": "0.01",
            "IRONRT_RETRY_BACKOFF_MAX_S": "0.05",
            **env,
        },
    )


def events(d: TempDaemon, kind: str) -> list[dict[str, object]]:
    return [msgspec.to_builtins(e) for e in d.rt.events(limit=1000) if e.kind == kind]


#: One call (`CALLS` in its environment: that many, back to back), a line of JSON each.
CHAT = """
    import json, openai, os, sys
    client = openai.OpenAI(max_retries=0)
    for _ in range(int(os.environ.get("CALLS", "1"))):
        try:
            r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": sys.argv[1]}])
            print(json.dumps({"ok": r.choices[0].message.content}))
        except openai.APIStatusError as exc:
            print(json.dumps({"status": exc.status_code, "type": type(exc).__name__, "message": exc.message}))
"""


def test_redact_hides_pii_from_the_provider_and_restores_it_for_the_agent(
    up: FakeUpstream, tmp_path: Path
) -> None:
    with daemon_for(up) as d:
        prompt = f"mail {EMAIL} about card {CARD}"
        out = json.loads(
            run_agent(d, agent_script(tmp_path, "c.py", CHAT), prompt, pii="redact").splitlines()[
                -1
            ]
        )
        sent = json.dumps(up.requests[-1].body)
        assert EMAIL not in sent and CARD not in sent
        assert "[EMAIL_1]" in sent and "[CARD_1]" in sent
        assert EMAIL in out["ok"] and CARD in out["ok"]  # the model echoed placeholders back
        wait_until(lambda: events(d, "PiiAlert"), timeout=5)
        alert = events(d, "PiiAlert")[0]
        assert alert["action"] == "redacted" and alert["types"] == ["CARD", "EMAIL"]
        assert EMAIL not in json.dumps(alert)  # the event never carries the value


def test_a_card_split_across_three_stream_chunks_is_redacted(
    up: FakeUpstream, tmp_path: Path
) -> None:
    up.says = f"your new card is {AMEX} enjoy"
    script = agent_script(
        tmp_path,
        "s.py",
        """
        import json, openai
        s = openai.OpenAI().chat.completions.create(model="gpt-4o-mini", stream=True,
            messages=[{"role": "user", "content": "give me a card"}])
        parts = [c.choices[0].delta.content or "" for c in s if c.choices]
        print(json.dumps(parts))
    """,
    )
    with daemon_for(up) as d:
        parts = json.loads(run_agent(d, script, pii="redact").splitlines()[-1])
        text = "".join(parts)
        assert AMEX not in text and "3782" not in text and "10005" not in text
        assert "[CARD_1]" in text and text.endswith("enjoy")
        # Detect mode passes the text on but still catches the split card.
        run_agent(d, script, pii="detect")
        wait_until(
            lambda: any(a["direction"] == "response" for a in events(d, "PiiAlert")), timeout=5
        )
        response_alert = next(a for a in events(d, "PiiAlert") if a["direction"] == "response")
        assert response_alert["counts"] == {"CARD": 1}


def test_block_raises_the_sdk_error_without_retries(up: FakeUpstream, tmp_path: Path) -> None:
    script = agent_script(
        tmp_path,
        "b.py",
        """
        import openai
        try:
            openai.OpenAI().chat.completions.create(model="gpt-4o-mini",  # default SDK retries on
                messages=[{"role": "user", "content": "my email is jane.doe@example.com"}])
        except openai.BadRequestError as exc:
            print("BLOCKED", exc.message)
    """,
    )
    with daemon_for(up) as d:
        out = run_agent(d, script, pii="block")
        assert "BLOCKED" in out and "EMAIL" in out
        assert up.requests == []
        wait_until(lambda: len(d.rt.traces()) == 1, timeout=5)
        time.sleep(0.2)
        assert len(d.rt.traces()) == 1  # one call: the SDK obeyed x-should-retry: false


def test_retries_then_breaker_opens_fails_fast_and_recovers(
    up: FakeUpstream, tmp_path: Path
) -> None:
    script = agent_script(tmp_path, "c.py", CHAT)
    with daemon_for(
        up, IRONRT_RETRY_MAX_ATTEMPTS="3", IRONRT_BREAKER_FAIL_MAX="3", IRONRT_BREAKER_RESET_S="5"
    ) as d:
        up.fail(times=2, status=503)
        out = json.loads(run_agent(d, script, "hello").splitlines()[-1])
        assert "ok" in out and len(up.requests) == 3  # two failures retried inside the router

        up.fail(times=100, status=500)
        agent_id = d.rt.start_agent(["sleep", "30"])  # its metrics show the circuit below
        seen = len(up.requests)
        # Both calls from one process, back to back: the second lands well within the
        # breaker's 5 s reset, however long a loaded machine takes to start Python.
        out = run_agent(d, script, "again", env={"CALLS": "2"}).splitlines()
        first, fast = (json.loads(line) for line in out[-2:])
        assert first["status"] == 500  # the upstream's own error, after the router's retries
        assert len(up.requests) == seen + 3  # three tries: the breaker's fail_max
        assert fast["status"] == 503 and "circuit" in fast["message"]  # refused, not tried
        assert set(d.rt.get_metrics(agent_id).circuits.values()) == {"open"}  # in the metrics
        wait_until(lambda: events(d, "CircuitOpened"), timeout=5)

        up.reset()
        # Fast failures until the reset timeout has passed, then one probe goes through.
        wait_until(
            lambda: "ok" in json.loads(run_agent(d, script, "up?").splitlines()[-1]), timeout=15
        )
        wait_until(lambda: events(d, "CircuitClosed"), timeout=5)
        assert d.rt.health().circuits and set(d.rt.health().circuits.values()) == {"closed"}


def test_retry_after_on_429_is_honoured(up: FakeUpstream, tmp_path: Path) -> None:
    script = agent_script(tmp_path, "c.py", CHAT)
    with daemon_for(up, IRONRT_RETRY_MAX_ATTEMPTS="2") as d:
        up.fail(times=1, status=429, retry_after=1)
        began = time.monotonic()
        out = json.loads(run_agent(d, script, "hi").splitlines()[-1])
        assert "ok" in out and len(up.requests) == 2
        assert time.monotonic() - began >= 1.0  # the router waited as the provider asked


def test_rpm_refuses_the_sixth_call_within_the_minute(up: FakeUpstream, tmp_path: Path) -> None:
    script = agent_script(
        tmp_path,
        "r.py",
        """
        import json, openai
        client = openai.OpenAI(max_retries=0)
        results = []
        for i in range(6):
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
                results.append("ok")
            except openai.RateLimitError as exc:
                results.append(["429", exc.response.headers.get("retry-after")])
        print(json.dumps(results))
    """,
    )
    with daemon_for(up) as d:
        results = json.loads(run_agent(d, script, rpm=5).splitlines()[-1])
        assert results[:5] == ["ok"] * 5
        assert results[5][0] == "429" and 1 <= int(results[5][1]) <= 60
        assert len(up.requests) == 5
        wait_until(lambda: events(d, "RateLimited"), timeout=5)
        assert events(d, "RateLimited")[0]["limit"] == "rpm"


def test_a_hanging_upstream_is_cut_at_the_read_timeout(up: FakeUpstream, tmp_path: Path) -> None:
    script = agent_script(tmp_path, "c.py", CHAT)
    with daemon_for(up, IRONRT_READ_TIMEOUT="0.5") as d:
        up.hang(times=1, seconds=20)
        began = time.monotonic()
        out = json.loads(run_agent(d, script, "hello?").splitlines()[-1])
        assert out["status"] == 504 and "ReadTimeout" in out["message"]
        assert time.monotonic() - began < 10
        assert len(up.requests) == 1  # a read timeout is not retried: it may have been billed
