"""Agent commands: ps, metrics, logs, budget, set (`start` is start.py; the fleet
commands, `stop`, `restart` and `rm`, which act on many agents at once, are `fleet.py`).

Each command is one request (two at most) through the sync `Runtime`; the daemon resolves
agent references (id, prefix, name), so the CLI never lists agents just to find one.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from ironrt.cli import render
from ironrt.cli.app import AgentRef, JsonFlag, RpmOption, TpmOption, app, checked_pii_types
from ironrt.cli.context import print_json, runtime
from ironrt.errors import DaemonUnavailable
from ironrt.protocol import OnBudget, PiiMode

if TYPE_CHECKING:
    from ironrt.protocol import Agent


@app.command("ps")
def ps(
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include agents that ended.")] = False,
    json_: JsonFlag = False,
) -> None:
    """List agents (the live ones unless --all)."""
    from ironrt.cli import ps as ps_command

    ps_command.run(all_=all_, json_=json_)


@app.command("metrics")
def metrics(ref: AgentRef, json_: JsonFlag = False) -> None:
    """CPU, memory, uptime, LLM calls, tokens, spend and budget of one agent."""
    rt = runtime()
    m = rt.get_metrics(ref)
    if json_:
        print_json(m)
        return
    from rich.table import Table

    # Metrics carry no project or stop reason: ask for the agent too (by its id, so both
    # answers are about the same agent even if `ref` is a reused name).
    agent = rt.get_agent(m.id)
    live = m.status.live
    pct = f" ({m.budget_used_percent:g}%)" if m.budget_used_percent is not None else ""
    rows = [
        (
            "status",
            m.status.value
            + (f", exit code {m.exit_code}" if m.exit_code is not None else "")
            + (f" ({agent.stop_reason})" if agent.stop_reason else ""),
        ),
        ("project", agent.project or render.DASH),
        ("pid", str(m.pid or render.DASH)),
        ("uptime", render.duration(m.uptime_s) if live else render.DASH),
        ("cpu", f"{m.cpu_percent:.1f}%" if live else render.DASH),
        (
            "memory",
            f"{render.nbytes(m.rss_bytes)} in {m.num_processes} process(es)"
            if live
            else render.DASH,
        ),
        ("restarts", str(m.restarts)),
        ("llm calls", f"{m.llm_calls} ({m.errors} failed)"),
        ("tokens", f"{m.input_tokens:,} in / {m.output_tokens:,} out"),
        ("spent", render.usd(m.spent_usd)),
        (
            "budget",
            f"{render.usd(m.budget_usd)}{pct}, {render.usd(m.budget_remaining_usd)} left"
            if m.budget_usd is not None
            else "no limit",
        ),
        ("pii", agent.pii),
        ("pii types", render.pii_types(agent.pii_types)),
        *((("pii file", agent.pii_file),) if agent.pii_file else ()),
        ("pii findings", str(m.pii_findings)),
        ("resource limits", _resource_limits(agent)),
    ]
    rows.extend((f"circuit {endpoint}", state) for endpoint, state in sorted(m.circuits.items()))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        grid.add_row(key, value)
    render.console().print(grid)


def _resource_limits(agent: Agent) -> str:
    parts = []
    if agent.max_memory_bytes is not None:
        parts.append(f"restart above {render.nbytes(agent.max_memory_bytes)} memory")
    if agent.max_open_files is not None:
        parts.append(f"open files {agent.max_open_files}")
    if agent.max_cpu_seconds is not None:
        parts.append(f"cpu {render.duration(agent.max_cpu_seconds)} per process")
    return ", ".join(parts) or "none"


@app.command("logs")
def logs(
    ref: AgentRef,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep printing, across restarts, until the agent ends for good (or Ctrl-C).",
        ),
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, metavar="LINES", help="Lines of history to show.")
    ] = 100,
) -> None:
    """Print an agent's output (stdout and stderr, interleaved as written)."""
    out = sys.stdout.buffer
    if not follow:
        out.write(runtime().logs(ref, tail=lines).encode())
        out.flush()
        return
    rt = runtime(autostart=False)  # a follower never starts a daemon
    agent_id = rt.get_agent(ref).id  # the same agent to the end, whatever its name does
    with contextlib.suppress(ConnectionError):  # the daemon went: said below
        for chunk in rt.follow_logs(agent_id, tail=lines):
            out.write(chunk)
            out.flush()
    # The stream ends when the agent has ended for good, across its restarts, or when the
    # daemon stops: say which.
    try:
        agent = runtime(autostart=False).get_agent(agent_id)  # never revive a stopped daemon
    except DaemonUnavailable:
        print("ironrt: the daemon stopped; no longer following the agent", file=sys.stderr)
        raise typer.Exit(1) from None
    if agent.status.live:
        print(f"ironrt: the daemon stopped; {agent.name} ({agent.id}) runs on", file=sys.stderr)
        raise typer.Exit(1)
    word, _ = render.status_text(agent)
    restarts = f"{agent.restarts} restart{'s' if agent.restarts != 1 else ''}"
    print(f"ironrt: {agent.name} ({agent.id}) {word} after {restarts}", file=sys.stderr)


@app.command("budget")
def set_budget(
    ref: AgentRef,
    usd: Annotated[
        float,
        typer.Argument(metavar="USD", min=0, help="The new budget in USD.", show_default=False),
    ],
) -> None:
    """Raise or lower the budget of an agent, also while it runs."""
    agent = runtime().set_budget(ref, usd)
    print(
        f"budget of {agent.name} ({agent.id}): {render.budget(agent.spent_usd, agent.budget_usd)}"
    )


@app.command("set")
def set_limits(
    ref: AgentRef,
    pii: Annotated[PiiMode | None, typer.Option("--pii", help="PII handling.")] = None,
    pii_types: Annotated[
        str | None,
        typer.Option(
            "--pii-types",
            metavar="TYPES",
            help="Which PII types to act on, as `start --pii-types` takes them ('none': "
            "every type follows --pii again). A type named without an action gets the "
            "--pii given here, else the agent's.",
        ),
    ] = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    on_budget: Annotated[
        OnBudget | None, typer.Option("--on-budget", help="When the budget is spent.")
    ] = None,
    budget: Annotated[
        float | None, typer.Option("--budget", metavar="USD", min=0, help="Spend limit in USD.")
    ] = None,
    unset: Annotated[
        list[str] | None,
        typer.Option(
            "--unset",
            metavar="rpm|tpm|budget|pii-types",
            help="Remove a limit or the PII type selection (repeatable).",
        ),
    ] = None,
) -> None:
    """Change the governance settings of an agent, also while it runs."""
    changes: dict[str, object] = {
        k: v
        for k, v in (
            ("pii", pii),
            ("rpm", rpm),
            ("tpm", tpm),
            ("on_budget", on_budget),
            ("budget_usd", budget),
        )
        if v is not None
    }
    if pii_types is not None:
        if pii_types.strip().lower() == "none":
            changes["pii_types"] = None
        else:
            # Checked here, so a typo'd action names the option; a bare name's action
            # (--pii, else the agent's own) is filled in by the client.
            checked_pii_types(pii_types, "detect")
            changes["pii_types"] = pii_types
    for name in unset or ():
        field = _UNSET.get(name)
        if field is None:
            raise typer.BadParameter(f"--unset takes rpm, tpm, budget or pii-types, not {name!r}")
        if changes.get(field) is not None:
            # Both asked at once: whichever won, the other was dropped without a word.
            option = "--" + name.replace("_", "-")
            raise typer.BadParameter(f"{option} and --unset {name} contradict each other")
        changes[field] = None
    if not changes:
        raise typer.BadParameter(
            "nothing to change: give --pii, --pii-types, --rpm, --tpm, --on-budget, --budget "
            "or --unset"
        )
    a = runtime().update_agent(ref, **changes)
    print(
        f"{a.name} ({a.id}): budget {render.budget(a.spent_usd, a.budget_usd)}, "
        f"on-budget {a.on_budget}, pii {render.pii(a.pii, a.pii_types)}, "
        f"rpm {a.rpm or render.DASH}, tpm {a.tpm or render.DASH}"
    )


_UNSET = {
    "rpm": "rpm",
    "tpm": "tpm",
    "budget": "budget_usd",
    "pii-types": "pii_types",
    "pii_types": "pii_types",
}
