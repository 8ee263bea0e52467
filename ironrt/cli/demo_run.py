"""`ironrt demo`: a short, self-explaining tour that needs no key and no network.

It runs its own daemon in a temporary home with the offline provider (so nothing it does
touches the user's daemon, agents or spend), starts three agents side by side, one of
which runs out of budget and is refused, shows them live, then the spend per agent and
the budget events. The daemon and the home are removed afterwards, also after Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from ironrt.cli import observe, render, top
from ironrt.client import Runtime
from ironrt.errors import DaemonUnavailable, IronrtError

#: The package's `demo_agents` (beside `cli`, not in it: the path is the package's own, so
#: moving this module cannot leave it pointing at nothing, as it once did).
DEMO_AGENTS = Path(str(files("ironrt.demo_agents")))
_START_TIMEOUT_S = 20.0
#: How long the log relay may take to leave once the daemon stopped (it waits ~1 s idle).
_RELAY_EXIT_S = 5.0
_SHOWN_EVENTS = ("BudgetWarning", "BudgetClamped", "BudgetExhausted", "PiiAlert")


@dataclass(frozen=True, slots=True)
class DemoAgent:
    name: str
    script: str
    budget_usd: float
    what: str


AGENTS = (
    DemoAgent("researcher", "researcher.py", 0.50, "asks 10 questions (openai SDK, gpt-4o-mini)"),
    DemoAgent("writer", "writer.py", 0.50, "streams 4 drafts (anthropic SDK, claude-haiku-4-5)"),
    DemoAgent("spender", "spender.py", 0.05, "sends long prompts to gpt-4o on a $0.05 budget"),
)


def _start_daemon(home: Path) -> tuple[subprocess.Popen[bytes], Runtime]:
    env = {
        **os.environ,
        "IRONRT_HOME": str(home),
        "IRONRT_OFFLINE": "1",
        "IRONRT_ROUTER_PORT": "0",
        "IRONRT_SAMPLE_INTERVAL": "0.5",
    }
    with open(home / "daemon.err", "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ironrt.daemon"],
            env=env,
            cwd=home,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    rt = Runtime(home=home, autostart=False, timeout=30)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not rt.ping():
        if proc.poll() is not None or time.monotonic() > deadline:
            detail = (home / "daemon.err").read_text(errors="replace").strip()[-500:]
            raise DaemonUnavailable(f"the demo daemon did not start: {detail or 'no output'}")
        time.sleep(0.05)
    return proc, rt


def _cleanup(proc: subprocess.Popen[bytes] | None, rt: Runtime | None, pids: list[int]) -> None:
    """Stop the agents and the daemon (through the API, which stops the agents first);
    if the daemon cannot be asked, kill what is left by process group."""
    try:
        if rt is not None and proc is not None and proc.poll() is None:
            rt.shutdown_daemon(keep_agents=False, wait=20)
    except IronrtError:
        pass
    if proc is not None and proc.poll() is None:
        proc.kill()
    if proc is not None:
        proc.wait(10)
    for pid in pids:  # each agent leads its own process group
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def _wait_for_relay(home: Path, timeout: float = _RELAY_EXIT_S) -> None:
    """The home's log relay outlives the daemon by design (supervisor/logrelay.py) and
    leaves about a second after its last stream: wait for it, so the demo leaves nothing
    running behind it, and kill it if it does not go."""
    import psutil

    sock = str(home / "logrelay.sock")
    relays = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if sock in (proc.info["cmdline"] or []):
                relays.append(proc)
    _, alive = psutil.wait_procs(relays, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)


def _live(rt: Runtime, ids: dict[str, str], seconds: float) -> None:
    from rich.live import Live

    include = set(ids.values())
    deadline = time.monotonic() + seconds
    title = "ironrt demo: three agents under one budget-keeping router"
    with Live(
        top.frame(rt, include=include, title=title),
        console=render.console(),
        auto_refresh=False,
    ) as live:
        while time.monotonic() < deadline:
            time.sleep(0.5)
            live.update(top.frame(rt, include=include, title=title), refresh=True)
            if all(not rt.get_agent(i).status.live for i in include):
                break


def _summary(rt: Runtime, ids: dict[str, str]) -> None:
    from rich.text import Text

    out = render.console()
    names = {agent_id: name for name, agent_id in ids.items()}
    usage = rt.usage(by="agent")
    # Refused calls apart, as `ironrt usage` counts them: the live table's CALLS is both.
    right = ("CALLS", "REFUSED", "TOKENS", "SPENT", "BUDGET")
    t = render.table("AGENT", *right, right=right)
    budgets = {a.id: a.budget_usd for a in rt.list_agents()}
    for row in usage.rows:
        t.add_row(
            names.get(row.key, row.key),
            str(row.llm_calls),
            str(row.refused_calls),
            f"{row.input_tokens + row.output_tokens:,}",
            render.usd(row.cost_usd),
            render.usd(budgets.get(row.key)),
        )
    out.print("\n[bold]Spend per agent[/bold] (ironrt usage --by agent)")
    out.print(t)
    out.print("\n[bold]Events that mattered[/bold] (ironrt events)")
    for event in rt.events(limit=1000):
        if event.kind in _SHOWN_EVENTS:
            line = Text(f"  {event.kind:<16}", style=observe.EVENT_STYLE.get(event.kind, ""))
            line.append(f" {names.get(event.agent_id or '', event.agent_id or '')}  ", style="bold")
            line.append(render.event_details(event))
            out.print(line, soft_wrap=True)
    refused = rt.logs(ids["spender"], tail=1).strip()
    out.print("\n[bold]What the spender saw[/bold] (ironrt logs spender)")
    out.print(Text(f"  {refused}", style="dim"), soft_wrap=True)


def run(seconds: float = 8.0) -> int:
    out = render.console()
    # Unix socket paths are short (~107 bytes): keep the home in /tmp.
    home = Path(tempfile.mkdtemp(prefix="ironrt-demo-", dir="/tmp"))
    proc: subprocess.Popen[bytes] | None = None
    rt: Runtime | None = None
    pids: list[int] = []
    try:
        out.print(
            f"[bold]ironrt demo[/bold]: offline (no key, no network), in a temporary home {home}\n"
        )
        proc, rt = _start_daemon(home)
        ids: dict[str, str] = {}
        for agent in AGENTS:
            out.print(
                f"  starting [bold]{agent.name:<10}[/bold] budget "
                f"{render.usd(agent.budget_usd):>6}  {agent.what}"
            )
            ids[agent.name] = rt.start_agent(
                str(DEMO_AGENTS / agent.script),
                name=agent.name,
                budget=agent.budget_usd,
                cwd=str(home),
                env={"PYTHONUNBUFFERED": "1"},
                python=sys.executable,
            )
        pids = [a.pid for a in rt.list_agents() if a.pid]
        out.print()
        _live(rt, ids, seconds)
        _summary(rt, ids)
        out.print(
            "\n[bold green]Next:[/bold green] run your own agent with "
            "[bold]ironrt start my_agent.py --budget 1[/bold] (examples in the agents/ folder "
            "of the ironrt repository) and watch it with [bold]ironrt ps[/bold], "
            "[bold]ironrt top[/bold] and [bold]ironrt usage[/bold]. Export OPENAI_API_KEY or "
            "ANTHROPIC_API_KEY before the daemon starts, or set IRONRT_OFFLINE=1 to stay offline."
        )
        return 0
    except KeyboardInterrupt:
        out.print("\ninterrupted: cleaning up")
        return 130
    finally:
        # A second Ctrl-C must not leave a daemon and agents behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _cleanup(proc, rt, pids)
            _wait_for_relay(home)
            shutil.rmtree(home, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)
