"""Small pure pieces of the supervisor: environment, log rotation, states, name resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from ironrt.config import ConfigError, Settings
from ironrt.errors import AgentNotFound, AmbiguousAgent
from ironrt.governance.tokens import new_token, token_hash
from ironrt.protocol import Agent
from ironrt.protocol import AgentStatus as S
from ironrt.supervisor import states
from ironrt.supervisor.agents import resolve, unique_name
from ironrt.supervisor.environment import agent_environment
from ironrt.supervisor.restart import Decision, decide, pending
from ironrt.values import parse_size, parse_uptime
from tests import records


def test_environment_scrubs_every_provider_secret_even_from_overrides() -> None:
    base = {
        "OPENAI_API_KEY": "sk-real",
        "GROQ_API_KEY": "gsk-real",
        "IRONRT_HOME": "/x",
        "PATH": "/bin",
        "NO_PROXY": "corp.example",
    }
    env = agent_environment(
        base,
        agent_id="a1",
        token="ic-t",
        router_url="http://127.0.0.1:1",
        overrides={"ANTHROPIC_API_KEY": "sk-ant-real", "FOO": "bar"},
    )
    assert "GROQ_API_KEY" not in env and "IRONRT_HOME" not in env
    assert env["ANTHROPIC_API_KEY"] == "ic-t" and env["OPENAI_API_KEY"] == "ic-t"
    assert env["FOO"] == "bar" and env["PATH"] == "/bin"
    assert env["NO_PROXY"] == "corp.example,127.0.0.1,localhost"


def test_tokens_are_256_bit_and_hashed() -> None:
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 3 + 43
    assert token_hash(a) != a and len(token_hash(a)) == 64


def test_transitions() -> None:
    states.check(S.STARTING, S.RUNNING)
    states.check(S.EXITED, S.STARTING)
    with pytest.raises(states.IllegalTransition):
        states.check(S.STOPPED, S.RUNNING)


def test_resolve() -> None:
    rows = [("abc111", "web", False), ("abc222", "web", True), ("def333", "db", True)]
    assert resolve("abc111", rows) == "abc111"
    assert resolve("web", rows) == "abc222"  # the live one of that name
    assert resolve("def", rows) == "def333"
    with pytest.raises(AmbiguousAgent):
        resolve("abc", rows)
    with pytest.raises(AgentNotFound):
        resolve("zzz", rows)
    ended_twice = [("abc111", "job", False), ("abc222", "job", False)]
    with pytest.raises(AmbiguousAgent, match="abc111, abc222"):
        resolve("job", ended_twice)  # never a silent pick of one of them
    assert unique_name("web", {"web", "web-2"}) == "web-3"


def _agent(**fields: object) -> Agent:
    """An agent that just exited 1 under `on-failure`, capped at 2 unstable restarts."""
    defaults = {"status": S.EXITED, "exit_code": 1, "restart": "on-failure", "max_restarts": 2}
    return records.agent(**{**defaults, **fields})


def test_restart_decisions_follow_pm2() -> None:
    r = _agent()
    # Unstable runs count; the cap gives up on the third in a row, with doubling delays.
    assert [decide(r, 0.1, 1.0).delay_s for _ in range(2)] == [1.0, 2.0]
    assert r.unstable_restarts == 2
    assert decide(r, 0.1, 1.0) == Decision(False, True, 0.0)
    # A stable run resets the count and the backoff, even at the cap.
    assert decide(r, 6.0, 1.0) == Decision(True, False, 1.0) and r.unstable_restarts == 0
    # A clean exit restarts only under `always`; an unknown exit is a failure.
    assert decide(_agent(exit_code=0), 0.1, 1.0).restart is False
    assert decide(_agent(exit_code=0, restart="always"), 0.1, 1.0).restart is True
    assert decide(_agent(exit_code=None), None, 1.0).restart is True
    assert decide(_agent(restart="no", exit_code=None), None, 1.0).restart is False
    unlimited = _agent(max_restarts=None, unstable_restarts=10_000)
    assert decide(unlimited, 0.0, 1.0).restart and decide(unlimited, 0.0, 1.0).delay_s == 60.0
    assert pending(_agent()) and not pending(_agent(exit_code=0))


def test_sizes_and_uptimes_parse_as_documented() -> None:
    assert parse_size("1MB") == 1_048_576 and parse_size("512KB") == 524_288
    assert parse_size("10MiB") == 10 * 1_048_576 and parse_size("2048") == 2048
    assert parse_uptime("500ms") == 0.5 and parse_uptime("2m") == 120 and parse_uptime("5") == 5
    for bad in ("", "10", "1PB", "ten MB", "-1MB"):
        with pytest.raises(ValueError):
            parse_size(bad)
    for bad in ("", "5 parsecs", "-1s", "2d", "25h"):
        with pytest.raises(ValueError):
            parse_uptime(bad)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IRONRT_LOG_MAX_SIZE", "ten megs"),
        ("IRONRT_LOG_MAX_SIZE", "12"),
        ("IRONRT_LOG_KEEP", "0"),
        ("IRONRT_LOG_KEEP", "many"),
    ],
)
def test_bad_log_settings_name_the_setting(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.load({"IRONRT_HOME": str(tmp_path), name: value})
    (tmp_path / "config.toml").write_text(f'{name} = "{value}"\n')
    with pytest.raises(ConfigError, match=name):  # the same check for config.toml
        Settings.load({"IRONRT_HOME": str(tmp_path)})


def test_log_settings_from_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('IRONRT_LOG_MAX_SIZE = "1MB"\nIRONRT_LOG_KEEP = 5\n')
    settings = Settings.load({"IRONRT_HOME": str(tmp_path)})
    assert (settings.log_max_bytes, settings.log_keep) == (1_048_576, 5)
    env_wins = Settings.load({"IRONRT_HOME": str(tmp_path), "IRONRT_LOG_KEEP": "2"})
    assert env_wins.log_keep == 2
