"""The CLI a PM2 user trusts, through a real daemon and the real `ironrt` command: typos
refused before anything starts, `--` passing, fleet commands, followers that never revive
a daemon, and a start that says when the daemon does not do what this shell asks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ironrt import __version__
from ironrt.tempdaemon import TempDaemon, wait_until

AUTOSTART = {"IRONRT_NO_AUTOSTART": "0"}  # the tests' daemons forbid it; these allow it


def test_typos_are_refused_and_nothing_starts(daemon: TempDaemon, tmp_path: Path) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text("import time; time.sleep(60)\n")
    for typo in (["--buget", "5"], ["--min-uptim", "5s"], ["--projetc", "x"], ["--verbose"]):
        out = daemon.cli("start", str(agent), *typo)
        assert out.returncode == 2, out
        assert f"No such option: {typo[0]}" in out.stderr and "nothing was started" in out.stderr
    assert "--budget" in daemon.cli("start", str(agent), "--buget", "5").stderr  # did you mean
    assert daemon.rt.list_agents() == []


def test_double_dash_passes_everything_after_it_to_the_agent(
    daemon: TempDaemon, tmp_path: Path
) -> None:
    seen = tmp_path / "argv.json"
    agent = tmp_path / "agent.py"
    # Written whole, then renamed: the test waits for the name, never reads half a file.
    agent.write_text(
        "import json, os, sys\n"
        f"json.dump(sys.argv[1:], open({str(seen)!r} + '.tmp', 'w'))\n"
        f"os.rename({str(seen)!r} + '.tmp', {str(seen)!r})\n"
    )
    out = daemon.cli("start", str(agent), "input.txt", "--budget", "5", "--", "--verbose", "-n")
    assert out.returncode == 0, out.stderr
    agent_id = out.stdout.strip()
    wait_until(seen.exists, timeout=10)
    assert json.loads(seen.read_text()) == ["input.txt", "--verbose", "-n"]
    assert daemon.rt.get_agent(agent_id).budget_usd == 5.0
    out = daemon.cli("start", "--name", "shell", "--", "sh", "-c", "echo hi from sh")
    assert out.returncode == 0, out.stderr
    done = daemon.rt.wait("shell", timeout=10)
    assert done.status.value == "exited" and done.exit_code == 0
    assert "hi from sh" in daemon.rt.logs("shell")


def test_stop_restart_rm_several_or_all(daemon: TempDaemon) -> None:
    ids = [daemon.rt.start_agent(["sleep", "60"], name=f"s{i}") for i in range(3)]
    other = daemon.rt.start_agent(["sleep", "60"], name="other", project="p2")
    out = daemon.cli("stop", "s0", "s1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"stopped s0 ({ids[0]})", f"stopped s1 ({ids[1]})"]
    again = daemon.cli("stop", "s0")
    assert again.returncode == 0 and "had already ended" in again.stdout
    assert "stopped (user)" in again.stdout  # a graceful stop is no kill by SIGTERM
    out = daemon.cli("stop", "--project", "p2")
    assert out.returncode == 0 and out.stdout.strip() == f"stopped other ({other})"
    assert daemon.rt.get_agent("s2").status.live
    out = daemon.cli("restart", "all")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 4
    assert all(a.status.live for a in daemon.rt.list_agents())
    out = daemon.cli("stop", "all")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 4
    assert not any(a.status.live for a in daemon.rt.list_agents())
    assert daemon.cli("stop", "all", "s0").returncode == 1  # `all` stands alone
    out = daemon.cli("rm", "all")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 4
    assert daemon.rt.list_agents() == []


def test_a_typo_in_one_of_several_ids_acts_on_none(daemon: TempDaemon) -> None:
    daemon.rt.start_agent(["sleep", "60"], name="keep")
    out = daemon.cli("stop", "keep", "kepe")
    assert out.returncode == 1 and "kepe" in out.stderr
    assert daemon.rt.get_agent("keep").status.value in ("starting", "running")


def test_an_ambiguous_name_lists_the_candidates(daemon: TempDaemon) -> None:
    first = daemon.rt.start_agent(["true"], name="job")
    daemon.rt.wait(first, timeout=10)
    second = daemon.rt.start_agent(["true"], name="job")
    daemon.rt.wait(second, timeout=10)
    out = daemon.cli("rm", "job")
    assert out.returncode == 1
    assert first in out.stderr and second in out.stderr
    assert len(daemon.rt.list_agents()) == 2  # neither was removed
    assert daemon.cli("rm", first).returncode == 0
    assert daemon.cli("rm", "job").returncode == 0  # one left: no longer ambiguous


def test_all_is_no_agent_name(daemon: TempDaemon) -> None:
    out = daemon.cli("start", "--name", "all", "--", "sleep", "60")
    assert out.returncode != 0 and "reserved" in out.stderr
    assert daemon.rt.list_agents() == []


def test_followers_never_revive_a_stopped_daemon(daemon: TempDaemon) -> None:
    env = {**daemon.env, **AUTOSTART}
    follower = subprocess.Popen(
        [sys.executable, "-m", "ironrt", "events", "-f"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert "DaemonStarted" in follower.stdout.readline()  # it follows
        daemon.rt.shutdown_daemon(keep_agents=False, wait=30)
        _, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 1 and "daemon stopped" in err
    for command in (["top", "--once"], ["events", "-f"], ["logs", "x", "-f"]):
        out = daemon.cli(*command, env=AUTOSTART)
        assert out.returncode == 1, (command, out)
        assert not daemon.rt.ping(), command  # none of them started a daemon
    try:
        assert daemon.cli("events", "-n", "1", env=AUTOSTART).returncode == 0  # this one may
        assert daemon.rt.ping()
    finally:  # the daemon it started is not the fixture's: stop it here
        daemon.rt.shutdown_daemon(keep_agents=False, wait=30)


def test_start_warns_when_the_daemon_does_not_do_what_this_shell_asks(
    daemon: TempDaemon,
) -> None:
    out = daemon.cli("start", "--", "sleep", "60", env={"IRONRT_OFFLINE": "0"})
    assert out.returncode == 0, out.stderr
    assert "warning: IRONRT_OFFLINE=0 here but the daemon answers offline" in out.stderr
    assert "ironrt daemon stop --keep-agents" in out.stderr
    quiet = daemon.cli("start", "--", "sleep", "60")
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_start_warns_about_a_key_the_daemon_lacks() -> None:
    with TempDaemon(offline=False, env={"OPENAI_API_KEY": ""}) as daemon:
        out = daemon.cli("start", "--", "sleep", "60", env={"OPENAI_API_KEY": "sk-test-1234"})
        assert out.returncode == 0, out.stderr
        assert "OPENAI_API_KEY is set here but the daemon has no openai key" in out.stderr
        assert "sk-test-1234" not in out.stderr + out.stdout  # never the key itself


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ironrt", "--version"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and out.stdout.strip() == f"ironrt {__version__}"
