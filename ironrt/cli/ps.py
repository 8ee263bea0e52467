"""`ironrt ps`, and the fast path that runs it without typer.

`ps` is the command typed most, and what a user feels as ironrt's speed. Typer alone
costs about as much as everything else `ps` does (request included), so `main()` first
offers the command line to `fast_args()`: if it is a plain `ps` (the global options,
`-a/--all`, `--json`), `run()` is called directly; anything else (`--help`, a typo, an
unknown option) goes through typer, which parses and reports it. Both paths call the
same `run()`, so they cannot print differently.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ironrt.cli import render
from ironrt.cli.context import OPTIONS, print_json, runtime

if TYPE_CHECKING:
    from ironrt.protocol import Agent, Metrics

#: `ps` asks for cpu and memory one agent at a time; past this many live agents it
#: shows what the list gives, so it stays one request however many agents run.

_ROOT_FLAGS = {"--no-autostart", "--debug"}
_PS_FLAGS = {"-a": "all", "--all": "all", "--json": "json"}


def fast_args(argv: list[str]) -> dict[str, bool] | None:
    """The flags of a plain `ps` command line (global options applied), or None."""
    home: str | None = None
    root: set[str] = set()
    i = 0
    while i < len(argv) and argv[i] != "ps":
        arg = argv[i]
        if arg == "--home" and i + 1 < len(argv):
            home, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--home="):
            home = arg.partition("=")[2]
        elif arg in _ROOT_FLAGS:
            root.add(arg)
        else:
            return None
        i += 1
    if i == len(argv) or not all(arg in _PS_FLAGS for arg in argv[i + 1 :]):
        return None
    OPTIONS.set(home, "--no-autostart" in root, "--debug" in root)
    flags = {_PS_FLAGS[arg] for arg in argv[i + 1 :]}
    return {"all_": "all" in flags, "json_": "json" in flags}


def run(*, all_: bool, json_: bool) -> None:
    rt = runtime()
    if json_:
        agents = sorted(rt.list_agents(), key=lambda a: a.created_at)
        print_json(agents if all_ else [a for a in agents if a.status.live])
        return
    pairs = sorted(rt.list_agents_with_metrics(), key=lambda p: p[0].created_at)
    shown = [a for a, _ in pairs if all_ or a.status.live]
    # Library-mode agents run in processes the daemon does not sample: no cpu or memory.
    metrics: dict[str, Metrics] = {
        a.id: m for a, m in pairs if a.status.live and a.kind == "process"
    }
    _print(shown, metrics, hidden=len(pairs) - len(shown))


def _print(agents: list[Agent], metrics: dict[str, Metrics], hidden: int) -> None:
    if not agents:
        print("no agents running" if hidden else "no agents yet: ironrt start SCRIPT")
    # The PROJECT column only when some agent has one: most setups use none, and `ps`
    # is already wide.
    projects = any(a.project for a in agents)
    # KIND likewise, only when a library-mode agent (`ironrt.protect`) is listed.
    kinds = any(a.kind == "library" for a in agents)
    rows: list[list[render.Cell]] = []
    for a in agents:
        m = metrics.get(a.id)
        row: list[render.Cell] = [a.id, a.name]
        if kinds:
            row.append(a.kind)
        if projects:
            row.append(a.project or render.DASH)
        row += [
            str(a.pid) if a.pid and a.status.live else render.DASH,
            render.status_text(a),
            render.duration(render.uptime(a)),
            f"{m.cpu_percent:.1f}%" if m else render.DASH,
            render.nbytes(m.rss_bytes if m else None),
            render.budget(a.spent_usd, a.budget_usd),
            str(a.restarts),
        ]
        rows.append(row)
    if rows:
        headers = (
            "ID",
            "NAME",
            *(("KIND",) if kinds else ()),
            *(("PROJECT",) if projects else ()),
            "PID",
            "STATUS",
        )
        render.columns(
            (*headers, "UPTIME", "CPU", "MEM", "SPENT / BUDGET", "RESTARTS"),
            rows,
            right=("PID", "UPTIME", "CPU", "MEM", "RESTARTS"),
        )
    if hidden:
        color = render.use_color(sys.stdout)
        print(render.paint(f"{hidden} ended agent(s) not shown: ironrt ps --all", "dim", color))
