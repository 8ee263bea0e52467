"""Per-type PII policy and custom entities end to end: a real daemon with a home pii.toml,
real agent processes holding their IC_TOKEN, the real openai SDK, the fake upstream over
TCP (200 ms per answer) recording what the provider would have seen.

The selections go through the control API as a client sends them (`pii_types` on the
agent, a floor on a project scope), so what is checked is the whole path: decoding, the
daemon's checks, the store, the policy's plan per call.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import agent_script, governed_env

EMAIL = "jane.doe@example.com"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
#: An AWS access key id of the documented shape (generated, not a real one).
SECRET = "AKIAZ5QXKQ7VFA2BQC3D"

HOME_PII = """
[entities.EMPLOYEE_ID]
pattern = 'EMP-[0-9]{6}'
cues = ["employee"]

[entities.NAME]
terms = ["Jane Roe", "Project Falcon"]
"""


@dataclass
class Env:
    d: TempDaemon
    up: FakeUpstream
    control: httpx.Client
    tmp: Path
    n: int = 0

    def start(self, **body: Any) -> tuple[str, openai.OpenAI]:
        """A live agent with these settings, and the SDK holding its token."""
        self.n += 1
        target = self.tmp / f"token-{self.n}"
        script = agent_script(
            self.tmp,
            f"hold{self.n}.py",
            f"""
            import os, time
            open({str(target)!r} + ".tmp", "w").write(os.environ["IC_TOKEN"])
            os.rename({str(target)!r} + ".tmp", {str(target)!r})
            time.sleep(120)
            """,
        )
        r = self.control.post(
            "/v1/agents", json={"command": [sys.executable, script], "cwd": str(self.tmp), **body}
        )
        assert r.status_code == 201, r.text
        wait_until(target.exists, timeout=15)
        client = openai.OpenAI(
            base_url=self.d.router_url + "/v1", api_key=target.read_text(), max_retries=0
        )
        return r.json()["id"], client

    def sent(self) -> str:
        return json.dumps(self.up.requests[-1].body)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("pii-types")
    with FakeUpstream(latency=0.2) as up:
        d = TempDaemon(offline=False, env=governed_env(up.url))
        (d.home / "pii.toml").write_text(HOME_PII)
        with d:
            transport = httpx.HTTPTransport(uds=str(d.home / "ironrt.sock"))
            with httpx.Client(transport=transport, base_url="http://ironrt", timeout=30) as c:
                yield Env(d, up, c, tmp)


def ask(client: openai.OpenAI, text: str) -> str:
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
    )
    return r.choices[0].message.content or ""


def alerts(env: Env, agent_id: str) -> list[dict[str, Any]]:
    return [
        msgspec.to_builtins(e)
        for e in env.d.rt.events(limit=1000)
        if e.kind == "PiiAlert" and e.agent_id == agent_id
    ]


def test_a_type_not_selected_passes_untouched_while_a_selected_one_is_redacted(env: Env) -> None:
    agent_id, client = env.start(pii="redact", pii_types={"email": "redact", "*": "off"})
    prompt = f"mail {EMAIL}, call {PHONE}, card {CARD}"
    answer = ask(client, prompt)
    sent = env.sent()
    assert EMAIL not in sent and "[EMAIL_1]" in sent
    assert PHONE in sent and CARD in sent  # not selected: the provider sees them as written
    assert EMAIL in answer and PHONE in answer  # the echoed placeholder came back restored
    wait_until(lambda: alerts(env, agent_id), timeout=5)
    first = alerts(env, agent_id)[0]
    assert first["types"] == ["EMAIL"] and first["actions"] == {"EMAIL": "redacted"}
    shown = env.control.get(f"/v1/agents/{agent_id}").json()
    assert shown["pii_types"] == {"EMAIL": "redact", "*": "off"}


def test_a_map_blocks_one_type_redacts_another_and_detects_the_rest(env: Env) -> None:
    agent_id, client = env.start(pii="detect", pii_types={"SECRET": "block", "EMAIL": "redact"})
    before = len(env.up.requests)
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, f"key {SECRET} and mail {EMAIL}")
    assert "SECRET" in err.value.message and "EMAIL" not in err.value.message
    assert len(env.up.requests) == before  # nothing left the machine
    ask(client, f"mail {EMAIL}, call {PHONE}")
    sent = env.sent()
    assert "[EMAIL_1]" in sent and PHONE in sent
    wait_until(lambda: len(alerts(env, agent_id)) >= 3, timeout=5)
    actions = [a["actions"] for a in alerts(env, agent_id) if a["direction"] == "request"]
    assert {"EMAIL": "redacted", "PHONE": "detected"} in actions
    assert any(a.get("SECRET") == "blocked" for a in actions)


def test_a_project_floor_applies_to_every_agent_in_it_and_only_there(env: Env) -> None:
    r = env.control.put("/v1/limits/project:team", json={"pii_types": {"secret": "block"}})
    assert r.status_code == 200, r.text
    assert r.json()["pii_types"] == {"SECRET": "block"}
    _, inside = env.start(pii="detect", project="team")
    _, outside = env.start(pii="detect")
    with pytest.raises(openai.BadRequestError):
        ask(inside, f"key {SECRET}")
    ask(outside, f"key {SECRET}")
    assert SECRET in env.sent()  # detect only, outside the project
    limits = {s["scope"]: s for s in env.control.get("/v1/limits").json()["limits"]}
    assert limits["project:team"]["pii_types"] == {"SECRET": "block"}
    env.control.put("/v1/limits/project:team", json={"pii_types": None})
    ask(inside, f"key {SECRET}")  # the floor is gone: back to the agent's own detect


def test_custom_entities_and_deny_list_terms_are_redacted_and_restored(env: Env) -> None:
    _, client = env.start(pii="redact")
    answer = ask(client, "employee EMP-123456 works with Jane Roe on Project Falcon")
    sent = env.sent()
    for value in ("EMP-123456", "Jane Roe", "Project Falcon"):
        assert value not in sent and value in answer
    assert "[EMPLOYEE_ID_1]" in sent and "[NAME_1]" in sent and "[NAME_2]" in sent


def test_a_term_the_model_produces_in_a_stream_is_hidden_from_the_agent(env: Env) -> None:
    _, client = env.start(pii="redact")
    env.up.says = "the lead is Jane Roe on Project Falcon, see you"
    try:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "who?"}]
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    finally:
        env.up.says = None
    assert "Jane Roe" not in text and "Falcon" not in text
    assert text.endswith("the lead is [NAME_1] on [NAME_2], see you")


def test_an_agents_own_pii_file_adds_entities_for_that_agent_only(env: Env) -> None:
    own = env.tmp / "agent-pii.toml"
    own.write_text("[entities.CODENAME]\nterms = ['Bluebird']\n")
    _, with_file = env.start(pii="redact", pii_file=str(own))
    _, without = env.start(pii="redact")
    ask(with_file, "status of Bluebird?")
    assert "Bluebird" not in env.sent() and "[CODENAME_1]" in env.sent()
    ask(without, "status of Bluebird?")
    assert "Bluebird" in env.sent()


def long_note(*values: str) -> str:
    """A message long enough for the daemon to recall its scan (`ironrt/pii/recall.py`)."""
    filler = "The customer describes a delayed delivery and a refund that never came. " * 4
    return filler + " ".join(values) + " " + filler


def test_a_message_sent_again_is_redacted_again_as_the_first_time(env: Env) -> None:
    """A conversation resends its messages every turn; the daemon recalls their scans, and
    the second call is redacted, restored and reported exactly as the first was."""
    agent_id, client = env.start(pii="redact")
    note = long_note(f"mail {EMAIL}", f"call {PHONE}")
    before = recall_lookups(env.control)
    answers, sent = [], []
    env.up.says = "noted: [EMAIL_1] and [PHONE_1]"  # the model echoes the placeholders
    try:
        for _ in range(3):
            answers.append(ask(client, note))
            sent.append(env.sent())
    finally:
        env.up.says = None
    assert sent[0] == sent[1] == sent[2]
    assert EMAIL not in sent[0] and "[EMAIL_1]" in sent[0] and "[PHONE_1]" in sent[0]
    assert all(a.endswith(f"noted: {EMAIL} and {PHONE}") for a in answers)
    wait_until(lambda: len(alerts(env, agent_id)) >= 3, timeout=5)
    requests = [a for a in alerts(env, agent_id) if a["direction"] == "request"]
    assert len(requests) == 3
    assert all(a["counts"] == {"EMAIL": 1, "PHONE": 1} for a in requests)
    after = recall_lookups(env.control)  # scanned once, recalled twice (answers are short)
    assert (after["miss"] - before["miss"], after["hit"] - before["hit"]) == (1, 2)


def recall_lookups(control: httpx.Client) -> dict[str, float]:
    """`ironrt_pii_recall_lookups_total` by result, from the daemon's `/metrics`."""
    text = control.get("/metrics").text
    found = {
        s.labels["result"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ironrt_pii_recall_lookups_total"
    }
    assert set(found) == {"hit", "miss"}, text[:500]
    return found


def test_with_no_recall_size_every_text_is_scanned_every_time(tmp_path: Path) -> None:
    """`IRONRT_PII_RECALL_SIZE=0`: nothing is held or looked up; redaction is the same."""
    with FakeUpstream(latency=0.2) as up:
        env_vars = {**governed_env(up.url), "IRONRT_PII_RECALL_SIZE": "0"}
        with TempDaemon(offline=False, env=env_vars) as d:
            transport = httpx.HTTPTransport(uds=str(d.home / "ironrt.sock"))
            with httpx.Client(transport=transport, base_url="http://ironrt", timeout=30) as c:
                env = Env(d, up, c, tmp_path)
                _, client = env.start(pii="redact")
                note = long_note(f"mail {EMAIL}")
                for _ in range(2):
                    ask(client, note)
                    assert EMAIL not in env.sent() and "[EMAIL_1]" in env.sent()
                assert recall_lookups(c) == {"hit": 0, "miss": 0}
                text = c.get("/metrics").text
                assert "ironrt_pii_recall_limit_bytes 0.0" in text
                assert "ironrt_pii_recall_bytes 0.0" in text


def test_a_recalled_scan_is_never_one_made_under_another_agents_rules(env: Env) -> None:
    """The same long text through agents whose rules differ (an agent's own entity, a
    narrower selection): each gets what its own rules find, in either order."""
    own = env.tmp / "agent-pii-recall.toml"
    own.write_text("[entities.CODENAME]\nterms = ['Kestrel']\n")
    note = long_note("project Kestrel", f"mail {EMAIL}", f"card {CARD}")
    _, plain = env.start(pii="redact")
    _, with_file = env.start(pii="redact", pii_file=str(own))
    _, email_only = env.start(pii="redact", pii_types={"email": "redact", "*": "off"})
    ask(plain, note)
    assert "Kestrel" in env.sent() and "[EMAIL_1]" in env.sent() and CARD not in env.sent()
    ask(with_file, note)
    assert "Kestrel" not in env.sent() and "[CODENAME_1]" in env.sent()
    ask(email_only, note)
    assert "[EMAIL_1]" in env.sent() and CARD in env.sent() and "Kestrel" in env.sent()
    ask(plain, note)  # and back: the first agent's rules again
    assert "Kestrel" in env.sent() and CARD not in env.sent()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"pii_types": {"EMIAL": "redact"}}, "pii_types", "did you mean EMAIL"),
        ({"pii_types": {"EMAIL": "hide"}}, "pii_types", "hide"),
        ({"pii_types": {"CODENAME": "redact"}}, "pii_types", "unknown PII type"),
        ({"pii_file": "/nonexistent/pii.toml"}, "pii_file", "no such file"),
        ({"pii_file": "relative.toml"}, "pii_file", "absolute path"),
    ],
)
def test_bad_pii_settings_are_refused_and_start_nothing(
    env: Env, body: dict[str, Any], field: str, message: str
) -> None:
    before = len(env.control.get("/v1/agents").json()["agents"])
    r = env.control.post(
        "/v1/agents", json={"command": [sys.executable, "-c", "pass"], "cwd": "/", **body}
    )
    assert r.status_code in (400, 422), r.text
    assert message in r.text
    assert len(env.control.get("/v1/agents").json()["agents"]) == before


def test_an_invalid_agent_pii_file_is_refused_with_what_to_fix(env: Env) -> None:
    bad = env.tmp / "bad-pii.toml"
    bad.write_text("[entities.ORDER]\npattern = 'ORD-[0-9]+'\n")
    r = env.control.post(
        "/v1/agents",
        json={"command": [sys.executable, "-c", "pass"], "cwd": "/", "pii_file": str(bad)},
    )
    assert r.status_code == 400 and "bound every repetition" in r.json()["error"]["message"]


def test_pii_types_change_on_a_running_agent_from_the_next_call(env: Env) -> None:
    agent_id, client = env.start(pii="redact")
    ask(client, f"call {PHONE}")
    assert PHONE not in env.sent()
    r = env.control.patch(f"/v1/agents/{agent_id}", json={"pii_types": {"PHONE": "off"}})
    assert r.status_code == 200, r.text
    ask(client, f"call {PHONE} or mail {EMAIL}")
    assert PHONE in env.sent() and EMAIL not in env.sent()
    r = env.control.patch(f"/v1/agents/{agent_id}", json={"pii_types": {"PHNOE": "off"}})
    assert r.status_code == 400 and "PHONE" in r.text


def test_a_detected_call_refused_before_it_is_sent_still_reports_its_pii(env: Env) -> None:
    """Detecting only, the prompt is scanned while the upstream answers; a call refused
    before it goes (its budget cannot hold it) is never sent, and is reported all the same
    when it settles."""
    agent_id, client = env.start(pii="detect", budget_usd=0.000001)
    before = len(env.up.requests)
    with pytest.raises(openai.APIStatusError) as err:
        ask(client, f"mail {EMAIL} or call {PHONE}")
    assert err.value.status_code == 402, err.value.message
    # (at the budget's margin the provider may be asked to count the prompt's tokens)
    assert all(r.path != "/v1/chat/completions" for r in env.up.requests[before:])
    wait_until(lambda: alerts(env, agent_id), timeout=5)
    alert = alerts(env, agent_id)[0]
    assert alert["direction"] == "request" and alert["counts"] == {"EMAIL": 1, "PHONE": 1}
    assert alert["action"] == "detected"
