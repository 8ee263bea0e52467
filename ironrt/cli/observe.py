"""Observation commands: events, usage, traces and the live `top`.

The `limits` group lives in `limits.py`.

`top`'s frame is built by `frame()` so that the demo draws exactly the same table.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from ironrt.cli import render
from ironrt.cli.app import JsonFlag, app
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
) -> None:
    """Lifecycle, budget, PII and reliability events, oldest first."""
    rt = runtime(autostart=False) if follow else runtime()  # a follower never starts one
    stream = rt.events(agent=agent, limit=limit, follow=follow)
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
        name = names.get(event.agent_id)
        line.append(f" {name or event.agent_id}", style="bold")
        if name:
            line.append(f" ({event.agent_id})", style="dim")
    if event.data:
        line.append("  " + render.details(event.data))
    return line


@app.command("usage")
def usage(
    by: Annotated[
        Literal["agent", "provider", "model"], typer.Option("--by", help="Group by.")
    ] = "agent",
    agent: AgentOption = None,
    json_: JsonFlag = False,
) -> None:
    """LLM calls, tokens and spend, grouped by agent, provider or model."""
    rt = runtime()
    result = rt.usage(by=by, agent=agent)
    if json_:
        print_json(result)
        return
    names = agent_names(rt) if by == "agent" else {}
    headers = ("AGENT", "NAME") if by == "agent" else (by.upper(),)
    t = render.table(
        *headers,
        "CALLS",
        "INPUT TOKENS",
        "OUTPUT TOKENS",
        "COST",
        right=("CALLS", "INPUT TOKENS", "OUTPUT TOKENS", "COST"),
    )
    for row in result.rows:
        key = (row.key, names.get(row.key, render.DASH)) if by == "agent" else (row.key,)
        t.add_row(
            *key,
            f"{row.llm_calls:,}",
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            render.usd(row.cost_usd)
            + (f" + {row.unpriced_calls} unpriced" if row.unpriced_calls else ""),
        )
    out = render.console()
    if not result.rows:
        out.print("no LLM calls yet")
        return
    out.print(t)
    out.print(f"[bold]total {render.usd(result.total_usd)}[/bold]")


@app.command("traces")
def traces(
    agent: AgentOption = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", "-n", min=1, max=10_000, metavar="N", help="How many of the latest calls."
        ),
    ] = 20,
    json_: JsonFlag = False,
) -> None:
    """One row per LLM call: model, tokens, cost, latency, outcome."""
    rt = runtime()
    found = rt.traces(agent=agent, limit=limit)
    if json_:
        print_json(found)
        return
    from rich.text import Text

    names = agent_names(rt)
    t = render.table(
        "TIME",
        "AGENT",
        "PROVIDER",
        "MODEL",
        "ENDPOINT",
        "STATUS",
        "IN",
        "OUT",
        "COST",
        "LATENCY",
        "ERROR",
        right=("STATUS", "IN", "OUT", "COST", "LATENCY"),
    )
    for tr in found:
        ok = tr.status_code < 400
        t.add_row(
            render.clock(tr.started_at),
            names.get(tr.agent_id, tr.agent_id),
            tr.provider,
            tr.model,
            tr.endpoint + (" (stream)" if tr.stream else ""),
            Text(str(tr.status_code), style="green" if ok else "red"),
            f"{tr.input_tokens:,}",
            f"{tr.output_tokens:,}",
            render.cost(tr.cost_usd),
            f"{tr.latency_ms:.0f} ms",
            tr.error or "",
        )
    out = render.console()
    out.print(t if found else "no LLM calls yet")


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
