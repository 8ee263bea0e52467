"""What an agent can be given by name (`--env`, `env=`, an apps file's `env`), and the
proxy settings it inherits, through a real daemon, its socket and real agent processes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from ironrt.errors import StartFailed
from ironrt.tempdaemon import TempDaemon

SECRET = "sk-proj-this-value-must-appear-nowhere"

# Each would be dropped or overwritten without a word if it were not refused.
REFUSED = {
    "OPENAI_API_KEY": "holds a provider's real key, which never reaches an agent",
    "ANTHROPIC_API_KEY": "holds a provider's real key, which never reaches an agent",
    "AZURE_OPENAI_API_KEY": "holds a provider's real key, which never reaches an agent",
    "OPENAI_BASE_URL": "ironrt sets it for every agent",
    "ANTHROPIC_BASE_URL": "ironrt sets it for every agent",
    "IC_TOKEN": "ironrt sets it for every agent",
    "IRONRT_HOME": "it is an ironrt setting, which configures the daemon",
    "NOTIFY_SOCKET": "belongs to the service manager",
}


def test_a_variable_an_agent_cannot_have_is_refused_by_name_and_nothing_starts(
    daemon: TempDaemon,
) -> None:
    for name, why in REFUSED.items():
        with pytest.raises(StartFailed) as raised:
            daemon.rt.start_agent(["sleep", "60"], env={"FINE": "1", name: SECRET})
        assert raised.value.field == "env_overrides"
        assert str(raised.value).startswith(f"cannot set {name} for an agent: ")
        assert why in str(raised.value) and SECRET not in str(raised.value)
    done = daemon.cli("start", "--env", f"OPENAI_API_KEY={SECRET}", "--", "sleep", "60")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "ironrt: cannot set OPENAI_API_KEY for an agent: it holds a provider's real key, which"
        " never reaches an agent (the router adds it to each call): give it to the daemon, in"
        " its environment or keys.toml"
    ]
    assert daemon.rt.list_agents() == []
    for kept in ("daemon.log", "daemon.err", "ironrt.db"):
        assert SECRET.encode() not in (daemon.home / kept).read_bytes()


def test_an_agents_own_no_proxy_is_kept_and_extended(daemon: TempDaemon, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    script = tmp_path / "dump.py"
    script.write_text(
        "import json, os\n"
        f"json.dump(dict(os.environ), open({str(out)!r} + '.tmp', 'w'))\n"
        f"os.rename({str(out)!r} + '.tmp', {str(out)!r})\n"
    )
    agent_id = daemon.rt.start_agent(str(script), env={"NO_PROXY": "corp.example"})
    assert daemon.rt.wait(agent_id, timeout=20).exit_code == 0
    env = json.loads(out.read_text())
    assert env["NO_PROXY"] == env["no_proxy"] == "corp.example,127.0.0.1,localhost"


AGENT = """
import openai
r = openai.OpenAI(max_retries=0, timeout=20).chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "ping"}])
print("REPLY", r.choices[0].message.content)
"""


def test_a_proxy_for_the_agent_never_carries_its_calls_to_the_router(tmp_path: Path) -> None:
    """The router on a loopback address other than 127.0.0.1 (as on an interface's
    address or a host name), and the agent told to use a proxy that is not there: its
    calls still reach the router, because the router's own host is in its NO_PROXY."""
    dead = "http://127.0.0.1:9"  # discard: nothing listens
    proxies = {"HTTP_PROXY": dead, "HTTPS_PROXY": dead, "ALL_PROXY": dead}
    with TempDaemon(env={"IRONRT_ROUTER_HOST": "127.0.0.2"}) as d:
        assert d.router_url.startswith("http://127.0.0.2:")
        script = tmp_path / "agent.py"
        script.write_text(textwrap.dedent(AGENT))
        agent_id = d.rt.start_agent(str(script), env=proxies)
        final = d.rt.wait(agent_id, timeout=30)
        logs = d.rt.logs(agent_id)
        assert final.exit_code == 0, logs
        assert "REPLY This is an offline reply from ironrt" in logs
        assert d.rt.get_metrics(agent_id).llm_calls == 1
