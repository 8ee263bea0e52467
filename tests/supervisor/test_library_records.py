"""Records of library-mode agents (`ironrt.protect` scopes) beside a real daemon.

Each scope's record is written into the home's database by the process that runs it (here:
real child processes calling the store functions library mode uses). The daemon lists them
fresh, never loads, restarts, signals or stops them, removes one only once it has ended,
and marks one whose process died before its scope closed as ended. Fleet commands and
`up`/`down` leave them alone; `traces`, `usage` and `wait` find them by ref.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import psutil
import pytest

from ironrt.cli import ps
from ironrt.errors import Conflict, WaitTimeout
from ironrt.governance.ledger import Scope as LedgerScope
from ironrt.governance.ledger import scope_key, usd_to_nanos
from ironrt.protocol import Agent, AgentStatus
from ironrt.store import agents as agent_store
from ironrt.store.books import Books
from ironrt.store.db import Database
from ironrt.tempdaemon import TempDaemon
from tests.records import agent, old_database
from tests.records import trace as record_trace

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

    # What library mode's books write for a scope's calls: its own spend row.
    con = sqlite3.connect(daemon.home / "ironrt.db")
    with con:
        con.execute(
            "INSERT INTO scopes(scope, spent_nanos, resets_at, warned) VALUES (?, 5, NULL, '')",
            (f"agent:{alive.id}",),
        )
    con.close()

    daemon.kill()  # a crash: the next daemon finds both records at its start
    doomed.kill()  # killed inside its scope: its record still says running
    assert _row(daemon.home, doomed.id)["status"] == "running"
    daemon.start()
    # Written while the daemon started (before it answers), not by a listing.
    dead = _row(daemon.home, doomed.id)
    assert (dead["status"], dead["lost"]) == ("stopped", 1) and dead["ended_at"]
    assert dict(_row(daemon.home, alive.id)) == alive_row
    # The scope's books are its process's, not the daemon's: not loaded as a daemon scope.
    assert f"agent:{alive.id}" not in {s.scope for s in daemon.rt.limits()}

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
    return agent(
        id=agent_id,
        name=f"n-{agent_id}",
        pid=4242,
        status=status,
        max_restarts=0,
        started_at="2026-01-01T00:00:00Z",
        kind=kind,
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
    old_database(path, 6)
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


def _count(home: Path, sql: str, *params: object) -> int:
    con = sqlite3.connect(home / "ironrt.db")
    try:
        return int(con.execute(f"SELECT COUNT(*) FROM {sql}", params).fetchone()[0])
    finally:
        con.close()


def _ended(home: Path, name: str, status: AgentStatus = AgentStatus.STOPPED) -> str:
    """A scope that opened and closed (`failed`: ended by an exception), as library mode
    records one; its id."""

    async def write() -> str:
        db = await Database.open(home / "ironrt.db")
        try:
            stored = agent_store.library_record(name)
            await agent_store.save_library_agent(db, stored)
            error = "ValueError: boom" if status is AgentStatus.FAILED else None
            await agent_store.end_library_agent(db, stored.record.id, status=status, error=error)
            return stored.record.id
        finally:
            await db.close()

    return anyio.run(write)


def _record_call(home: Path, agent_id: str, cost_usd: float) -> None:
    """One settled call of a scope, written as library mode writes it: through the books
    (its trace, the agent's spend, its own scope's window spend) in one transaction."""
    trace = record_trace(agent_id=agent_id, input_tokens=12, cost_usd=cost_usd, latency_ms=3.0)
    own = LedgerScope(scope_key("agent", agent_id), spent_nanos=usd_to_nanos(cost_usd))

    async def write() -> None:
        db = await Database.open(home / "ironrt.db")
        books = Books(db)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(books.run)
                assert await books.record(trace, cost_usd, (own,))
                books.close()
        finally:
            await db.close()

    anyio.run(write)


def test_fleet_commands_and_up_down_leave_library_agents_alone(
    daemon: TempDaemon, scopes: list[Scope], tmp_path: Path
) -> None:
    proc_id = daemon.rt.start_agent(["sleep", "60"], name="fleet-proc")
    scopes.append(Scope(daemon.home, "fleet-lib"))
    lib = scopes[0]
    ended_id = _ended(daemon.home, "fleet-ended")
    lib_row = dict(_row(daemon.home, lib.id))
    left_alone = f"left alone: fleet-lib ({lib.id}), a library-mode agent"

    for command, done in (("restart", "restarted"), ("stop", "stopped")):
        out = daemon.cli(command, "all")
        assert out.returncode == 0, out.stderr  # no 409 for a library agent
        assert f"{done} fleet-proc ({proc_id})" in out.stdout and left_alone in out.stderr
        assert "fleet-lib" not in out.stdout and "fleet-ended" not in out.stdout + out.stderr
    out = daemon.cli("rm", "--force", "all")  # even forced: a running scope is its process's
    assert out.returncode == 0, out.stderr
    assert f"removed fleet-proc ({proc_id})" in out.stdout and left_alone in out.stderr
    assert f"removed fleet-ended ({ended_id})" in out.stdout  # ended: removed as any ended agent
    assert "fleet-lib" not in out.stdout
    assert _count(daemon.home, "agents WHERE id IN (?, ?)", proc_id, ended_id) == 0
    assert dict(_row(daemon.home, lib.id)) == lib_row and lib.proc.poll() is None

    # An apps entry named like the running library agent is its own agent: `up` starts it
    # (it does not take the scope for a live agent of another spec to replace), `down`
    # stops it and nothing else, and then finds nothing of the name running.
    py = json.dumps(sys.executable)
    file = tmp_path / "ironrt.toml"
    file.write_text(f'[agents.fleet-lib]\ncommand = [{py}, "-c", "import time; time.sleep(600)"]\n')

    def apps(command: str) -> dict[str, object]:
        done = daemon.cli(command, str(file), "--json", timeout=30)
        assert done.returncode == 0, done.stderr
        (outcome,) = json.loads(done.stdout)["agents"]
        assert isinstance(outcome, dict)
        return outcome

    started = apps("up")
    assert started["action"] == "started" and started["previous_id"] is None
    app_id = started["id"]
    assert isinstance(app_id, str) and app_id != lib.id
    assert daemon.rt.get_agent(app_id).kind == "process"
    assert apps("up")["action"] == "up_to_date"
    assert (apps("down")["action"], apps("down")["action"]) == ("stopped", "not_running")
    assert not daemon.rt.get_agent(app_id).status.live
    assert dict(_row(daemon.home, lib.id)) == lib_row and lib.proc.poll() is None
    daemon.rt.remove_agent(app_id)


def test_calls_wait_and_removal_of_a_library_agent(daemon: TempDaemon, scopes: list[Scope]) -> None:
    scopes.append(Scope(daemon.home, "calls-scope"))
    lib = scopes[0]
    _record_call(daemon.home, lib.id, 0.25)

    # Its calls, found by name or id prefix (API and CLI), as any agent's.
    for ref in ("calls-scope", lib.id[:8]):
        (trace,) = daemon.rt.traces(agent=ref)
        assert (trace.agent_id, trace.cost_usd) == (lib.id, 0.25)
        rows = daemon.rt.usage(agent=ref).rows
        assert [(r.key, r.llm_calls, r.cost_usd) for r in rows] == [(lib.id, 1, 0.25)]
    shown = daemon.cli("traces", "--agent", "calls-scope", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [t["agent_id"] for t in json.loads(shown.stdout)] == [lib.id]
    spent = daemon.cli("usage", "--agent", "calls-scope", "--json")
    assert spent.returncode == 0, spent.stderr
    assert [r["key"] for r in json.loads(spent.stdout)["rows"]] == [lib.id]

    # No process of it under the daemon: metrics and logs are conflicts, not "no agent".
    for what, act in (
        ("metrics", lambda: daemon.rt.get_metrics("calls-scope")),
        ("logs", lambda: daemon.rt.logs(lib.id)),
    ):
        with pytest.raises(Conflict, match=f"library-mode agents have no process {what} under"):
            act()
    for command in (("metrics", "calls-scope"), ("logs", lib.id)):
        done = daemon.cli(*command)
        assert done.returncode != 0 and f"no process {command[0]}" in done.stderr, done

    # Running: `wait` waits (and gives up), `rm` is refused.
    with pytest.raises(WaitTimeout):
        daemon.rt.wait("calls-scope", timeout=0.3)
    with pytest.raises(Conflict, match="a library-mode agent: it ends with its process"):
        daemon.rt.remove_agent("calls-scope")
    # The scope closes while someone waits: the wait ends with it.
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(daemon.rt.wait, lib.id, 30)
        _end(daemon.home, lib.id, spent_usd=0.25)
        done_agent = waiting.result(timeout=30)
    assert done_agent.status is AgentStatus.STOPPED and done_agent.spent_usd == 0.25
    assert daemon.rt.wait("calls-scope", timeout=5).status is AgentStatus.STOPPED

    # Ended: removed as the daemon's own agents are (the record and its own scope's row
    # go, its traces stay); a failed one too.
    own = f"scopes WHERE scope = 'agent:{lib.id}'"
    assert _count(daemon.home, own) == 1
    removed = daemon.cli("rm", "calls-scope")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == f"removed calls-scope ({lib.id})"
    assert _count(daemon.home, "agents WHERE id = ?", lib.id) == 0
    assert _count(daemon.home, own) == 0
    assert _count(daemon.home, "traces WHERE agent_id = ?", lib.id) == 1
    assert lib.id not in {a.id for a in daemon.rt.list_agents()}
    assert lib.proc.poll() is None  # removing a record signals nothing
    failed_id = _ended(daemon.home, "crashed-scope", AgentStatus.FAILED)
    assert daemon.rt.get_agent("crashed-scope").status is AgentStatus.FAILED
    assert daemon.rt.remove_agent("crashed-scope").id == failed_id
    assert _count(daemon.home, "agents WHERE id = ?", failed_id) == 0
