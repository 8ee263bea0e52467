"""Observation commands: events.

The `limits` group lives in `limits.py`; `usage`, `traces` and `trace` in `usage.py`;
the live `top` in `top.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ironrt.cli import render
from ironrt.cli.app import app
from ironrt.cli.context import (
    agent_names,
    daemon_gone_ends_follower,
    print_json,
    print_json_line,
    runtime,
)

if TYPE_CHECKING:
    from rich.console import RenderableType

    from ironrt.protocol import Event

#: `top` shows ids cut to this many characters (any unique prefix works as an ID argument).
SHORT_ID = 8

AgentOption = Annotated[
    str | None, typer.Option("--agent", metavar="ID", help="Only this agent (id, prefix or name).")
]

EVENT_STYLE = {
    "BudgetWarning": "yellow",
    "BudgetClamped": "yellow",
    "BudgetExhausted": "bold red",
    "AgentFailed": "bold red",
    "AgentKilled": "red",
    "AgentForceKilled": "red",
    "AgentStarted": "green",
    "AgentRestarted": "green",
    "AgentReattached": "green",
    "PiiAlert": "magenta",
    "PiiBlocked": "magenta",
    "CircuitOpened": "red",
    "CostUpdate": "cyan",
}


@app.command("events")
def events(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = False,
    agent: AgentOption = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", "-n", min=1, max=10_000, metavar="N", help="How many of the latest events."
        ),
    ] = 50,
    json_: Annotated[
        bool, typer.Option("--json", help="JSON (with -f: one event per line).")
    ] = False,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind", metavar="KIND", help="Only events of this kind (repeat, or a comma list)."
        ),
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", metavar="NAME", help="Only this project's events.")
    ] = None,
) -> None:
    """Lifecycle, budget, cost, PII and reliability events, oldest first."""
    rt = runtime(autostart=False) if follow else runtime()  # a follower never starts one
    stream = rt.events(agent=agent, limit=limit, follow=follow, kind=kind, project=project)
    if json_ and not follow:
        print_json(list(stream))
        return
    names = {} if json_ else agent_names(rt)
    out = render.console()
    found = False
    with daemon_gone_ends_follower(follow):
        for event in stream:
            found = True
            if json_:
                print_json_line(event)
            else:
                out.print(_event_line(event, names), soft_wrap=True)
    if not found and not follow:
        out.print("no events yet")


def _event_line(event: Event, names: dict[str, str]) -> RenderableType:
    from rich.text import Text

    line = Text(render.clock(event.ts), style="dim")
    line.append(f"  {event.kind:<17}", style=EVENT_STYLE.get(event.kind, ""))
    if event.agent_id:
        name = event.agent_name or names.get(event.agent_id)
        line.append(f" {name or event.agent_id}", style="bold")
        if name:
            line.append(f" ({event.agent_id})", style="dim")
    if details := render.event_details(event):
        line.append("  " + details)
    return line
