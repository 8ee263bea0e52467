"""Records of library-mode agents (`ironrt.protect` scopes) beside a real daemon.

Each scope's record is written into the home's database by the process that runs it (here:
real child processes calling the store functions library mode uses). The daemon lists them
fresh, never loads, restarts, signals, stops or removes them, and marks one whose process
died before its scope closed as ended.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest

from ironrt.cli import ps
from ironrt.errors import Conflict
from ironrt.protocol import Agent, AgentStatus
from ironrt.store import agents as agent_store
from ironrt.store.db import Database, migrations
from ironrt.tempdaemon import TempDaemon

#: A process that opens a library scope the way library mode records one, says its agent
#: id, and stays in its scope until killed.
_SCOPE = """
import sys, time
from pathlib import Path
import anyio
from ironrt.store import agents as s
from ironrt.store.db import Database

async def main() -> str:
    db = await Database.open(Path(sys.argv[1]))
    try:
        stored = s.library_record(sys.argv[2], budget_usd=0.5, pii="redact", rpm=60)
        await s.save_library_agent(db, stored)
        return stored.record.id
    finally:
        await db.close()

print(anyio.run(main), flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def daemon() -> Iterator[TempDaemon]:
    with TempDaemon() as d:
        yield d


class Scope:
    """A child process inside a library scope (its record written, its id known)."""

    def __init__(self, home: Path, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SCOPE, str(home / "ironrt.db"), name],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.id = self.proc.stdout.readline().strip()
        assert self.id, "the scope process wrote no record"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def scopes() -> Iterator[list[Scope]]:
    opened: list[Scope] = []
    yield opened
    for scope in opened:
        scope.kill()


def _row(home: Path, agent_id: str) -> sqlite3.Row:
    con = sqlite3.connect(home / "ironrt.db")
    con.row_factory = sqlite3.Row
    try:
        row = con.execute("SELECT * FROM agents WHERE id = ?", (agent_id,)).fetchone()
    finally:
        con.close()
    assert row is not None
    return row


def _end(home: Path, agent_id: str, spent_usd: float) -> None:
    """What library mode does when a scope closes."""

    async def end() -> None:
        db = await Database.open(home / "ironrt.db")
        try:
            await agent_store.end_library_agent(db, agent_id, spent_usd=spent_usd)
        finally:
            await db.close()

    anyio.run(end)


def test_a_scope_written_while_the_daemon_runs_is_listed(
    daemon: TempDaemon, scopes: list[Scope]
) -> None:
    process_id = daemon.rt.start_agent(["sleep", "60"], name="worker")
    scopes.append(Scope(daemon.home, "notebook"))
    lib_id = scopes[0].id

    agents = {a.id: a for a in daemon.rt.list_agents()}
    lib = agents[lib_id]
    assert (lib.kind, lib.name, lib.status) == ("library", "notebook", AgentStatus.RUNNING)
    assert lib.pid == scopes[0].proc.pid and (lib.budget_usd, lib.pii, lib.rpm) == (
        0.5,
        "redact",
        60,
    )
    assert lib.command[0] == "-c" and lib.restart == "no"
    assert agents[process_id].kind == "process"
    assert daemon.rt.get_agent("notebook") == lib
    pairs = dict((a.id, m) for a, m in daemon.rt.list_agents_with_metrics())
    assert pairs[lib_id].budget_remaining_usd == 0.5 and pairs[lib_id].rss_bytes == 0

    listed = daemon.cli("ps", "--all", "--json")
    assert listed.returncode == 0, listed.stderr
    kinds = {a["id"]: a["kind"] for a in json.loads(listed.stdout)}
    assert kinds[lib_id] == "library" and kinds[process_id] == "process"
    table = daemon.cli("ps")  # a running scope shows in plain ps too, marked
    assert table.returncode == 0, table.stderr
    line = next(x for x in table.stdout.splitlines() if x.startswith(lib_id))
    assert "KIND" in table.stdout and "library" in line and str(scopes[0].proc.pid) in line

    _end(daemon.home, lib_id, spent_usd=0.125)
    plain = json.loads(daemon.cli("ps", "--json").stdout)
    assert lib_id not in {a["id"] for a in plain}
    ended = next(
        a for a in json.loads(daemon.cli("ps", "-a", "--json").stdout) if a["id"] == lib_id
    )
    assert ended["status"] == "stopped" and ended["ended_at"] and ended["spent_usd"] == 0.125
    assert scopes[0].proc.poll() is None  # the daemon never touched the process
    daemon.rt.stop_agent(process_id, timeout=2)


def test_operations_on_a_library_agent_are_conflicts(
    daemon: TempDaemon, scopes: list[Scope]
) -> None:
    scopes.append(Scope(daemon.home, "script-scope"))
    lib_id = scopes[0].id
    before = dict(_row(daemon.home, lib_id))

    for act in (
        lambda: daemon.rt.stop_agent(lib_id, timeout=1),
        lambda: daemon.rt.remove_agent("script-scope", force=True),
        lambda: daemon.rt.restart_agent(lib_id[:8]),
        lambda: daemon.rt.update_agent(lib_id, budget_usd=5.0),
    ):
        with pytest.raises(Conflict, match="a library-mode agent: it ends with its process"):
            act()
    for command in (("stop", lib_id), ("rm", "--force", "script-scope")):
        done = daemon.cli(*command)
        assert done.returncode != 0 and "library-mode agent" in done.stderr, done
    assert dict(_row(daemon.home, lib_id)) == before  # nothing written
    assert scopes[0].proc.poll() is None  # nothing signalled
    missing = daemon.cli("stop", "no-such-agent")  # an unknown ref is still a 404
    assert missing.returncode != 0 and "no agent" in missing.stderr


def _shutdown(daemon: TempDaemon) -> None:
    """`ironrt daemon stop` that ends every agent of the daemon (none is kept)."""
    daemon.rt.shutdown_daemon(keep_agents=False, wait=30)
    assert daemon.proc is not None
    daemon.proc.wait(10)


def test_a_daemon_restart_leaves_scopes_alone_and_ends_dead_ones(
    daemon: TempDaemon, scopes: list[Scope]
) -> None:
    scopes += [Scope(daemon.home, "alive"), Scope(daemon.home, "doomed")]
    alive, doomed = scopes
    alive_row = dict(_row(daemon.home, alive.id))

    daemon.kill()  # a crash: the next daemon finds both records at its start
    doomed.kill()  # killed inside its scope: its record still says running
    assert _row(daemon.home, doomed.id)["status"] == "running"
    daemon.start()
    # Written while the daemon started (before it answers), not by a listing.
    dead = _row(daemon.home, doomed.id)
    assert (dead["status"], dead["lost"]) == ("stopped", 1) and dead["ended_at"]
    assert dict(_row(daemon.home, alive.id)) == alive_row

    # A daemon that found the live scope at its start does not take it for its own: a
    # stop that ends all of its agents leaves the scope's process running, untouched.
    _shutdown(daemon)
    assert alive.proc.poll() is None and psutil.pid_exists(alive.proc.pid)
    assert dict(_row(daemon.home, alive.id)) == alive_row
    daemon.start()

    agents = {a.id: a for a in daemon.rt.list_agents()}
    assert agents[alive.id].status is AgentStatus.RUNNING
    assert agents[doomed.id].status is AgentStatus.STOPPED and agents[doomed.id].lost
    assert doomed.id not in {a["id"] for a in json.loads(daemon.cli("ps", "--json").stdout)}


def test_a_scope_killed_while_the_daemon_runs_shows_ended(
    daemon: TempDaemon, scopes: list[Scope]
) -> None:
    scopes.append(Scope(daemon.home, "brief"))
    scope = scopes[0]
    scope.kill()
    agent = next(a for a in daemon.rt.list_agents() if a.id == scope.id)
    assert agent.status is AgentStatus.STOPPED and agent.lost and agent.ended_at


def _agent(agent_id: str, kind: str, status: AgentStatus) -> Agent:
    return Agent(
        id=agent_id,
        name=f"n-{agent_id}",
        pid=4242,
        status=status,
        exit_code=None,
        signal=None,
        command=["x"],
        cwd="/",
        restart="no",
        restarts=0,
        max_restarts=0,
        budget_usd=None,
        spent_usd=0.0,
        on_budget="block",
        pii="detect",
        rpm=None,
        tpm=None,
        allow_unmetered=False,
        created_at="2026-01-01T00:00:00Z",
        started_at="2026-01-01T00:00:00Z",
        ended_at=None,
        kind=kind,  # type: ignore[arg-type]
    )


def test_ps_shows_kind_only_when_a_library_agent_is_listed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    running = AgentStatus.RUNNING
    ps._print([_agent("p1", "process", running)], {}, hidden=0)
    assert "KIND" not in capsys.readouterr().out
    ps._print([_agent("p1", "process", running), _agent("l1", "library", running)], {}, 0)
    lines = capsys.readouterr().out.splitlines()
    assert "KIND" in lines[0]
    assert "process" in next(x for x in lines if x.startswith("p1"))
    assert "library" in next(x for x in lines if x.startswith("l1"))


async def test_a_v6_database_migrates_its_agents_as_process_agents(tmp_path: Path) -> None:
    path = tmp_path / "v6.db"
    con = sqlite3.connect(path)
    for version, sql in migrations():
        if version <= 6:
            con.executescript(sql)
    con.execute("PRAGMA user_version = 6")
    con.execute(
        "INSERT INTO agents (id, name, status, command, cwd, env, restart, max_restarts, "
        "restarts, spent_usd, on_budget, pii, created_at) VALUES ('old', 'old', 'exited', "
        "'[\"a\"]', '/tmp', '{}', 'no', 5, 0, 0, 'block', 'detect', '2026-01-01T00:00:00Z')"
    )
    con.commit()
    con.close()
    db = await Database.open(path)
    try:
        (old,) = await agent_store.load_all(db)
        assert old.record.kind == "process"
        lib = agent_store.library_record("nb", budget_usd=1.0)
        await agent_store.save_library_agent(db, lib)
        assert [a.record.id for a in await agent_store.load_all(db, "process")] == ["old"]
        (again,) = await agent_store.load_all(db, "library")
        assert again.record == lib.record and again.pid_started == lib.pid_started
        assert again.env == {} and again.token_hash is None
        with pytest.raises(ValueError, match="library"):
            await agent_store.save_library_agent(db, old)
    finally:
        await db.close()
