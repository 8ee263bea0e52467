"""Observation commands: events and the live `top`.

The `limits` group lives in `limits.py`; `usage`, `traces` and `trace` in `usage.py`.

`top`'s frame is built by `frame()` so that the demo draws exactly the same table.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
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

    from ironrt.client import Runtime
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


def frame(
    rt: Runtime, *, include: set[str] | None = None, title: str | None = None
) -> RenderableType:
    """One frame of `top`: the live agents (plus those in `include`) with their metrics."""
    from rich.text import Text

    pairs = sorted(rt.list_agents_with_metrics(), key=lambda p: p[0].created_at)
    agents = [a for a, _ in pairs]
    by_id = {a.id: m for a, m in pairs}
    shown = [a for a in agents if a.status.live or (include and a.id in include)]
    t = render.table(
        "ID",
        "NAME",
        "STATUS",
        "PID",
        "CPU",
        "MEM",
        "UPTIME",
        "CALLS",
        "TOKENS",
        "SPENT / BUDGET",
        "USED",
        right=("PID", "CPU", "MEM", "UPTIME", "CALLS", "TOKENS", "USED"),
    )
    t.title = title or (
        f"ironrt top: {sum(a.status.live for a in agents)} running, {len(agents)} known  (q quits)"
    )
    t.title_justify = "left"
    for a in shown:
        m = by_id[a.id]
        word, style = render.status_text(a)
        used = m.budget_used_percent
        live = m.status.live
        t.add_row(
            a.id[:SHORT_ID],
            a.name,
            Text(word, style=style),
            str(m.pid) if live and m.pid else render.DASH,
            f"{m.cpu_percent:.1f}%" if live else render.DASH,
            render.nbytes(m.rss_bytes),
            render.duration(m.uptime_s) if live else render.DASH,
            f"{m.llm_calls:,}",
            f"{m.input_tokens + m.output_tokens:,}",
            render.budget(m.spent_usd, m.budget_usd),
            Text(
                f"{used:.0f}%" if used is not None else render.DASH,
                style="red"
                if used is not None and used >= 95
                else "yellow"
                if used is not None and used >= 80
                else "",
            ),
        )
    return t


@contextlib.contextmanager
def _keys() -> Iterator[bool]:
    """Put a terminal stdin in cbreak mode so `q` quits without Enter; yields whether
    keys can be read at all."""
    if not sys.stdin.isatty():
        yield False
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_for_quit(seconds: float, keys: bool) -> bool:
    """Sleep `seconds`; True if the user pressed q meanwhile."""
    if not keys:
        time.sleep(seconds)
        return False
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sys.stdin], [], [], left)
        if ready and os.read(sys.stdin.fileno(), 1).lower() == b"q":
            return True
    return False


@app.command("top")
def top(
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, metavar="S", help="Seconds between refreshes.")
    ] = 1.0,
) -> None:
    """A live table of the running agents: cpu, memory, calls, spend (q or Ctrl-C quits)."""
    rt = runtime(autostart=False)  # watching a daemon must never start one
    out = render.console()
    if once:
        out.print(frame(rt))
        return
    from rich.live import Live

    # Ctrl-C is a normal way to leave top, not an error: exit 0 like q does.
    with (
        daemon_gone_ends_follower(True, stream=False),
        contextlib.suppress(KeyboardInterrupt),
        _keys() as keys,
        Live(frame(rt), console=out, auto_refresh=False) as live,
    ):
        while not _wait_for_quit(interval, keys):
            live.update(frame(rt), refresh=True)
