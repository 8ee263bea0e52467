"""Observation commands: events, usage, traces, limits and the live `top`.

`top`'s frame is built by `frame()` so that the demo draws exactly the same table.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from ironrt.cli import render
from ironrt.cli.app import JsonFlag, app
from ironrt.cli.context import print_json, print_json_line, runtime

if TYPE_CHECKING:
    from rich.console import RenderableType

    from ironrt.client import Runtime
    from ironrt.protocol import Event, ScopeLimits

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
    rt = runtime()
    stream = rt.events(agent=agent, limit=limit, follow=follow)
    if json_:
        if follow:
            for event in stream:
                print_json_line(event)
        else:
            print_json(list(stream))
        return
    names = _names(rt)
    out = render.console()
    found = False
    for event in stream:
        found = True
        out.print(_event_line(event, names), soft_wrap=True)
    if not found and not follow:
        out.print("no events yet")


def _names(rt: Runtime) -> dict[str, str]:
    return {a.id: a.name for a in rt.list_agents()}


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
    names = _names(rt) if by == "agent" else {}
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
            render.usd(row.cost_usd),
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

    names = _names(rt)
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
            render.usd(tr.cost_usd),
            f"{tr.latency_ms:.0f} ms",
            tr.error or "",
        )
    out = render.console()
    out.print(t if found else "no LLM calls yet")


LIMITS_HELP = """Budgets and limits of each scope: global, per project, per agent.

Without a command, list every scope with its limits, spend (settled, and held by
calls in flight), window and calls in flight / waiting. A call must fit the limits
of its agent, of its agent's project and the global ones.

\b
    ironrt limits set global --budget 100 --window 1d
    ironrt limits set project:search --budget 20 --window 1h --max-concurrent 4
    ironrt limits set bot --rpm 30 --models 'gpt-4o*,claude-*'
    ironrt limits unset project:search window max-concurrent
    ironrt limits rm project:search
"""

limits_app = typer.Typer(
    help=LIMITS_HELP,
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.add_typer(limits_app, name="limits")

ScopeArg = Annotated[
    str,
    typer.Argument(
        metavar="SCOPE",
        help="global, project:NAME, or an agent: id, unique id prefix, name, or agent:REF.",
        show_default=False,
    ),
]

#: The command-line name of each `LimitsUpdate` field (`unset` also takes the field names).
LIMIT_OPTIONS = {
    "budget_usd": "budget",
    "window": "window",
    "rpm": "rpm",
    "tpm": "tpm",
    "max_concurrent": "max-concurrent",
    "models": "models",
}
_UNSET_NAMES = {
    **{name: field for field, name in LIMIT_OPTIONS.items()},
    **{field: field for field in LIMIT_OPTIONS},
}


@limits_app.callback()
def limits(ctx: typer.Context, json_: JsonFlag = False) -> None:
    """Budgets and limits of each scope (global, project:NAME, agent:ID)."""
    if ctx.invoked_subcommand is not None:
        return
    rt = runtime()
    scopes = rt.limits()
    if json_:
        print_json(scopes)
        return
    names = _names(rt) if any(s.scope.startswith("agent:") for s in scopes) else {}
    t = render.table(
        "SCOPE",
        "BUDGET",
        "SPENT",
        "HELD",
        "WINDOW",
        "RESETS AT",
        "RPM",
        "TPM",
        "MAX CONCURRENT",
        "MODELS",
        "IN FLIGHT/WAITING",
        right=("BUDGET", "SPENT", "HELD", "RPM", "TPM", "MAX CONCURRENT", "IN FLIGHT/WAITING"),
    )
    for s in scopes:
        name = names.get(s.scope.partition(":")[2]) if s.scope.startswith("agent:") else None
        t.add_row(
            s.scope + (f" ({name})" if name else ""),
            render.usd(s.budget_usd),
            render.usd(s.spent_usd),
            render.usd(s.held_usd),
            s.window or render.DASH,
            render.clock(s.resets_at),
            _count(s.rpm),
            _count(s.tpm),
            _count(s.max_concurrent),
            ",".join(s.models) if s.models else render.DASH,
            f"{s.in_flight}/{s.waiting}",
        )
    render.console().print(t if scopes else "no limits set")


def _count(value: int | None) -> str:
    return render.DASH if value is None else f"{value:,}"


def describe(s: ScopeLimits) -> str:
    """One scope on one line: what `limits set/unset/rm` print."""
    items: list[str] = []
    if s.budget_usd is not None:
        items.append(
            f"budget {render.usd(s.budget_usd)}" + (f" per {s.window}" if s.window else "")
        )
    elif s.window:
        items.append(f"window {s.window}")
    items += [
        f"{label} {value:,}"
        for label, value in (("rpm", s.rpm), ("tpm", s.tpm), ("max concurrent", s.max_concurrent))
        if value is not None
    ]
    if s.models:
        items.append("models " + ",".join(s.models))
    spent = f"spent {render.usd(s.spent_usd)}"
    if s.resets_at:
        spent += f", resets at {render.clock(s.resets_at)}"
    return f"{s.scope}: {', '.join(items) or 'no limits'}; {spent}"


def _patterns(text: str) -> list[str]:
    patterns = [p.strip() for p in text.split(",") if p.strip()]
    if not patterns:
        raise typer.BadParameter(
            "give at least one pattern, e.g. 'gpt-4o*,claude-*' "
            "(to allow every model: ironrt limits unset SCOPE models)",
            param_hint="'--models'",
        )
    return patterns


@limits_app.command("set")
def set_limits(
    scope: ScopeArg,
    budget: Annotated[
        float | None,
        typer.Option("--budget", metavar="USD", help="Spend limit in USD (per window if any)."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            metavar="DUR",
            help="The budget's window: spend returns to 0 every DUR (30s, 10m, 1h, 1d, 7d).",
        ),
    ] = None,
    rpm: Annotated[
        int | None, typer.Option("--rpm", metavar="N", help="Max LLM requests per minute.")
    ] = None,
    tpm: Annotated[
        int | None, typer.Option("--tpm", metavar="N", help="Max LLM tokens per minute.")
    ] = None,
    max_concurrent: Annotated[
        int | None,
        typer.Option("--max-concurrent", metavar="N", help="Max LLM calls in flight at once."),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            metavar="PATTERNS",
            help="Allowed models, comma-separated globs (e.g. 'gpt-4o*,claude-*').",
        ),
    ] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the scope's limits as JSON.")
    ] = False,
) -> None:
    """Set limits of a scope; the limits not given are left as they are."""
    from ironrt.protocol import LimitsUpdate

    given: dict[str, Any] = {
        "budget_usd": budget,
        "window": window,
        "rpm": rpm,
        "tpm": tpm,
        "max_concurrent": max_concurrent,
        "models": None if models is None else _patterns(models),
    }
    changes = {field: value for field, value in given.items() if value is not None}
    if not changes:
        raise typer.BadParameter(
            "nothing to set: give --budget, --window, --rpm, --tpm, --max-concurrent "
            "or --models (to clear a limit: ironrt limits unset SCOPE FIELD)"
        )
    # Each value is checked alone, by the protocol's own rules, so the error names the
    # option the user typed (the daemon would name the JSON field).
    for field, value in changes.items():
        try:
            LimitsUpdate(**{field: value})
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=f"'--{LIMIT_OPTIONS[field]}'") from None
    _show(runtime().set_limits(scope, **changes), json_)


@limits_app.command("unset")
def unset_limits(
    scope: ScopeArg,
    fields: Annotated[
        list[str],
        typer.Argument(
            metavar="FIELD...",
            help="budget, window, rpm, tpm, max-concurrent or models.",
            show_default=False,
        ),
    ],
    json_: Annotated[
        bool, typer.Option("--json", help="Print the scope's limits as JSON.")
    ] = False,
) -> None:
    """Remove some limits of a scope (its spend is kept)."""
    names = []
    for name in fields:
        field = _UNSET_NAMES.get(name.strip().lower())
        if field is None:
            raise typer.BadParameter(
                f"unknown limit {name!r}: use " + ", ".join(LIMIT_OPTIONS.values()),
                param_hint="'FIELD...'",
            )
        names.append(field)
    _show(runtime().unset_limits(scope, *dict.fromkeys(names)), json_)


@limits_app.command("rm")
def remove_limits(
    scope: ScopeArg,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the scope's limits as JSON.")
    ] = False,
) -> None:
    """Remove every limit of a scope (its spend is kept)."""
    s = runtime().remove_limits(scope)
    if json_:
        print_json(s)
        return
    print(f"removed the limits of {s.scope} (spent so far: {render.usd(s.spent_usd)})")


def _show(s: ScopeLimits, json_: bool) -> None:
    if json_:
        print_json(s)
    else:
        print(describe(s))


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
    rt = runtime()
    out = render.console()
    if once:
        out.print(frame(rt))
        return
    from rich.live import Live

    # Ctrl-C is a normal way to leave top, not an error: exit 0 like q does.
    with (
        contextlib.suppress(KeyboardInterrupt),
        _keys() as keys,
        Live(frame(rt), console=out, auto_refresh=False) as live,
    ):
        while not _wait_for_quit(interval, keys):
            live.update(frame(rt), refresh=True)
