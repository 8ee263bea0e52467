"""Formatting shared by the commands: money, sizes, durations, status colours, tables.

Rich is imported inside the functions that draw, never at module level: commands that
print JSON or one line (and `--help`) must not pay for it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TextIO

import msgspec

from ironrt.protocol import Agent, AgentStatus, Event

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

#: Rich style per status; an exit with a non-zero code is drawn as a failure.
STATUS_STYLE: dict[AgentStatus, str] = {
    AgentStatus.STARTING: "cyan",
    AgentStatus.RUNNING: "green",
    AgentStatus.STOPPING: "yellow",
    AgentStatus.STOPPED: "dim",
    AgentStatus.EXITED: "blue",
    AgentStatus.FAILED: "bold red",
    AgentStatus.KILLED: "red",
    AgentStatus.PAUSED: "bold yellow",
}

DASH = "-"
#: Below this (a billionth of a dollar) `usd` says "less than" rather than print zeros.
_SMALLEST_USD = 1e-9


def usd(value: float | None) -> str:
    """Dollars with the precision a small spend needs ($0.000063 is not $0.00), and no
    more than it needs ($0.50, not $0.5000). A figure is never shown as a rounder one
    than it is: a non-zero amount is never "$0", and $150.50 is not "$150"."""
    if value is None:
        return DASH
    if value == 0:
        return "$0"
    if value < 0:
        return "-" + usd(-value)
    if value < _SMALLEST_USD:
        return f"<${_SMALLEST_USD:.9f}"
    if value >= 100:
        whole = f"${value:,.0f}"
        return whole if round(value, 2) == round(value) else f"${value:,.2f}"
    # Two significant digits at least, four decimals at least below a dollar.
    digits = 2 if value >= 1 else min(max(4, 1 - math.floor(math.log10(value))), 9)
    text = f"{value:.{digits}f}"
    whole, _, cents = text.partition(".")
    cents = cents.rstrip("0").ljust(2, "0")
    return f"${whole}.{cents}"


#: How a call's cost is shown when it cannot be known (a model with no known price).
UNKNOWN_COST = "unknown"


def cost(value: float | None) -> str:
    """A call's cost (a trace's `cost_usd`): None is a cost nobody knows, not a missing
    figure, so it says "unknown" rather than `usd`'s "-" (read as nothing, or $0)."""
    return UNKNOWN_COST if value is None else usd(value)


def nbytes(value: int | None) -> str:
    if not value:
        return DASH
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return DASH
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def parse_ts(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        # Python 3.10's fromisoformat does not accept the `Z` the daemon writes.
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def seconds_since(text: str | None) -> float | None:
    ts = parse_ts(text)
    if ts is None:
        return None
    return max(time.time() - ts.timestamp(), 0.0)


def uptime(agent: Agent) -> float | None:
    """How long a live agent has been running, from its start time (no extra request)."""
    if not agent.status.live:
        return None
    return seconds_since(agent.started_at)


def clock(text: str | None) -> str:
    """A timestamp in local time, short: HH:MM:SS today, else the date too."""
    ts = parse_ts(text)
    if ts is None:
        return DASH
    local = ts.astimezone()
    if local.date() == datetime.now(timezone.utc).astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")


def status_text(agent: Agent) -> tuple[str, str]:
    """The status word and its style, with what explains it: the exit code or signal
    when they say something, and who paused or stopped it (`paused (budget)`, `stopped
    (user)`), so a budget stop is not mistaken for a crash or a person's decision."""
    status = agent.status
    style = STATUS_STYLE[status]
    why: list[str] = []
    if agent.lost and not status.live:  # ended while no daemon watched: status unknown
        why.append("lost")
    if status is AgentStatus.EXITED and agent.exit_code not in (None, 0):
        why.append(str(agent.exit_code))
        style = "red"
    elif status is AgentStatus.KILLED and agent.signal is not None:
        why.append(signal_name(agent.signal))
    if agent.stop_reason is not None:
        why.append(agent.stop_reason)
        if agent.stop_reason == "budget" and not status.live:
            style = "yellow"
    word = f"{status.value} ({', '.join(why)})" if why else status.value
    return word, style


def signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def budget(spent: float, total: float | None) -> str:
    return f"{usd(spent)} / {usd(total) if total is not None else 'no limit'}"


def pii_types(types: Mapping[str, str] | None) -> str:
    """A type selection as `--pii-types` takes it back: `email=redact, secret=block, *=off`
    (named types in order, `*` last); "-" for none (every type follows `pii`)."""
    if not types:
        return DASH
    named = sorted((k for k in types if k != "*"), key=str.lower)
    items = [f"{name.lower()}={types[name]}" for name in named]
    if "*" in types:
        items.append(f"*={types['*']}")
    return ", ".join(items)


def pii(mode: str | None, types: Mapping[str, str] | None) -> str:
    """An agent's (or a scope floor's) PII handling on one line: `redact` alone, or with
    its selection, `redact (email=redact, *=off)`; a scope floor of types alone as
    `secret=block`; "-" for a scope with no floor."""
    if types:
        return f"{mode} ({pii_types(types)})" if mode else pii_types(types)
    return mode or DASH


def details(data: dict[str, object]) -> str:
    """An event's data as `key=value` pairs, in the order the daemon wrote them."""
    return " ".join(f"{k}={v}" for k, v in data.items() if v is not None)


#: Shown elsewhere on an event's line (or not at all): not among its details.
_EVENT_HEAD = frozenset({"kind", "id", "ts", "agent_id", "agent_name", "project"})


def event_details(event: Event) -> str:
    """A typed event's own fields as `key=value` pairs; unset ones (None, false, empty)
    are left out, a 0 is not."""
    fields = msgspec.to_builtins(event)
    shown = {
        k: v
        for k, v in fields.items()
        if k not in _EVENT_HEAD and v is not None and v is not False and v not in ("", [], {})
    }
    if event.project:
        shown["project"] = event.project
    return details(shown)


_ANSI = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}


def use_color(stream: TextIO) -> bool:
    """Colours for a terminal, unless NO_COLOR is set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def paint(text: str, style: str, color: bool) -> str:
    codes = ";".join(_ANSI[word] for word in style.split() if word in _ANSI)
    return f"\x1b[{codes}m{text}\x1b[0m" if color and codes else text


Cell = str | tuple[str, str]  # text, or (text, style)


def columns(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    right: Sequence[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Print an aligned table without rich, in the style of `docker ps`.

    Only `ps` uses it: it is the command typed most often, and importing rich would
    cost more than everything else it does."""
    out = stream or sys.stdout
    color = use_color(out)
    cells = [[c if isinstance(c, tuple) else (c, "") for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths[i], len(text))

    def line(row: Sequence[tuple[str, str]]) -> str:
        parts = []
        for i, (text, style) in enumerate(row):
            pad = " " * (widths[i] - len(text))
            aligned = pad + text if headers[i] in right else text + pad
            parts.append(paint(aligned, style, color))
        return "   ".join(parts).rstrip()

    out.write(line([(h, "bold") for h in headers]) + "\n")
    for row in cells:
        out.write(line(row) + "\n")


def console(*, stderr: bool = False) -> Console:
    """A rich console; when not a terminal, wide enough that tables never wrap (a pipe
    into grep should see whole rows)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 1000
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def table(*headers: str, right: Sequence[str] = ()) -> Table:
    """A borderless table in the style of `docker ps`; `right` names numeric columns."""
    from rich.table import Table

    t = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    for header in headers:
        t.add_column(header, justify="right" if header in right else "left", no_wrap=True)
    return t
