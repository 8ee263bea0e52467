"""PII per type from the command line and both clients: `ironrt start --pii-types`,
`--pii-file`, `ironrt set --pii-types`, `ironrt limits set SCOPE --pii --pii-types`, what
`metrics`, `ps --json` and `limits` show, and typos refused with nothing changed.

One daemon serves the module, calling a FakeUpstream over TCP (not offline), so the last
test can check what the provider received from a real agent: the type selected redacted,
the type not selected untouched.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironrt import AsyncRuntime, InvalidRequest, Runtime
from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream
from tests.cli.test_cli import ID, one_line_error
from tests.router.helpers import governed_env

EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0132"
EVERY = {"EMAIL", "PHONE", "CARD", "SSN", "IBAN", "SECRET"}
PII_TOML = """
[entities.EMPLOYEE_ID]
pattern = 'EMP-[0-9]{6}'
"""


@pytest.fixture(scope="module")
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def d(up: FakeUpstream) -> Iterator[TempDaemon]:
    with TempDaemon(offline=False, env=governed_env(up.url)) as daemon:
        yield daemon


def run(d: TempDaemon, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ironrt", *args],
        cwd=cwd,
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def ok(d: TempDaemon, *args: str, cwd: Path | None = None) -> str:
    done = run(d, *args, cwd=cwd)
    assert done.returncode == 0, f"ironrt {' '.join(args)}: {done.stderr}"
    return done.stdout


def sleeper(d: TempDaemon, name: str, *options: str, cwd: Path | None = None) -> str:
    """A long sleep started by `ironrt start` with these options."""
    agent_id = ok(d, "start", "--name", name, *options, "--", "sleep", "120", cwd=cwd).strip()
    assert ID.match(agent_id), agent_id
    return agent_id


def rows(d: TempDaemon, ref: str) -> dict[str, str]:
    """`ironrt metrics ID` (the agent's detail view) as its rows."""
    found = {}
    for line in ok(d, "metrics", ref).splitlines():
        key, _, value = line.strip().partition("  ")
        found[key] = value.strip()
    return found


def test_start_with_a_selection_shows_it(d: TempDaemon) -> None:
    a = sleeper(d, "sel-all", "--pii", "redact", "--pii-types", "email,phone,card,ssn,iban,secret")
    b = sleeper(d, "sel-own", "--pii-types", "email=redact,secret=block")
    shown = {x["name"]: x for x in json.loads(ok(d, "ps", "--json"))}
    every = {t: "redact" for t in EVERY}
    assert shown["sel-all"]["pii"] == "redact"
    assert shown["sel-all"]["pii_types"] == {**every, "*": "off"}
    assert shown["sel-own"]["pii"] == "detect"  # the types not named follow it
    assert shown["sel-own"]["pii_types"] == {"EMAIL": "redact", "SECRET": "block"}
    detail = rows(d, "sel-all")
    assert detail["pii"] == "redact"
    assert detail["pii types"] == (
        "card=redact, email=redact, iban=redact, phone=redact, secret=redact, ssn=redact, *=off"
    )
    assert "pii file" not in detail
    for ref in (a, b):
        d.rt.remove_agent(ref, force=True)


def test_set_resolves_bare_names_and_none_clears(d: TempDaemon) -> None:
    agent_id = d.rt.start_agent(["sleep", "120"], name="set-me", pii="block")
    # A bare name gets the agent's own `pii` (fetched: none is given here).
    line = ok(d, "set", "set-me", "--pii-types", "email").strip()
    assert line.endswith("pii block (email=block, *=off), rpm -, tpm -"), line
    assert d.rt.get_agent(agent_id).pii_types == {"EMAIL": "block", "*": "off"}
    # ...or the --pii given in the same command.
    ok(d, "set", "set-me", "--pii", "redact", "--pii-types", "email,secret=block")
    agent = d.rt.get_agent(agent_id)
    assert agent.pii == "redact"
    assert agent.pii_types == {"EMAIL": "redact", "SECRET": "block", "*": "off"}
    assert rows(d, "set-me")["pii types"] == "email=redact, secret=block, *=off"
    line = ok(d, "set", "set-me", "--pii-types", "none").strip()
    assert "pii redact," in line
    assert d.rt.get_agent(agent_id).pii_types is None
    d.rt.remove_agent(agent_id, force=True)


def test_typos_are_clear_errors_and_change_nothing(d: TempDaemon, tmp_path: Path) -> None:
    kept = d.rt.start_agent(["sleep", "120"], name="typo-kept", pii_types={"email": "redact"})
    before = {a.id for a in d.rt.list_agents()}
    # An unknown type: the daemon's refusal, naming the closest type and the list.
    for args in (
        ("start", "--name", "typo-new", "--pii-types", "email,emial", "--", "sleep", "9"),
        ("set", "typo-kept", "--pii-types", "emial=block"),
        ("limits", "set", "project:typo", "--pii", "block", "--pii-types", "emial"),
    ):
        line = one_line_error(run(d, *args))
        assert "unknown PII type 'EMIAL' (did you mean EMAIL?)" in line, line
        assert "EMAIL, PHONE, CARD, SSN, IBAN, IP, SECRET" in line, line
    # A bad action: the CLI's own usage error, before any request.
    for args in (
        ("start", "--name", "typo-new", "--pii-types", "email=hide", "--", "sleep", "9"),
        ("set", "typo-kept", "--pii-types", "email=hide"),
        ("limits", "set", "project:typo", "--pii-types", "email=hide"),
    ):
        line = one_line_error(run(d, *args), code=2)
        assert "Invalid value for '--pii-types': email='hide': the action must be one of " in line
        assert "off, detect, redact, block" in line, line
    # A pii file that is not there, named absolute; a scope's bare name with no action.
    line = one_line_error(
        run(d, "start", "--pii-file", "nope.toml", "--", "sleep", "9", cwd=tmp_path), code=2
    )
    assert f"'--pii-file': no such file: {tmp_path / 'nope.toml'}" in line, line
    line = one_line_error(run(d, "limits", "set", "project:typo", "--pii-types", "secret"))
    assert "'secret' has no action: give `pii`" in line, line

    assert {a.id for a in d.rt.list_agents()} == before  # nothing started
    agent = d.rt.get_agent(kept)
    assert (agent.pii, agent.pii_types) == ("detect", {"EMAIL": "redact"})
    # (The daemon lists a scope it was asked about, even when nothing was set on it.)
    typo = [x for x in d.rt.limits() if x.scope == "project:typo"]
    assert all((x.pii, x.pii_types) == (None, None) for x in typo)
    d.rt.remove_agent(kept, force=True)


def test_limits_set_a_project_floor_then_clear_it(d: TempDaemon) -> None:
    s = json.loads(
        ok(
            d,
            "limits",
            "set",
            "project:pfloor",
            "--pii",
            "block",
            "--pii-types",
            "secret",
            "--json",
        )
    )
    assert (s["pii"], s["pii_types"]) == ("block", {"SECRET": "block", "*": "off"})
    # A bare name gets the scope's own floor (asked of the daemon) when no --pii is given.
    line = ok(d, "limits", "set", "project:pfloor", "--pii-types", "secret,card=redact").strip()
    assert line == "project:pfloor: pii at least block (card=redact, secret=block, *=off); spent $0"
    table = ok(d, "limits").splitlines()
    assert "PII" in table[0].split()
    (row,) = [r for r in table if r.startswith("project:pfloor")]
    assert "block (card=redact, secret=block, *=off)" in row
    (listed,) = [x for x in json.loads(ok(d, "limits", "--json")) if x["scope"] == "project:pfloor"]
    assert listed["pii_types"] == {"SECRET": "block", "CARD": "redact", "*": "off"}

    s = json.loads(ok(d, "limits", "unset", "project:pfloor", "pii-types", "pii", "--json"))
    assert (s["pii"], s["pii_types"]) == (None, None)


def test_an_agents_own_pii_file_adds_its_entities(d: TempDaemon, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "pii.toml").write_text(PII_TOML)
    options = ("--pii-file", "conf/pii.toml", "--pii-types", "employee_id=redact,email")
    agent_id = sleeper(d, "own-file", *options, cwd=tmp_path)  # relative to the caller's cwd
    agent = d.rt.get_agent(agent_id)
    assert agent.pii_file == str(tmp_path / "conf" / "pii.toml")
    assert agent.pii_types == {"EMPLOYEE_ID": "redact", "EMAIL": "detect", "*": "off"}
    detail = rows(d, agent_id)
    assert detail["pii file"] == str(tmp_path / "conf" / "pii.toml")
    assert detail["pii types"] == "email=detect, employee_id=redact, *=off"
    # Without the file, the entity is no type of the agent's.
    line = one_line_error(run(d, "start", "--pii-types", "employee_id", "--", "sleep", "9"))
    assert "unknown PII type 'EMPLOYEE_ID'" in line
    d.rt.remove_agent(agent_id, force=True)


# ---- both clients -------------------------------------------------------------------------


def test_the_sync_client_takes_every_form(d: TempDaemon, tmp_path: Path) -> None:
    (tmp_path / "pii.toml").write_text(PII_TOML)
    rt = Runtime(home=d.home, autostart=False)
    a = rt.start_agent(["sleep", "120"], name="rt-str", pii="redact", pii_types="email,phone")
    assert rt.get_agent(a).pii_types == {"EMAIL": "redact", "PHONE": "redact", "*": "off"}
    b = rt.start_agent(
        ["sleep", "120"],
        name="rt-map",
        pii_types={"employee_id": "block", "email": "redact"},
        pii_file=tmp_path / "pii.toml",
    )
    agent = rt.get_agent(b)
    assert agent.pii_types == {"EMPLOYEE_ID": "block", "EMAIL": "redact"}
    assert agent.pii_file == str(tmp_path / "pii.toml")

    # update: a bare name gets the agent's `pii` (fetched), or the one given with it.
    assert rt.update_agent(a, pii_types=["secret"]).pii_types == {"SECRET": "redact", "*": "off"}
    changed = rt.update_agent(a, pii="block", pii_types=["secret", "email=detect"])
    assert changed.pii_types == {"SECRET": "block", "EMAIL": "detect", "*": "off"}
    assert rt.update_agent(a, pii_types=None).pii_types is None

    s = rt.set_limits("project:rtc", pii="redact", pii_types=["secret", "card=block"])
    assert (s.pii, s.pii_types) == ("redact", {"SECRET": "redact", "CARD": "block", "*": "off"})
    s = rt.set_limits("project:rtc", pii_types="email")  # the scope's floor, fetched
    assert s.pii_types == {"EMAIL": "redact", "*": "off"}
    s = rt.unset_limits("project:rtc", "pii", "pii_types")
    assert (s.pii, s.pii_types) == (None, None)

    with pytest.raises(InvalidRequest, match="email='hide': the action must be one of"):
        rt.start_agent(["sleep", "1"], name="rt-bad", pii_types="email=hide")
    with pytest.raises(InvalidRequest, match="did you mean EMAIL") as refused:
        rt.update_agent(a, pii_types={"emial": "redact"})
    assert refused.value.field == "pii_types"
    with pytest.raises(InvalidRequest) as missing:
        rt.start_agent(["sleep", "1"], name="rt-bad", pii_file=tmp_path / "none.toml")
    assert missing.value.field == "pii_file"
    with pytest.raises(InvalidRequest, match="has no action"):
        rt.set_limits("project:rtc-none", pii_types="secret")
    assert "rt-bad" not in {x.name for x in rt.list_agents()}
    assert rt.get_agent(a).pii_types is None
    for ref in (a, b):
        rt.remove_agent(ref, force=True)


async def test_the_async_client_takes_every_form(d: TempDaemon) -> None:
    async with AsyncRuntime(home=d.home, autostart=False) as rt:
        a = await rt.start_agent(["sleep", "120"], name="art", pii_types=["email", "iban=block"])
        assert (await rt.get_agent(a)).pii_types == {"EMAIL": "detect", "IBAN": "block", "*": "off"}
        updated = await rt.update_agent(a, pii="redact", pii_types="phone")
        assert updated.pii_types == {"PHONE": "redact", "*": "off"}
        updated = await rt.update_agent(a, pii_types="email")  # the agent's pii, fetched
        assert updated.pii_types == {"EMAIL": "redact", "*": "off"}
        s = await rt.set_limits("project:artc", pii="block", pii_types={"secret": "block"})
        assert (s.pii, s.pii_types) == ("block", {"SECRET": "block"})
        with pytest.raises(InvalidRequest, match="did you mean EMAIL"):
            await rt.set_limits("project:artc", pii_types="emial=block")
        assert (await rt.get_limits("project:artc")).pii_types == {"SECRET": "block"}
        await rt.remove_limits("project:artc")
        await rt.remove_agent(a, force=True)


# ---- end to end: what the provider receives ----------------------------------------------

CHAT = """
import json, openai, sys
reply = openai.OpenAI(max_retries=0).chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": sys.argv[1]}]
)
print(json.dumps({"reply": reply.choices[0].message.content}))
"""


def test_only_the_selected_type_is_redacted_on_the_way_to_the_provider(
    d: TempDaemon, up: FakeUpstream, tmp_path: Path
) -> None:
    script = tmp_path / "chat.py"
    script.write_text(textwrap.dedent(CHAT))
    runs = {
        "e2e-email": ("--pii", "redact", "--pii-types", "email"),
        "e2e-every": ("--pii", "redact"),  # the control: the phone is found when selected
    }
    started = {
        name: ok(d, "start", "--name", name, *options, str(script), "--", prompt(name)).strip()
        for name, options in runs.items()
    }
    sent = {}
    for name, agent_id in started.items():
        final = d.rt.wait(agent_id, timeout=60)
        out = d.rt.logs(agent_id)
        assert final.exit_code == 0, out
        # The agent gets its own words back, whatever went upstream.
        assert prompt(name) in json.loads(out.strip().splitlines()[-1])["reply"]
        (body,) = [r.body for r in up.requests if name in json.dumps(r.body)]
        sent[name] = body["messages"][-1]["content"]
    assert sent["e2e-email"] == f"e2e-email: mail [EMAIL_1] or call {PHONE}"
    assert sent["e2e-every"] == "e2e-every: mail [EMAIL_1] or call [PHONE_1]"


def prompt(name: str) -> str:
    return f"{name}: mail {EMAIL} or call {PHONE}"
