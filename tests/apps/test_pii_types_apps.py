"""`pii_types` and `pii_file` in an apps file (`ironrt.toml`), run as a user runs `ironrt up`
against a real offline daemon: the string, list and table forms, an agent's own pii.toml
relative to the file's folder, the home's entities, a changed selection restarting only
its agent, and a bad value refused naming the entry and the key with nothing started.

One daemon serves the module; each test uses its own agent names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ironrt.apps.load import read_apps, resolve_apps
from ironrt.apps.problems import AppsFileError
from ironrt.tempdaemon import TempDaemon
from tests.cli.test_cli import one_line_error

SLEEP = 'command = ["sleep", "120"]\n'
EMPLOYEE = "[entities.EMPLOYEE_ID]\npattern = 'EMP-[0-9]{6}'\n"
BADGE = "[entities.BADGE]\nterms = ['Falcon']\n"


@pytest.fixture(scope="module")
def d() -> Iterator[TempDaemon]:
    daemon = TempDaemon()
    (daemon.home / "pii.toml").write_text(BADGE)  # the home's entity: every agent's type
    with daemon:
        yield daemon


def write(folder: Path, text: str) -> Path:
    (folder / "conf").mkdir(exist_ok=True)
    (folder / "conf" / "pii.toml").write_text(EMPLOYEE)
    path = folder / "ironrt.toml"
    path.write_text(text)
    return path


def up(d: TempDaemon, file: Path) -> dict[str, dict[str, Any]]:
    done = d.cli("up", str(file), "--json", timeout=30)
    assert done.returncode == 0, done.stderr
    return {o["name"]: o for o in json.loads(done.stdout)["agents"]}


def forms(str_types: str = '"email,phone"', list_types: str = '["email", "secret=block"]') -> str:
    return f"""
[agents.pa-str]
{SLEEP}pii = "redact"
pii_types = {str_types}

[agents.pa-list]
{SLEEP}pii_types = {list_types}

[agents.pa-table]
{SLEEP}pii_types = {{ email = "redact", secret = "block", employee_id = "redact", badge = "block" }}
pii_file = "conf/pii.toml"
"""


def test_the_three_forms_and_a_relative_pii_file(d: TempDaemon, tmp_path: Path) -> None:
    file = write(tmp_path, forms())
    first = up(d, file)
    assert {n: o["action"] for n, o in first.items()} == dict.fromkeys(first, "started")
    got = {n: d.rt.get_agent(o["id"]) for n, o in first.items()}
    assert got["pa-str"].pii == "redact"
    assert got["pa-str"].pii_types == {"EMAIL": "redact", "PHONE": "redact", "*": "off"}
    assert got["pa-list"].pii_types == {"EMAIL": "detect", "SECRET": "block", "*": "off"}
    table = got["pa-table"]
    assert table.pii_types == {
        "EMAIL": "redact",
        "SECRET": "block",
        "EMPLOYEE_ID": "redact",
        "BADGE": "block",
    }
    assert table.pii_file == str(tmp_path / "conf" / "pii.toml")  # the file's folder's
    assert all(a.pii_file is None for n, a in got.items() if n != "pa-table")

    # The same selection spelt another way is the same spec; a changed one restarts its
    # agent (a new digest), and only that one.
    write(tmp_path, forms(str_types='["phone", "EMAIL"]', list_types='"email,secret=redact"'))
    second = up(d, file)
    assert {n: o["action"] for n, o in second.items()} == {
        "pa-str": "up_to_date",
        "pa-list": "restarted",
        "pa-table": "up_to_date",
    }
    assert d.rt.get_agent(second["pa-list"]["id"]).pii_types == {
        "EMAIL": "detect",
        "SECRET": "redact",
        "*": "off",
    }
    # Another pii file is another spec too.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "pii.toml").write_text(EMPLOYEE)
    file.write_text(file.read_text().replace('"conf/pii.toml"', '"other/pii.toml"'))
    third = up(d, file)
    assert third["pa-table"]["action"] == "restarted"
    assert third["pa-str"]["action"] == third["pa-list"]["action"] == "up_to_date"
    assert d.rt.get_agent(third["pa-table"]["id"]).pii_file == str(tmp_path / "other/pii.toml")
    assert d.cli("down", str(file)).returncode == 0


GOOD = f"[agents.bad-first]\n{SLEEP}"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            'pii_types = "email=hide"',
            "agents.bad-x.pii_types: email='hide': the action must be one of off, detect, "
            "redact, block",
        ),
        (
            'pii_types = { email = "hidden" }',
            "agents.bad-x.pii_types: email='hidden': the action must be one of",
        ),
        (
            'pii_types = "emial,phone"',
            "agents.bad-x.pii_types: unknown PII type 'EMIAL' (did you mean EMAIL?); the types "
            "are EMAIL, PHONE, CARD, SSN, IBAN, IP, SECRET, BADGE, or * for every other type",
        ),
        (
            'pii_types = "employee_id"',  # an entity of a pii file this entry does not name
            "agents.bad-x.pii_types: unknown PII type 'EMPLOYEE_ID'",
        ),
        ('pii_types = ""', "agents.bad-x.pii_types: name at least one type"),
        ("pii_types = 5", 'agents.bad-x.pii_types: expected PII types: "email,phone", a list'),
        ('pii_types = ["email", 2]', "agents.bad-x.pii_types: expected PII types:"),
        ('pii_file = "nope.toml"', "agents.bad-x.pii_file: no such file: "),
        (
            'pii_file = "ironrt.toml"',  # not a pii.toml: `agents` is no key of one
            "agents.bad-x.pii_file: /|ironrt.toml: Object contains unknown field `agents`",
        ),
        (
            'pii_typse = "email"',
            "agents.bad-x: unknown key `pii_typse` (did you mean `pii_types`?)",
        ),
    ],
)
def test_a_bad_value_names_the_entry_and_the_key(
    d: TempDaemon, tmp_path: Path, entry: str, expected: str
) -> None:
    file = write(tmp_path, f"{GOOD}\n[agents.bad-x]\n{SLEEP}{entry}\n")
    line = one_line_error(d.cli("up", str(file)), code=2)
    assert line.startswith(f"ironrt: {file}: "), line
    assert all(part in line for part in expected.split("|")), line
    assert not [a for a in d.rt.list_agents() if a.name.startswith("bad-")]


def test_the_digest_follows_the_selection_not_its_spelling(tmp_path: Path) -> None:
    def digest(extra: str) -> str:
        path = write(tmp_path, f"[agents.x]\n{SLEEP}{extra}\n")
        (app,) = resolve_apps(path, read_apps(path))
        return app.digest

    plain = digest("")
    as_text = digest('pii_types = "email,phone"')
    assert as_text != plain
    assert digest('pii_types = ["PHONE", " email "]') == as_text
    assert digest('pii_types = { email = "detect", phone = "detect", "*" = "off" }') == as_text
    assert digest('pii = "redact"\npii_types = "email,phone"') != as_text  # bare names: --pii
    assert digest('pii_types = "email=redact"') != digest('pii_types = "email=block"')
    with_file = digest('pii_file = "conf/pii.toml"')
    assert with_file != plain
    assert digest('pii_file = "./conf/../conf/pii.toml"') == with_file  # the same file
    # Outside the CLI, with no home named, a home entity is no known type.
    path = write(tmp_path, f'[agents.x]\n{SLEEP}pii_types = "badge=block"\n')
    with pytest.raises(AppsFileError, match=r"agents\.x\.pii_types: unknown PII type 'BADGE'"):
        resolve_apps(path, read_apps(path))
    home = tmp_path / "home"
    home.mkdir()
    (home / "pii.toml").write_text(BADGE)
    (app,) = resolve_apps(path, read_apps(path), home_pii=home / "pii.toml")
    assert app.spec.pii_types == {"BADGE": "block"}
