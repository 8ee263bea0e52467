"""Helpers for router tests: agent scripts run by a real daemon."""

from __future__ import annotations

import textwrap
from pathlib import Path

import openai

from ironrt.tempdaemon import TempDaemon, wait_until

OPENAI_KEY = "sk-proj-REALKEYnevershown0123456789abcdefABCDEF"
ANTHROPIC_KEY = "sk-ant-api03-REALKEYnevershown0123456789abcdef"


def governed_env(upstream_url: str, **more: str) -> dict[str, str]:
    """A daemon's environment holding real-looking keys and forwarding to a fake upstream,
    with no retries of its own (a test counts what reaches the upstream)."""
    return {
        "IRONRT_OPENAI_BASE_URL": upstream_url,
        "IRONRT_ANTHROPIC_BASE_URL": upstream_url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "IRONRT_RETRY_MAX_ATTEMPTS": "1",
        **more,
    }


def agent_script(tmp_path: Path, name: str, code: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return str(path)


def run_agent(d: TempDaemon, script: str, *args: str, timeout: float = 60, **kw: object) -> str:
    """Run an agent to completion; returns its output (asserting it exited 0)."""
    agent_id = d.rt.start_agent(script, list(args), **kw)  # type: ignore[arg-type]
    final = d.rt.wait(agent_id, timeout=timeout)
    out = d.rt.logs(agent_id, tail=10_000)
    assert final.exit_code == 0, out
    return out


def token_agent(d: TempDaemon, tmp_path: Path, **kw: object) -> tuple[str, str]:
    """A live agent that only publishes its IC_TOKEN: (agent id, token)."""
    target = tmp_path / "token"
    script = agent_script(
        tmp_path,
        "hold.py",
        f"""
        import os, time
        open({str(target)!r} + ".tmp", "w").write(os.environ["IC_TOKEN"])
        os.rename({str(target)!r} + ".tmp", {str(target)!r})
        time.sleep(120)
    """,
    )
    agent_id = d.rt.start_agent(script, **kw)  # type: ignore[arg-type]
    wait_until(target.exists, timeout=15)
    return agent_id, target.read_text()


def sdk_client(d: TempDaemon, token: str) -> openai.OpenAI:
    """The openai SDK in the test process, pointed at the daemon's router (no retries)."""
    return openai.OpenAI(base_url=d.router_url + "/v1", api_key=token, max_retries=0)
