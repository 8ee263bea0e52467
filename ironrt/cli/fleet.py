"""Fleet commands: stop, restart, rm, each acting on many agents at once.

They share one way of choosing agents (`fleet`: ids, prefixes, names, `all`, `--project`)
and one rule: nothing is done unless every reference resolves, then each agent is acted
on in turn, a failure reported and the others still done (exit 1 at the end).

`all` and `--project` mean the agents the daemon controls: a library-mode agent (an
`ironrt.protect` scope of another process) is never stopped or restarted by them, nor
removed while it runs; an ended one is removed by `rm` like any ended agent. Named
explicitly, one still gets the daemon's answer (409: it ends with its process).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from ironrt.cli import render
from ironrt.cli.app import app
from ironrt.cli.context import CliError, runtime
from ironrt.errors import IronrtError

if TYPE_CHECKING:
    from ironrt.client import Runtime
    from ironrt.protocol import Agent

GraceTimeout = Annotated[
    float,
    typer.Option("--timeout", metavar="S", min=0, max=3600, help="Grace period before SIGKILL."),
]


AgentRefs = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="ID... | all",
        help="Agent ids, unique id prefixes or names; `all` for every agent.",
        show_default=False,
    ),
]
ProjectFilter = Annotated[
    str | None,
    typer.Option("--project", metavar="NAME", help="Only the agents of this project."),
]


def _live(agent: Agent) -> bool:
    return agent.status.live or agent.restarting


def _controlled(agent: Agent) -> bool:
    """One of the daemon's own agents (not a library-mode record)."""
    return agent.kind == "process"


@app.command("stop")
def stop(
    refs: AgentRefs = None,
    project: ProjectFilter = None,
    timeout: GraceTimeout = 10.0,
) -> None:
    """Stop agents and their whole process trees (SIGTERM, grace, SIGKILL)."""
    rt = runtime()

    def said(before: Agent, after: Agent) -> str:
        if not _live(before):
            return f"{after.name} ({after.id}) had already ended: {render.status_text(after)[0]}"
        return f"stopped {after.name} ({after.id})"

    agents = fleet(rt, refs, project, lambda a: _live(a) and _controlled(a))
    each(agents, lambda a: rt.stop_agent(a.id, timeout=timeout), said)


@app.command("restart")
def restart(
    refs: AgentRefs = None,
    project: ProjectFilter = None,
    timeout: GraceTimeout = 10.0,
) -> None:
    """Restart agents (stopping each first if it runs)."""
    rt = runtime()
    each(
        fleet(rt, refs, project, _controlled),
        lambda a: rt.restart_agent(a.id, timeout=timeout),
        lambda _, after: f"restarted {after.name} ({after.id}), pid {after.pid}",
    )


@app.command("rm")
def remove(
    refs: AgentRefs = None,
    project: ProjectFilter = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Stop it first if it runs.")] = False,
) -> None:
    """Remove ended agents, their records and their logs (`all`: every ended agent)."""
    rt = runtime()
    each(
        fleet(rt, refs, project, lambda a: not _live(a) or (force and _controlled(a))),
        lambda a: rt.remove_agent(a.id, force=force),
        lambda _, after: f"removed {after.name} ({after.id})",
    )


def each(
    agents: list[Agent], act: Callable[[Agent], Agent], said: Callable[[Agent, Agent], str]
) -> None:
    """Act on every agent, one line each; one that fails is said on stderr and the others
    are still done; the exit code is 1 if any failed."""
    failed = False
    for agent in agents:
        try:
            after = act(agent)
        except IronrtError as exc:
            print(f"ironrt: {agent.name} ({agent.id}): {exc}", file=sys.stderr)
            failed = True
            continue
        print(said(agent, after))
    if failed:
        raise typer.Exit(1)


def fleet(
    rt: Runtime, refs: list[str] | None, project: str | None, wanted: Callable[[Agent], bool]
) -> list[Agent]:
    """The agents a fleet command acts on: `all` (those `wanted` applies to), or each
    reference resolved by the daemon (an ambiguous name is an error listing candidates).
    `--project` keeps that project's agents. Nothing is done unless every reference
    resolves: a typo in the third id must not leave the first two stopped."""
    refs = refs or []
    if "all" in refs:
        if refs != ["all"]:
            raise CliError("`all` stands alone: it already means every agent")
        agents = _chosen(rt.list_agents(), project, wanted)
    elif refs:
        agents = [rt.get_agent(ref) for ref in dict.fromkeys(refs)]
    elif project is not None:
        agents = _chosen(rt.list_agents(), project, wanted)
    else:
        raise CliError("name the agents (ids, prefixes or names), or `all`")
    if project is not None:
        agents = [a for a in agents if a.project == project]
    if not agents:
        print("no agent to act on", file=sys.stderr)
    return agents


def _chosen(
    listed: list[Agent], project: str | None, wanted: Callable[[Agent], bool]
) -> list[Agent]:
    """The listed agents `wanted` applies to; the running library-mode agents left out
    are said on stderr, so that one still running after `stop all` is no surprise."""
    listed = [a for a in listed if project is None or a.project == project]
    for a in listed:
        if not _controlled(a) and a.status.live and not wanted(a):
            print(
                f"ironrt: left alone: {a.name} ({a.id}), a library-mode agent "
                "(it ends with its process)",
                file=sys.stderr,
            )
    return [a for a in listed if wanted(a)]
