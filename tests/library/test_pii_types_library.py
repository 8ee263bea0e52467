"""Library mode with a PII type selection: `ironrt.protect(pii=..., pii_types=...)` and
`@ironrt.protect_agent(...)` through the real `openai` SDK against a real FakeUpstream
over TCP. Only the selected types are redacted on the way to the provider (what the
upstream received says so); the others pass untouched; the client gets its own words back.

The kernel is process-wide, so the scenario runs in a process of its own (as the other
library tests' do) with a home of its own, whose `pii.toml` declares a custom entity;
argument checks need no kernel and run here.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import ironrt

EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0132"
BADGE = "EMP-123456"
PROMPT = f"mail {EMAIL} or call {PHONE} about {BADGE}"

SCENARIO = f"""
import asyncio, json, sys
import openai, ironrt
from ironrt.testing import FakeUpstream

KEY = "sk-own-key-of-this-process-0c4e1b"
PROMPT = {PROMPT!r}
up = FakeUpstream(expect_key=KEY).start()
client = openai.OpenAI(base_url=up.url + "/v1", api_key=KEY, max_retries=0)
out = {{}}


def ask(c=client):
    reply = c.chat.completions.create(
        model="gpt-4o-mini", messages=[{{"role": "user", "content": PROMPT}}]
    )
    return reply.choices[0].message.content


def record(name, scope, reply, mark):
    sent = [r.body["messages"][-1]["content"] for r in up.requests[mark:]]
    out[name] = {{"id": scope.agent_id if scope else None, "sent": sent, "reply": reply}}


mark = len(up.requests)
with ironrt.protect(name="only-email", pii="redact", pii_types="email") as p:
    reply = ask()
record("only_email", p, reply, mark)

mark = len(up.requests)
with ironrt.protect(name="every", pii="redact") as p:  # the control: no selection
    reply = ask()
record("every", p, reply, mark)

mark = len(up.requests)
with ironrt.protect(name="own-actions", pii="detect",
                    pii_types={{"phone": "redact", "employee_id": "redact"}}) as p:
    reply = ask()
record("own_actions", p, reply, mark)


mark = len(up.requests)
with ironrt.protect(name="detect-only", pii="detect") as p:  # scanned after the answer
    reply = ask()
record("detect_only", p, reply, mark)


@ironrt.protect_agent(name="decorated", pii="redact", pii_types=["employee_id", "email=off"])
def decorated():
    return ask()


mark = len(up.requests)
record("decorated", None, decorated(), mark)


async def main():
    aclient = openai.AsyncOpenAI(base_url=up.url + "/v1", api_key=KEY, max_retries=0)
    async with ironrt.protect(name="async", pii="redact", pii_types="phone") as p:
        reply = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=[{{"role": "user", "content": PROMPT}}]
        )
    return p, reply.choices[0].message.content


mark = len(up.requests)
p, reply = asyncio.run(main())
record("async", p, reply, mark)
up.stop()
from ironrt.pii.recall import RECALL
out["recall_budget"] = RECALL.budget  # the kernel's settings: IRONRT_PII_RECALL_SIZE
json.dump(out, open(sys.argv[1], "w"))
"""


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("pii-types")
    home = folder / "home"
    home.mkdir(mode=0o700)
    (home / "pii.toml").write_text("[entities.EMPLOYEE_ID]\npattern = 'EMP-[0-9]{6}'\n")
    script = folder / "scenario.py"
    script.write_text(SCENARIO)
    env = {k: v for k, v in os.environ.items() if k != "IRONRT_NO_AUTOSTART"}
    done = subprocess.run(
        [sys.executable, str(script), str(folder / "out.json")],
        env={**env, "IRONRT_HOME": str(home), "IRONRT_PII_RECALL_SIZE": "64KB"},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    found: dict[str, Any] = json.loads((folder / "out.json").read_text())
    with sqlite3.connect(home / "ironrt.db") as db:
        rows = db.execute("SELECT name, pii, pii_types FROM agents WHERE kind = 'library'")
        found["records"] = {name: (pii, types and json.loads(types)) for name, pii, types in rows}
        alerts = db.execute("SELECT agent_id, data FROM events WHERE kind = 'PiiAlert'")
        found["alerts"] = [(agent, json.loads(data)) for agent, data in alerts]
    return found


@pytest.mark.parametrize(
    ("scope", "upstream_got"),
    [
        ("only_email", f"mail [EMAIL_1] or call {PHONE} about {BADGE}"),
        ("every", "mail [EMAIL_1] or call [PHONE_1] about [EMPLOYEE_ID_1]"),  # the control
        ("own_actions", f"mail {EMAIL} or call [PHONE_1] about [EMPLOYEE_ID_1]"),
        ("decorated", f"mail {EMAIL} or call {PHONE} about [EMPLOYEE_ID_1]"),
        ("async", f"mail {EMAIL} or call [PHONE_1] about {BADGE}"),
    ],
)
def test_only_the_selected_types_are_redacted_upstream(
    seen: dict[str, Any], scope: str, upstream_got: str
) -> None:
    assert seen[scope]["sent"] == [upstream_got]
    # The placeholders are restored in the reply: the client gets its own words back.
    assert seen[scope]["reply"].endswith(f"You said: {PROMPT}")


def test_the_scopes_record_their_selection(seen: dict[str, Any]) -> None:
    assert seen["records"] == {
        "only-email": ("redact", {"EMAIL": "redact", "*": "off"}),
        "every": ("redact", None),
        "own-actions": ("detect", {"PHONE": "redact", "EMPLOYEE_ID": "redact"}),
        "detect-only": ("detect", None),
        "decorated": ("redact", {"EMPLOYEE_ID": "redact", "EMAIL": "off", "*": "off"}),
        "async": ("redact", {"PHONE": "redact", "*": "off"}),
    }


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"pii_types": "email=hide"}, "`pii_types`: email='hide': the action must be one of"),
        ({"pii_types": "emial"}, "`pii_types`: unknown PII type 'EMIAL' (did you mean EMAIL?)"),
        ({"pii_types": {"email": "nope"}}, "`pii_types`: email='nope': the action must be"),
        ({"pii_types": ""}, "`pii_types`: name at least one type"),
        ({"pii_types": 5}, "`pii_types` must be a string, a list of strings or a mapping"),
        ({"pii_types": ["email", 1]}, "`pii_types` must be a string, a list of strings"),
        ({"pii_types": "employee_id"}, "`pii_types`: unknown PII type 'EMPLOYEE_ID'"),
    ],
)
def test_bad_selections_are_refused_at_construction(
    kwargs: dict[str, Any], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRONRT_HOME", str(tmp_path))  # no pii.toml: the built-in types
    with pytest.raises(ValueError, match="^" + re.escape(says)):
        ironrt.protect(pii="redact", **kwargs)
    with pytest.raises(ValueError, match="^" + re.escape(says)):  # not at the first call
        ironrt.protect_agent(pii="redact", **kwargs)


def test_the_kernel_sizes_the_recall_as_its_settings_say(seen: dict[str, Any]) -> None:
    """`IRONRT_PII_RECALL_SIZE` in library mode: the kernel, the process's one, applies it."""
    assert seen["recall_budget"] == 64 * 1024


def test_a_detect_only_scope_reports_its_prompt_scanned_after_the_answer(
    seen: dict[str, Any],
) -> None:
    """Library mode leaves a detect-only prompt's scan for after the answer, as the daemon
    does: its request alert is stored all the same, counting what the prompt holds, and
    the prompt reached the provider as it was."""
    scope = seen["detect_only"]
    assert scope["sent"] == [PROMPT]
    requests = [
        data
        for agent, data in seen["alerts"]
        if agent == scope["id"] and data["direction"] == "request"
    ]
    assert len(requests) == 1, seen["alerts"]
    assert requests[0]["action"] == "detected"
    assert requests[0]["counts"] == {"EMAIL": 1, "EMPLOYEE_ID": 1, "PHONE": 1}
