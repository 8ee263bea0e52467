"""Per-agent resource limits through a real daemon and real agents: the memory restart
(PM2's `max_memory_restart`), RLIMIT_NOFILE and RLIMIT_CPU set before the agent's code
runs, bad values refused before anything is recorded, limits kept across daemon restarts.

One daemon serves the module (its sample interval 0.1 s, so a tree over its limit is seen
within a tenth of a second); each test looks only at the agents it started.
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ironrt.protocol import Event
from ironrt.tempdaemon import TempDaemon, wait_until
from tests.control.test_bad_input import raw

MiB = 1 << 20
#: The daemon's hard RLIMIT_NOFILE in the refusal test: lowered to this, so "above the
#: daemon's hard limit" is the same on every host.
DAEMON_HARD_NOFILE = 4096


@pytest.fixture(scope="module")
def daemon() -> Iterator[TempDaemon]:
    with TempDaemon(env={"IRONRT_SAMPLE_INTERVAL": "0.1"}) as d:
        yield d


def script(tmp_path: Path, name: str, code: str) -> str:
    path = tmp_path / name
    path.write_text(code)
    return str(path)


def events(daemon: TempDaemon, agent_id: str, kind: str) -> list[Event]:
    return [e for e in daemon.rt.events(agent=agent_id, limit=1000) if e.kind == kind]


def test_a_tree_over_its_memory_limit_is_restarted(daemon: TempDaemon, tmp_path: Path) -> None:
    # The first run grows to ~80 MiB and stays there; the next ones stay small. `--restart
    # no`: PM2 restarts on max_memory_restart whatever the policy, and so do we.
    marker = tmp_path / "grew"
    grows = script(
        tmp_path,
        "grows.py",
        "import pathlib, time\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.write_text('x')\n"
        "    ballast = b'x' * (80 << 20)\n"
        "time.sleep(600)\n",
    )
    agent_id = daemon.rt.start_agent(grows, max_memory=32 * MiB, cwd=str(tmp_path))
    assert daemon.rt.get_agent(agent_id).max_memory_bytes == 32 * MiB
    wait_until(lambda: daemon.rt.get_agent(agent_id).restarts == 1, timeout=20)
    wait_until(lambda: daemon.rt.get_agent(agent_id).status.value == "running", timeout=20)

    (exceeded,) = events(daemon, agent_id, "AgentMemoryExceeded")
    first_pid = events(daemon, agent_id, "AgentStarted")[0].pid
    assert exceeded.pid == first_pid
    assert exceeded.rss_bytes > 32 * MiB and exceeded.max_memory_bytes == 32 * MiB
    (killed,) = events(daemon, agent_id, "AgentKilled")
    assert killed.signal == signal.SIGTERM and killed.reason == "max_memory"
    (restarting,) = events(daemon, agent_id, "AgentRestarting")
    assert restarting.reason == "max_memory"

    # A new process, still supervised: sampled, under its limit, stopped on request.
    agent = daemon.rt.get_agent(agent_id)
    assert agent.pid is not None and agent.pid != first_pid and psutil.pid_exists(agent.pid)
    assert not psutil.pid_exists(first_pid)
    wait_until(lambda: daemon.rt.get_metrics(agent_id).rss_bytes > 0, timeout=10)
    assert daemon.rt.get_metrics(agent_id).rss_bytes < 32 * MiB
    assert daemon.rt.stop_agent(agent_id, timeout=5).status.value == "stopped"
    assert len(events(daemon, agent_id, "AgentMemoryExceeded")) == 1


def test_a_memory_loop_is_backed_off_and_capped(daemon: TempDaemon, tmp_path: Path) -> None:
    """An agent over its limit at every start is a crash loop: the restart policy's backoff
    and `max_restarts` apply to it as to any unstable run."""
    hog = script(tmp_path, "hog.py", "import time\nballast = b'x' * (80 << 20)\ntime.sleep(600)\n")
    agent_id = daemon.rt.start_agent(hog, max_memory=32 * MiB, max_restarts=1, cwd=str(tmp_path))
    agent = daemon.rt.wait(agent_id, timeout=20)
    assert agent.status.value == "failed" and agent.restarts == 1
    assert "memory limit" in (agent.error or "")
    assert len(events(daemon, agent_id, "AgentMemoryExceeded")) == 2
    (restarting,) = events(daemon, agent_id, "AgentRestarting")
    assert restarting.delay_s == 0.05  # IRONRT_RESTART_BACKOFF, as for a crash


def test_open_files_limit_reaches_the_agent_and_its_children(
    daemon: TempDaemon, tmp_path: Path
) -> None:
    out = tmp_path / "limits.json"
    child = tmp_path / "child.json"
    # It writes its own limits to argv[1], then runs itself as a child to write argv[2].
    probe = script(
        tmp_path,
        "probe.py",
        "import json, resource, subprocess, sys\n"
        "with open(sys.argv[1], 'w') as f:\n"
        "    json.dump(resource.getrlimit(resource.RLIMIT_NOFILE), f)\n"
        "if len(sys.argv) > 2:\n"
        "    subprocess.run([sys.executable, __file__, sys.argv[2]], check=True)\n",
    )
    agent_id = daemon.rt.start_agent(
        probe, [str(out), str(child)], max_open_files=64, cwd=str(tmp_path)
    )
    agent = daemon.rt.wait(agent_id, timeout=20)
    assert agent.exit_code == 0, daemon.rt.logs(agent_id)
    assert json.loads(out.read_text()) == [64, 64]
    assert json.loads(child.read_text()) == [64, 64]
    assert agent.max_open_files == 64


def test_cpu_limit_ends_a_busy_agent_and_its_policy_applies(
    daemon: TempDaemon, tmp_path: Path
) -> None:
    busy = script(
        tmp_path,
        "busy.py",
        # No core file in a test run, whatever the host's core pattern.
        "import resource\nresource.setrlimit(resource.RLIMIT_CORE, (0, 0))\nwhile True: pass\n",
    )
    agent_id = daemon.rt.start_agent(
        busy, max_cpu_seconds=1, restart="on-failure", min_uptime=0.1, cwd=str(tmp_path)
    )
    wait_until(lambda: events(daemon, agent_id, "AgentRestarting"), timeout=20)
    first = events(daemon, agent_id, "AgentKilled")[0]
    assert first.signal in (signal.SIGXCPU, signal.SIGKILL)
    assert first.exit_code is None
    # Restarted by its policy, and the new run has the limit again (soft 1 s, hard 2 s).
    wait_until(lambda: daemon.rt.get_agent(agent_id).restarts >= 1, timeout=10)
    pid = daemon.rt.get_agent(agent_id).pid
    assert pid is not None and pid != events(daemon, agent_id, "AgentStarted")[0].pid
    with contextlib.suppress(psutil.NoSuchProcess):  # it may have used its second again
        assert psutil.Process(pid).rlimit(psutil.RLIMIT_CPU) == (1, 2)
    assert daemon.rt.stop_agent(agent_id, timeout=5).status.value == "stopped"


def _lower_daemon_nofile(daemon: TempDaemon) -> None:
    assert daemon.proc is not None
    soft, _ = resource.prlimit(daemon.proc.pid, resource.RLIMIT_NOFILE)
    limits = (min(soft, DAEMON_HARD_NOFILE), DAEMON_HARD_NOFILE)
    resource.prlimit(daemon.proc.pid, resource.RLIMIT_NOFILE, limits)


BAD_BODIES = [
    ({"max_memory_bytes": 0}, "max_memory_bytes"),
    ({"max_memory_bytes": -1}, "max_memory_bytes"),
    ({"max_memory_bytes": 9223372036854775808}, "max_memory_bytes"),
    ({"max_memory_bytes": "512M"}, "max_memory_bytes"),  # a size is bytes in the API
    ({"max_open_files": 0}, "max_open_files"),
    ({"max_open_files": -64}, "max_open_files"),
    ({"max_open_files": 9223372036854775808}, "max_open_files"),
    ({"max_cpu_seconds": 0}, "max_cpu_seconds"),
    ({"max_cpu_seconds": -1}, "max_cpu_seconds"),
    ({"max_cpu_seconds": 9223372036854775808}, "max_cpu_seconds"),
]


def test_bad_limits_are_refused_naming_the_field(daemon: TempDaemon, tmp_path: Path) -> None:
    _lower_daemon_nofile(daemon)
    before = {a.id for a in daemon.rt.list_agents()}
    base = {"command": ["sleep", "60"], "cwd": str(tmp_path)}
    for change, field in BAD_BODIES:
        status, answer = raw(daemon, "POST", "/v1/agents", json.dumps({**base, **change}).encode())
        error = answer["error"]
        assert isinstance(error, dict)
        # A value the decoder refuses: the status is the control API's for bad bodies.
        assert status in (400, 422) and error["field"] == field, (change, answer)
        assert field in str(error["message"])
    # Above what the daemon itself may hold: refused by the supervisor, before recording.
    body = {**base, "max_open_files": DAEMON_HARD_NOFILE + 1}
    status, answer = raw(daemon, "POST", "/v1/agents", json.dumps(body).encode())
    error = answer["error"]
    assert isinstance(error, dict)
    assert status == 422 and error["code"] == "start_failed", answer
    assert error["field"] == "max_open_files" and str(DAEMON_HARD_NOFILE) in str(error["message"])

    ok = script(tmp_path, "ok.py", "pass\n")
    for args, word in (
        (("--max-memory", "12 bananas"), "--max-memory"),
        (("--max-memory", "512K"), "--max-memory"),
        (("--max-open-files", "8"), "--max-open-files"),
        (("--max-cpu-seconds=-5",), "--max-cpu-seconds"),
        (("--max-open-files", str(DAEMON_HARD_NOFILE + 1)), "max_open_files"),
    ):
        out = daemon.cli("start", ok, *args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode != 0 and len(lines) == 1, (args, out.stderr)
        assert lines[0].startswith("ironrt: ") and word in lines[0], (args, out.stderr)
    assert {a.id for a in daemon.rt.list_agents()} == before
    assert daemon.rt.health().ok


def test_limits_survive_a_daemon_restart(daemon: TempDaemon, tmp_path: Path) -> None:
    forever = script(tmp_path, "forever.py", "import time\nwhile True: time.sleep(1)\n")
    out = daemon.cli(
        "start",
        forever,
        "--restart",
        "always",
        "--max-memory",
        "512M",
        "--max-open-files",
        "100",
        "--max-cpu-seconds",
        "1h",
        "--cwd",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    agent_id = out.stdout.strip()
    shown = daemon.cli("metrics", agent_id)
    assert "512.0 MB" in shown.stdout and "open files 100" in shown.stdout, shown.stdout
    first_pid = daemon.rt.get_agent(agent_id).pid

    daemon.crash_host()  # the daemon and the agent die; the record stays
    daemon.start()
    wait_until(lambda: daemon.rt.get_agent(agent_id).pid != first_pid, timeout=15)
    agent = daemon.rt.get_agent(agent_id)
    assert agent.status.live and agent.restarts == 1
    limits = (agent.max_memory_bytes, agent.max_open_files, agent.max_cpu_seconds)
    assert limits == (512 * MiB, 100, 3600)
    assert agent.pid is not None
    resurrected = psutil.Process(agent.pid)
    assert resurrected.rlimit(psutil.RLIMIT_NOFILE) == (100, 100)
    assert resurrected.rlimit(psutil.RLIMIT_CPU) == (3600, 3601)
    assert daemon.rt.stop_agent(agent_id, timeout=5).status.value == "stopped"


def test_limits_are_optional_and_checked_by_the_client() -> None:
    from ironrt.client_bodies import start_body
    from ironrt.errors import InvalidRequest

    plain = json.loads(start_body("x.py", (), None, {}))
    assert (plain["max_memory_bytes"], plain["max_open_files"], plain["max_cpu_seconds"]) == (
        None,
        None,
        None,
    )
    with pytest.raises(InvalidRequest, match="max_open_files"):
        start_body("x.py", (), None, {"max_open_files": 1 << 21})


def _apps(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "a.py").write_text("pass\n")
    path = tmp_path / "ironrt.toml"
    path.write_text(f'[agents.x]\nscript = "a.py"\n{extra}\n')
    return path


def test_apps_file_keys(tmp_path: Path) -> None:
    from ironrt.apps.load import read_apps, resolve_apps

    path = _apps(tmp_path, 'max_memory = "512M"\nmax_open_files = 1024\nmax_cpu_seconds = "2m"')
    (app,) = resolve_apps(path, read_apps(path))
    assert (app.spec.max_memory_bytes, app.spec.max_open_files, app.spec.max_cpu_seconds) == (
        512 * MiB,
        1024,
        120,
    )
    path = _apps(tmp_path, f"max_memory = {64 * MiB}\nmax_cpu_seconds = 90")
    (same,) = resolve_apps(path, read_apps(path))
    assert (same.spec.max_memory_bytes, same.spec.max_cpu_seconds) == (64 * MiB, 90)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('max_memory = "12 bananas"', "max_memory"),
        ('max_memory = "512K"', "max_memory"),
        ("max_open_files = 8", "max_open_files"),
        ('max_open_files = "many"', "max_open_files"),
        ("max_cpu_seconds = 0", "max_cpu_seconds"),
        ('max_cpu_seconds = "soon"', "max_cpu_seconds"),
    ],
)
def test_apps_file_bad_limits_name_the_key(tmp_path: Path, extra: str, key: str) -> None:
    from ironrt.apps.load import read_apps
    from ironrt.apps.problems import AppsFileError

    with pytest.raises(AppsFileError, match=f"agents.x.{key}: "):
        read_apps(_apps(tmp_path, extra))


def test_an_entry_without_limits_keeps_its_digest(tmp_path: Path) -> None:
    """The digest of an entry that uses none of the new keys is what it was before they
    existed: `ironrt up` after an upgrade must not restart the whole fleet."""
    import hashlib

    import msgspec

    from ironrt.apps.load import read_apps, resolve_apps

    path = _apps(tmp_path, "budget = 5")
    (app,) = resolve_apps(path, read_apps(path))
    old = msgspec.to_builtins(app.spec)
    later = ("max_memory_bytes", "max_open_files", "max_cpu_seconds", "env_files")
    for key in (*later, "pii_types", "pii_file"):
        del old[key]
    canonical = json.dumps(old, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert app.digest == hashlib.sha256(canonical.encode()).hexdigest()
    limited = _apps(tmp_path, 'budget = 5\nmax_memory = "1G"')
    (changed,) = resolve_apps(limited, read_apps(limited))
    assert changed.digest != app.digest


async def test_a_v4_database_loads_without_limits_and_keeps_new_ones(tmp_path: Path) -> None:
    """Agents saved before schema v5 have no limits; limits saved since come back as saved."""
    from ironrt.store import agents as agent_store
    from ironrt.store.db import Database
    from tests.records import old_database

    path = tmp_path / "v4.db"
    old_database(path, 4)
    db = await Database.open(path)
    try:
        (stored,) = await agent_store.load_all(db)
        r = stored.record
        assert (r.max_memory_bytes, r.max_open_files, r.max_cpu_seconds) == (None, None, None)
        r.max_memory_bytes, r.max_open_files, r.max_cpu_seconds = 64 * MiB, 128, 30
        await agent_store.save(db, stored)
        (again,) = await agent_store.load_all(db)
        a = again.record
        assert (a.max_memory_bytes, a.max_open_files, a.max_cpu_seconds) == (64 * MiB, 128, 30)
    finally:
        await db.close()


def test_without_a_limit_an_agent_gets_the_open_files_limit_the_daemon_was_given(
    tmp_path: Path,
) -> None:
    """The daemon raises its own soft limit for the router's connections; agents keep the
    soft limit they would have had without ironrt (select() breaks past 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip("the hard open-files limit is too low to see a difference")
    out = tmp_path / "limits.json"
    probe = script(
        tmp_path,
        "probe.py",
        "import json, resource, sys\n"
        "json.dump(resource.getrlimit(resource.RLIMIT_NOFILE), open(sys.argv[1], 'w'))\n",
    )
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))  # the daemon inherits it
    try:
        with TempDaemon() as d:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            assert d.proc is not None
            assert resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE)[0] > 512
            agent_id = d.rt.start_agent(probe, [str(out)], cwd=str(tmp_path))
            assert d.rt.wait(agent_id, timeout=20).exit_code == 0
            assert json.loads(out.read_text()) == [512, hard]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
