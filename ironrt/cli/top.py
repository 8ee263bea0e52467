"""`ironrt top`: a live frame of the running agents, their calls per minute and spend.

The frame is built by `frame()` so that the demo draws exactly the same picture. It fits
the terminal it is drawn on: on a narrow one (70 columns) the columns a person can do
without (id, pid, uptime, tokens, spent/budget figures) collapse, and the name is cut
with an ellipsis, so a row never wraps. Under the table: the calls per minute and spend
of all agents, and the last alert (the kinds an alert webhook sends by default).
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from ironrt.cli import render
from ironrt.cli.app import app
from ironrt.cli.context import daemon_gone_ends_follower, runtime
from ironrt.protocol import Agent, Metrics
from ironrt.settings_table import DEFAULT_ALERT_KINDS

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

    from ironrt.client import Runtime

SHORT_ID = 8
#: Cells of a spend bar.
BAR = 10


@dataclass(frozen=True, slots=True)
class _Column:
    header: str
    #: Dropped first when the terminal is narrow: the higher, the sooner.
    drop: int
    right: bool = False


#: Every column, in display order; `drop` 0 columns always stay.
_COLUMNS = (
    _Column("ID", 5),
    _Column("NAME", 0),
    _Column("STATUS", 0),
    _Column("PID", 4, right=True),
    _Column("CPU", 0, right=True),
    _Column("MEM", 1, right=True),
    _Column("UPTIME", 3, right=True),
    _Column("CALLS/MIN", 0, right=True),
    _Column("CALLS", 2, right=True),
    _Column("TOKENS", 3, right=True),
    _Column("SPEND", 0),
    _Column("SPENT / BUDGET", 1, right=True),
)


def _fit(rows: list[dict[str, str]], width: int) -> list[_Column]:
    """The columns that fit `width`, dropping the most expendable first. Widths are the
    longest cell of each column (headers included) plus the table's padding of 2."""

    def need(cols: Sequence[_Column]) -> int:
        return sum(max([len(c.header), *(len(r[c.header]) for r in rows)]) + 2 for c in cols) - 2

    kept = list(_COLUMNS)
    for level in sorted({c.drop for c in _COLUMNS if c.drop}, reverse=True):
        if need(kept) <= width:
            break
        kept = [c for c in kept if c.drop != level]
    return kept


def spend_bar(spent: float, budget: float | None, scale: float) -> Text:
    """Spend as a bar of `BAR` cells: of the budget when there is one (yellow from 80%,
    red from 95%), else of `scale` (the largest spend shown) in a neutral colour."""
    from rich.text import Text

    whole = budget if budget else scale
    share = min(spent / whole, 1.0) if whole > 0 else 0.0
    filled = round(share * BAR)
    if spent > 0 and filled == 0:
        filled = 1  # any spend shows
    style = "cyan"
    if budget:
        style = "red" if share >= 0.95 else "yellow" if share >= 0.8 else "green"
    bar = Text("█" * filled, style=style)
    bar.append("░" * (BAR - filled), style="dim")
    if budget:
        bar.append(f" {share * 100:3.0f}%")
    return bar


def _cells(a: Agent, m: Metrics, per_min: int) -> dict[str, str]:
    live = m.status.live
    word, _ = render.status_text(a)
    return {
        "ID": a.id[:SHORT_ID],
        "NAME": a.name,
        "STATUS": word,
        "PID": str(m.pid) if live and m.pid else render.DASH,
        "CPU": f"{m.cpu_percent:.1f}%" if live else render.DASH,
        "MEM": render.nbytes(m.rss_bytes),
        "UPTIME": render.duration(m.uptime_s) if live else render.DASH,
        "CALLS/MIN": f"{per_min:,}",
        "CALLS": f"{m.llm_calls:,}",
        "TOKENS": f"{m.input_tokens + m.output_tokens:,}",
        "SPEND": "x" * (BAR + (5 if m.budget_usd else 0)),  # the bar's width, for fitting
        "SPENT / BUDGET": render.budget(m.spent_usd, m.budget_usd),
    }


def _calls_per_minute(rt: Runtime) -> dict[str, int]:
    """Each agent's calls (reached a provider or refused) over the last minute."""
    usage = rt.usage("agent", since="1m")
    return {row.key: row.llm_calls + row.refused_calls for row in usage.rows}


def _last_alert(rt: Runtime) -> str | None:
    found = list(rt.events(kind=list(DEFAULT_ALERT_KINDS), limit=1))
    if not found:
        return None
    event = found[-1]
    who = event.agent_name or (event.agent_id or "")[:SHORT_ID] or "daemon"
    details = render.event_details(event)
    return f"{render.clock(event.ts)} {event.kind} {who}" + (f": {details}" if details else "")


def frame(
    rt: Runtime,
    *,
    include: set[str] | None = None,
    title: str | None = None,
    width: int | None = None,
) -> RenderableType:
    """One frame of `top` for a terminal `width` wide (None: as wide as it takes): the
    live agents (plus those in `include`) with their metrics, then the totals and the
    last alert."""
    from rich.console import Group
    from rich.text import Text

    pairs = sorted(rt.list_agents_with_metrics(), key=lambda p: p[0].created_at)
    agents = [a for a, _ in pairs]
    by_id = {a.id: m for a, m in pairs}
    shown = [a for a in agents if a.status.live or (include and a.id in include)]
    per_min = _calls_per_minute(rt)
    rows = [_cells(a, by_id[a.id], per_min.get(a.id, 0)) for a in shown]
    columns = _fit(rows, width) if width else list(_COLUMNS)
    t = render.table(*(c.header for c in columns), right=[c.header for c in columns if c.right])
    t.title = title or (
        f"ironrt top: {sum(a.status.live for a in agents)} running, {len(agents)} known  (q quits)"
    )
    t.title_justify = "left"
    if width:
        name = t.columns[[c.header for c in columns].index("NAME")]
        fixed = sum(
            max([len(c.header), *(len(r[c.header]) for r in rows)]) + 2
            for c in columns
            if c.header != "NAME"
        )
        name.max_width = max(width - fixed - 2, 6)
        name.overflow = "ellipsis"
    scale = max((by_id[a.id].spent_usd for a in shown), default=0.0)
    for a, cells in zip(shown, rows, strict=True):
        m = by_id[a.id]
        _, style = render.status_text(a)
        values: list[str | Text] = []
        for c in columns:
            if c.header == "SPEND":
                values.append(spend_bar(m.spent_usd, m.budget_usd, scale))
            elif c.header == "STATUS":
                values.append(Text(cells["STATUS"], style=style))
            else:
                values.append(cells[c.header])
        t.add_row(*values)
    total_min = sum(per_min.values())
    spent = sum(by_id[a.id].spent_usd for a in shown)
    footer = Text(f"{total_min:,} calls/min  spent {render.usd(spent)}", style="bold")
    alert = _last_alert(rt)
    last = Text("last alert: ", style="bold")
    last.append(alert or "none", style="yellow" if alert else "dim")
    if width:
        for line in (footer, last):
            line.truncate(width, overflow="ellipsis")
    return Group(t, footer, last)


def terminal_width() -> int | None:
    """The width to fit: the terminal's, or `COLUMNS` when set (a pipe is not cut)."""
    if columns := os.environ.get("COLUMNS", "").strip():
        with contextlib.suppress(ValueError):
            return max(int(columns), 40)
    if sys.stdout.isatty():
        return os.get_terminal_size(sys.stdout.fileno()).columns
    return None


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
    """A live table of the running agents: cpu, memory, calls per minute, spend bars, and
    the last alert (q or Ctrl-C quits)."""
    rt = runtime(autostart=False)  # watching a daemon must never start one
    out = render.console()
    width = terminal_width()
    if width is not None and not sys.stdout.isatty():
        out.width = width
    if once:
        out.print(frame(rt, width=width))
        return
    from rich.live import Live

    # Ctrl-C is a normal way to leave top, not an error: exit 0 like q does.
    with (
        daemon_gone_ends_follower(True, stream=False),
        contextlib.suppress(KeyboardInterrupt),
        _keys() as keys,
        Live(frame(rt, width=width), console=out, auto_refresh=False) as live,
    ):
        while not _wait_for_quit(interval, keys):
            live.update(frame(rt, width=terminal_width()), refresh=True)
