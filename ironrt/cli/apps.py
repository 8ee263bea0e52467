"""`ironrt up` and `ironrt down`: a fleet of agents declared in a file (PM2's ecosystem file).

`ironrt.toml` holds one `[agents.NAME]` table per agent. `up` makes the daemon match it:
an agent that runs with the spec its entry declares is left alone, one that does not run
is started, one whose entry changed is replaced. `down` stops the agents the file names.

The file itself (its schema, checks, error wording, resolution and digest) and the
decision of what to do per entry are `ironrt.apps`, which knows nothing of the command
line; this module runs the commands: it reads the file through `ironrt.apps`, asks the
daemon for the records of the file's names, carries out each entry's plan through the
client, and prints what was done as it is done.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec
import typer

from ironrt.apps.load import find_file, read_apps, resolve_apps
from ironrt.apps.plan import Outcome, by_name, plan_down, plan_up
from ironrt.apps.problems import AppsFileError, plain
from ironrt.apps.schema import APPS_FILE, App
from ironrt.cli.app import JsonFlag, app
from ironrt.cli.context import print_json, runtime, settings
from ironrt.errors import DaemonUnavailable, IronrtError

if TYPE_CHECKING:
    from ironrt.client import Runtime
    from ironrt.protocol import Agent

__all__ = ["AppsReport", "down", "up"]


class AppsReport(msgspec.Struct):
    """`--json` of `up` and `down`: one outcome per entry, in the file's order."""

    file: str
    dry_run: bool
    agents: list[Outcome]


# ---- carrying out the plan ------------------------------------------------------------------


def _listing(
    may_start: bool, timeout: float, names: Iterable[str]
) -> tuple[Runtime | None, dict[str, list[Agent]]]:
    """A client and the records of the file's names. Unless `may_start` (a real `up`), no
    daemon is started: none running means no agent running, and the client is None."""
    rt = runtime(autostart=None if may_start else False, timeout=timeout + 60)
    try:
        return rt, by_name(rt.list_agents(), names)
    except DaemonUnavailable:
        if may_start:
            raise
        return None, by_name((), names)


def up_one(
    rt: Runtime | None, entry: App, records: list[Agent], timeout: float, dry_run: bool
) -> Outcome:
    """Make one entry run with its spec (`plan_up` decides how; see docs/apps.md)."""
    plan = plan_up(entry, records)
    if dry_run or plan.up_to_date:
        return plan.outcome
    assert rt is not None
    if plan.replace is not None:
        rt.stop_agent(plan.replace.id, timeout=timeout)
        rt.remove_agent(plan.replace.id, force=True)
    for agent in plan.remove:
        rt.remove_agent(agent.id, force=True)
    if plan.reuse is not None:
        started = rt.restart_agent(plan.reuse.id, timeout=timeout)
    else:
        started = rt.get_agent(_start(rt, entry))
    done = plan.outcome
    done.id, done.pid = started.id, started.pid
    return done


def _start(rt: Runtime, entry: App) -> str:
    s = entry.spec
    return rt.start_agent(
        s.command,
        name=entry.name,
        spec_digest=entry.digest,
        cwd=s.cwd,
        env=s.env,  # over the caller's environment, as `ironrt start --env` does
        python=s.python,
        budget=s.budget,
        project=s.project,
        restart=s.restart,
        max_restarts=s.max_restarts,
        min_uptime=s.min_uptime_s,
        on_budget=s.on_budget,
        pii=s.pii,
        pii_types=s.pii_types,
        pii_file=s.pii_file,
        rpm=s.rpm,
        tpm=s.tpm,
        log_max_size=s.log_max_bytes,
        log_keep=s.log_keep,
        max_memory=s.max_memory_bytes,
        max_open_files=s.max_open_files,
        max_cpu_seconds=s.max_cpu_seconds,
        env_files=s.env_files,
        allow_unmetered=s.allow_unmetered,
    )


def down_one(
    rt: Runtime | None, name: str, records: list[Agent], timeout: float, dry_run: bool
) -> Outcome:
    """Stop the live agent of the name, if any (`plan_down` finds it)."""
    planned = plan_down(name, records)
    if dry_run or planned.id is None:
        return planned
    assert rt is not None
    agent = rt.stop_agent(planned.id, timeout=timeout)
    return Outcome(name=name, action="stopped", id=agent.id, spec_digest=agent.spec_digest)


def _line(o: Outcome, dry_run: bool) -> str:
    ident = f"{o.id}, pid {o.pid}" if o.pid is not None else f"{o.id}"
    if o.action == "up_to_date":
        return f"{o.name}: up to date ({ident})"
    if o.action == "not_running":
        return f"{o.name}: not running"
    if o.action == "stopped":
        return f"{o.name}: would stop ({o.id})" if dry_run else f"{o.name}: stopped ({o.id})"
    if o.action == "restarted":
        if dry_run:
            return f"{o.name}: would restart ({o.reason}; replaces {o.previous_id})"
        return f"{o.name}: restarted ({o.reason}; {ident}, was {o.previous_id})"
    if o.action == "started":
        again = f"; {o.reason}" if o.reason else ""
        if dry_run:
            return f"{o.name}: would start" + (f" again ({o.id}{again})" if o.id else "")
        return f"{o.name}: started ({ident}{again})"
    return f"{o.name}: failed: {o.error}"


def _run(
    file: Path,
    outcomes: Iterable[Outcome],
    dry_run: bool,
    json_: bool,
) -> None:
    """Print as each entry is done (a long stop is not silent), JSON at the end; exit 1 if
    an entry failed (the others were still done)."""
    done = []
    for outcome in outcomes:
        done.append(outcome)
        if json_:
            continue
        if outcome.action == "failed":
            print(f"ironrt: {_line(outcome, dry_run)}", file=sys.stderr)
        else:
            print(_line(outcome, dry_run), flush=True)
    if json_:
        print_json(AppsReport(file=str(file), dry_run=dry_run, agents=done))
    if any(o.action == "failed" for o in done):
        raise typer.Exit(1)


def _guarded(name: str, do: Callable[[], Outcome]) -> Outcome:
    """One entry's failure (a start the daemon refused, a name taken meanwhile) is reported
    and the others are still done; a daemon that is gone ends the run."""
    try:
        return do()
    except DaemonUnavailable:
        raise
    except IronrtError as exc:
        return Outcome(name=name, action="failed", error=plain(exc))


def _file_problem(exc: AppsFileError) -> typer.Exit:
    print(f"ironrt: {exc}", file=sys.stderr)
    return typer.Exit(2)


FileArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="FILE",
        help=f"The apps file, or a folder holding {APPS_FILE} (default: ./{APPS_FILE}).",
        show_default=False,
    ),
]
GraceTimeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="S",
        min=0,
        max=3600,
        help="Grace period of a stopped agent before SIGKILL.",
    ),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Print what would be done, and do nothing.")
]

UP_HELP = f"""Start the agents declared in FILE ({APPS_FILE}) that are not running.

Each [agents.NAME] table is an agent named NAME. One that runs with the same
spec is left alone ("up to date"); one whose entry changed is stopped, removed
and started with its new spec; one that ended is started again. The whole file
is checked first: a bad key or value starts nothing (exit 2). See docs/apps.md.
"""


@app.command("up", help=UP_HELP)
def up(
    file: FileArg = None,
    dry_run: DryRun = False,
    timeout: GraceTimeout = 10.0,
    json_: JsonFlag = False,
) -> None:
    try:
        path = find_file(file)
        apps = resolve_apps(path, read_apps(path), home_pii=settings().pii_path)
    except AppsFileError as exc:
        raise _file_problem(exc) from None
    rt, records = _listing(not dry_run, timeout, (a.name for a in apps))
    outcomes = (
        _guarded(a.name, partial(up_one, rt, a, records[a.name], timeout, dry_run)) for a in apps
    )
    _run(path, outcomes, dry_run, json_)


@app.command("down")
def down(
    file: FileArg = None,
    dry_run: DryRun = False,
    timeout: GraceTimeout = 10.0,
    json_: JsonFlag = False,
) -> None:
    """Stop the agents named in FILE (ironrt.toml); other agents are left alone.

    Their records stay: a later `up` starts them again under the same ids.
    """
    try:
        path = find_file(file)
        names = list(read_apps(path))
    except AppsFileError as exc:
        raise _file_problem(exc) from None
    # Never start a daemon just to find that nothing runs.
    rt, records = _listing(False, timeout, names)
    outcomes = (_guarded(n, partial(down_one, rt, n, records[n], timeout, dry_run)) for n in names)
    _run(path, outcomes, dry_run, json_)
