"""`ironrt usage`, `ironrt traces` and `ironrt trace ID`: what the LLM calls were and cost.

Times (`--since`, `--until`) are passed to the daemon as written (`24h`, `7d`, an ISO 8601
time), so a relative one means the daemon's now and a bad one gets the daemon's message.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from ironrt.cli import render
from ironrt.cli.app import JsonFlag, app
from ironrt.cli.context import fail, print_json, runtime

if TYPE_CHECKING:
    from rich.console import RenderableType

    from ironrt.protocol import Trace, Usage

AgentOption = Annotated[
    str | None, typer.Option("--agent", metavar="ID", help="Only this agent (id, prefix or name).")
]
ProjectOption = Annotated[
    str | None, typer.Option("--project", metavar="NAME", help="Only this project's agents.")
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since", metavar="WHEN", help="From this time: 30m, 24h, 7d ago, or ISO 8601 (UTC)."
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", metavar="WHEN", help="Before this time (same forms as --since)."),
]

Group = Literal["agent", "provider", "model", "project", "day", "hour"]
#: `usage`'s first column(s) for each grouping.
_HEADERS: dict[str, tuple[str, ...]] = {
    "agent": ("AGENT", "NAME"),
    "provider": ("PROVIDER",),
    "model": ("MODEL",),
    "project": ("PROJECT",),
    "day": ("DAY (UTC)",),
    "hour": ("HOUR (UTC)",),
}
_NUMBERS = ("CALLS", "REFUSED", "ERRORS", "INPUT TOKENS", "OUTPUT TOKENS", "COST")


@app.command("usage")
def usage(
    by: Annotated[Group, typer.Option("--by", help="Group by.")] = "agent",
    since: SinceOption = None,
    until: UntilOption = None,
    agent: AgentOption = None,
    project: ProjectOption = None,
    json_: JsonFlag = False,
) -> None:
    """LLM calls, tokens and spend grouped by agent, provider, model, project, day or hour.

    CALLS reached a provider; REFUSED were refused by ironrt (budget, rate limit, PII...)
    before any provider answered."""
    result = runtime().usage(by=by, agent=agent, since=since, until=until, project=project)
    if json_:
        print_json(result)
        return
    out = render.console()
    if not result.rows:
        out.print("no LLM calls" + _span(result))
        return
    t = render.table(*_HEADERS[by], *_NUMBERS, right=_NUMBERS)
    for row in result.rows:
        if by == "agent":
            key: tuple[str, ...] = (row.key, row.name or render.DASH)
        elif by in ("day", "hour"):
            key = (row.key[:10] if by == "day" else row.key[:16].replace("T", " "),)
        else:
            key = (row.key or ("(none)" if by == "project" else render.DASH),)
        t.add_row(
            *key,
            f"{row.llm_calls:,}",
            f"{row.refused_calls:,}",
            f"{row.errors:,}",
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            render.usd(row.cost_usd)
            + (f" + {row.unpriced_calls} unpriced" if row.unpriced_calls else ""),
        )
    out.print(t)
    refused = f", {result.refused_calls:,} refused" if result.refused_calls else ""
    out.print(
        f"[bold]total {render.usd(result.total_usd)}[/bold]  "
        f"{result.llm_calls:,} calls{refused}{_span(result)}"
    )


def _span(result: Usage) -> str:
    if result.since is None and result.until is None:
        return ""
    return f" from {result.since or 'the start'} to {result.until or 'now'}"


@app.command("traces")
def traces(
    since: SinceOption = None,
    until: UntilOption = None,
    model: Annotated[
        str | None, typer.Option("--model", metavar="MODEL", help="Only calls of this model.")
    ] = None,
    errors: Annotated[
        bool, typer.Option("--errors", help="Only calls that reached a provider and failed.")
    ] = False,
    refused: Annotated[
        bool, typer.Option("--refused", help="Only calls ironrt refused (budget, PII...).")
    ] = False,
    agent: AgentOption = None,
    project: ProjectOption = None,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", min=1, max=10_000, metavar="N", help="Calls per page."),
    ] = 20,
    cursor: Annotated[
        str | None,
        typer.Option("--cursor", metavar="C", help="The next page (printed after a page)."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every page, not just the first.")] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="A JSON list of the calls (next cursor on stderr).")
    ] = False,
) -> None:
    """One row per LLM call, newest first: model, tokens, cost, latency, outcome."""
    if errors and refused:
        fail("--errors and --refused are exclusive: a refused call reached no provider")
    status = "error" if errors else "refused" if refused else None
    rt = runtime()
    found: list[Trace] = []
    while True:
        page = rt.trace_page(
            agent=agent,
            project=project,
            model=model,
            status=status,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
        found += page.traces
        cursor = page.next_cursor
        if not all_ or cursor is None:
            break
    if json_:
        print_json(found)
    else:
        out = render.console()
        out.print(_table(found) if found else "no LLM calls")
    if cursor is not None:
        print(f"more: ironrt traces ... --cursor {cursor}", file=sys.stderr)


def _table(found: list[Trace]) -> RenderableType:
    from rich.text import Text

    t = render.table(
        "ID",
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
        right=("ID", "STATUS", "IN", "OUT", "COST", "LATENCY"),
    )
    for tr in found:
        ok = tr.status_code < 400 and tr.refusal is None
        status = str(tr.status_code) + (f" {tr.refusal}" if tr.refusal else "")
        t.add_row(
            str(tr.id),
            render.clock(tr.started_at),
            tr.agent_name or tr.agent_id,
            tr.provider,
            tr.model,
            tr.endpoint + (" (stream)" if tr.stream else ""),
            Text(status, style="green" if ok else "red"),
            f"{tr.input_tokens:,}",
            f"{tr.output_tokens:,}",
            render.cost(tr.cost_usd),
            f"{tr.latency_ms:.0f} ms",
            tr.error or "",
        )
    return t


@app.command("trace")
def trace(
    trace_id: Annotated[int, typer.Argument(metavar="ID", min=1, help="The call's id.")],
    json_: JsonFlag = False,
) -> None:
    """Every field of one LLM call."""
    found = runtime().trace(trace_id)
    if json_:
        print_json(found)
        return
    from rich.text import Text

    out = render.console()
    for name in found.__struct_fields__:
        value = getattr(found, name)
        shown = (
            render.cost(value) if name == "cost_usd" else render.DASH if value is None else value
        )
        out.print(Text.assemble((f"{name:<17}", "bold"), f" {shown}"), soft_wrap=True)
