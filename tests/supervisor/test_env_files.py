"""`--env-file`: secrets an agent needs reach it at every start, and never the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironrt.errors import IronrtError, StartFailed
from ironrt.tempdaemon import TempDaemon, wait_until

SECRET = "hunter2-a8f3c1d9e7"
ROTATED = "correct-horse-5b2e9f"


@pytest.fixture(scope="module")
def daemon() -> Iterator[TempDaemon]:
    with TempDaemon() as d:
        yield d


def probe(tmp_path: Path) -> tuple[str, Path]:
    """An agent that writes the variables it got to a file (its log stays clean), then
    lives on."""
    out = tmp_path / "seen.json"
    script = tmp_path / "probe.py"
    script.write_text(
        "import json, os, sys, time\n"
        "keys = ('DB_PASSWORD', 'SHARED', 'OPENAI_API_KEY', 'IC_TOKEN', 'IRONRT_HOME')\n"
        "seen = {k: os.environ.get(k) for k in keys}\n"
        f"open({str(out)!r} + '.tmp', 'w').write(json.dumps(seen))\n"
        f"os.rename({str(out)!r} + '.tmp', {str(out)!r})\n"
        "time.sleep(120)\n"
    )
    return str(script), out


def seen(out: Path) -> dict[str, str | None]:
    wait_until(out.exists, timeout=15)
    found: dict[str, str | None] = json.loads(out.read_text())
    out.unlink()
    return found


def stored_bytes(daemon: TempDaemon) -> bytes:
    return b"".join(p.read_bytes() for p in daemon.home.iterdir() if p.name.startswith("ironrt.db"))


def test_values_reach_the_agent_at_each_start_and_never_the_database(
    daemon: TempDaemon, tmp_path: Path
) -> None:
    script, out = probe(tmp_path)
    first = tmp_path / "first.env"
    second = tmp_path / "second.env"
    first.write_text(f"# secrets\nexport DB_PASSWORD={SECRET}\nSHARED=from-first\n")
    # A provider key or an ironrt setting in a file is scrubbed like one in the environment.
    second.write_text(
        "SHARED='from second'\nOPENAI_API_KEY=sk-proj-never-reaches-an-agent\n"
        "IRONRT_HOME=/another/home\n"
    )
    agent_id = daemon.rt.start_agent(script, env_files=[str(first), str(second)])
    got = seen(out)
    assert got["DB_PASSWORD"] == SECRET
    assert got["SHARED"] == "from second"  # later files win
    assert got["OPENAI_API_KEY"] == got["IC_TOKEN"] and got["IRONRT_HOME"] is None
    assert daemon.rt.get_agent(agent_id).env_files == [str(first), str(second)]
    assert SECRET.encode() not in stored_bytes(daemon)
    assert b"never-reaches" not in stored_bytes(daemon)
    assert str(first).encode() in stored_bytes(daemon)

    first.write_text(f"DB_PASSWORD={ROTATED}\n")  # rotated: read again at the next start
    daemon.rt.restart_agent(agent_id)
    assert seen(out)["DB_PASSWORD"] == ROTATED
    assert ROTATED.encode() not in stored_bytes(daemon)

    first.unlink()  # gone before a restart: the restart fails saying why
    with pytest.raises(StartFailed) as failed:
        daemon.rt.restart_agent(agent_id)
    assert failed.value.field == "env_files" and str(first) in failed.value.message
    assert daemon.rt.health().ok
    daemon.rt.remove_agent(agent_id, force=True)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "No such file"),
        ("GOOD=1\nthis is not a variable\n", "line 2"),
        ("", "not a regular file"),  # a folder
    ],
)
def test_a_file_that_cannot_be_used_fails_the_start_and_records_nothing(
    daemon: TempDaemon, tmp_path: Path, content: str | None, why: str
) -> None:
    script, _ = probe(tmp_path)
    path = tmp_path / "agent.env"
    if why == "not a regular file":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    before = len(daemon.rt.list_agents())
    with pytest.raises(StartFailed) as failed:
        daemon.rt.start_agent(script, env_files=[str(path)])
    assert failed.value.field == "env_files" and why in failed.value.message
    assert len(daemon.rt.list_agents()) == before


def test_relative_paths_and_bad_values_in_the_clients(daemon: TempDaemon, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="sequence of paths"):
        daemon.rt.start_agent("x.py", env_files="one.env")  # type: ignore[arg-type]
    with pytest.raises(IronrtError, match="at most 32"):
        daemon.rt.start_agent("x.py", env_files=[f"/{i}.env" for i in range(33)])
    # The CLI resolves a relative path where it runs, as a shell user expects.
    script, out = probe(tmp_path)
    (tmp_path / "rel.env").write_text(f"DB_PASSWORD={SECRET}\n")
    env = {**daemon.env, "IRONRT_NO_AUTOSTART": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ironrt", "start", script, "--env-file", "rel.env"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    agent_id = done.stdout.strip()
    assert seen(out)["DB_PASSWORD"] == SECRET
    assert daemon.rt.get_agent(agent_id).env_files == [os.path.join(tmp_path, "rel.env")]
    daemon.rt.remove_agent(agent_id, force=True)
