"""What a call does with each type: the agent's selection, its scopes' floors, the files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ironrt.governance.ledger import Scope
from ironrt.pii.entities import EntityError
from ironrt.policies.pii_rules import RulesFiles, plan_for
from ironrt.testing import tagent
from ironrt.values import parse_pii_types


def test_a_bare_list_selects_those_types_and_turns_the_others_off() -> None:
    gov = tagent("a1", pii="redact")
    gov.pii_types = parse_pii_types("email, phone", "redact")
    plan = plan_for(gov)
    assert dict(plan.actions) == {"EMAIL": "redact", "PHONE": "redact"}
    assert plan.rules.types == frozenset({"EMAIL", "PHONE"})


def test_a_map_gives_each_type_its_action_and_the_rest_follow_the_mode() -> None:
    gov = tagent("a1", pii="detect")
    gov.pii_types = parse_pii_types("email=redact,secret=block,ip=off", "detect")
    plan = plan_for(gov)
    assert plan.actions["EMAIL"] == "redact" and plan.actions["SECRET"] == "block"
    assert plan.actions["PHONE"] == "detect" and "IP" not in plan.actions
    assert plan.redact == {"EMAIL"} and plan.block == {"SECRET"}
    assert plan.redact_rules.types == frozenset({"EMAIL"})


def test_a_scope_floor_makes_a_type_stricter_never_looser() -> None:
    project = Scope("project:team")
    gov = tagent("a1", pii="redact")
    gov.scopes = (Scope("agent:a1"), project, Scope("global"))
    project.apply({"pii_types": {"SECRET": "block"}}, 0.0)
    plan = plan_for(gov)
    assert plan.actions["SECRET"] == "block" and plan.actions["EMAIL"] == "redact"
    project.apply({"pii": "detect", "pii_types": None}, 0.0)  # looser than the agent's
    assert plan_for(gov).actions["EMAIL"] == "redact"
    gov.pii = "off"
    assert plan_for(gov).actions == {t: "detect" for t in plan_for(gov).actions}
    assert set(plan_for(gov).actions) == {"EMAIL", "PHONE", "CARD", "SSN", "IBAN", "IP", "SECRET"}


def test_the_plan_is_cached_until_a_setting_is_replaced() -> None:
    gov = tagent("a1", pii="redact")
    first = plan_for(gov)
    assert plan_for(gov) is first
    gov.pii_types = {"EMAIL": "block"}
    second = plan_for(gov)
    assert second is not first and second.block == {"EMAIL"}


def write(path: Path, text: str, stamp: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(stamp, stamp))


def test_rules_files_reread_a_changed_file_and_keep_the_last_good_one(tmp_path: Path) -> None:
    now = [0.0]
    home = tmp_path / "pii.toml"
    write(home, "[entities.NAME]\nterms = ['Jane Roe']\n", 1_000_000_000)
    files = RulesFiles(home, clock=lambda: now[0], recheck_s=2.0)
    assert files.rules_for(None).labels[-1] == "NAME"
    write(home, "[entities.CODE]\nterms = ['Falcon']\n", 2_000_000_000)
    assert files.rules_for(None).labels[-1] == "NAME"  # not looked at again yet
    now[0] = 3.0
    assert files.rules_for(None).labels[-1] == "CODE"
    same = files.rules_for(None)
    assert files.rules_for(None) is same  # one Rules per version: plans stay cached
    write(home, "[entities.CODE]\npattern = 'A+'\n", 3_000_000_000)  # now invalid
    now[0] = 6.0
    assert files.rules_for(None).labels[-1] == "CODE"  # the last good version stays
    home.unlink()
    now[0] = 9.0
    assert files.rules_for(None).labels[-1] == "SECRET"  # removed: no entities


def test_an_invalid_home_file_is_an_error_at_once(tmp_path: Path) -> None:
    home = tmp_path / "pii.toml"
    home.write_text("[entities.X]\npattern = '[0-9]+'\n")
    with pytest.raises(EntityError, match="bound every repetition"):
        RulesFiles(home)


def test_an_agent_file_adds_entities_and_never_valid_fails(tmp_path: Path) -> None:
    files = RulesFiles(None)
    own = tmp_path / "agent.toml"
    own.write_text("[entities.CODE]\nterms = ['Falcon']\n")
    assert files.rules_for(str(own)).labels[-1] == "CODE"
    assert files.rules_for(None).labels[-1] == "SECRET"
    bad = tmp_path / "bad.toml"
    bad.write_text("[entities.CODE]\nterms = []\n")
    with pytest.raises(EntityError):
        files.rules_for(str(bad))


def test_unknown_type_names_are_refused_with_the_closest_one(tmp_path: Path) -> None:
    own = tmp_path / "agent.toml"
    own.write_text("[entities.EMPLOYEE_ID]\npattern = 'E[0-9]{4}'\n")
    files = RulesFiles(None)
    files.check_types({"EMAIL": "redact", "EMPLOYEE_ID": "redact", "*": "off"}, str(own))
    with pytest.raises(ValueError, match=r"'EMIAL'.*did you mean EMAIL"):
        files.check_types({"EMIAL": "redact"}, None)
    with pytest.raises(ValueError, match="EMPLOYEE_ID"):
        files.check_types({"EMPLOYEE_ID": "redact"}, None)  # not without the agent's file


@pytest.mark.parametrize(
    ("spec", "message"),
    [("email=hide", "action must be one of"), ("e-mail", "not a PII type name"), ("", "at least")],
)
def test_bad_selections_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_pii_types(spec, "redact")
