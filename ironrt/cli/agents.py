"""Agent commands: start, ps, metrics, logs, budget, set (the fleet commands, `stop`,
`restart` and `rm`, which act on many agents at once, are `fleet.py`).

Each command is one request (two at most) through the sync `Runtime`; the daemon resolves
agent references (id, prefix, name), so the CLI never lists agents just to find one.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from ironrt.cli import render
from ironrt.cli.app import AgentRef, JsonFlag, app
from ironrt.cli.context import print_json, runtime
from ironrt.errors import DaemonUnavailable
from ironrt.protocol import OnBudget, PiiMode, RestartPolicy
from ironrt.values import (
    DEFAULT_MAX_RESTARTS,
    check_resource_limits,
    parse_cpu_seconds,
    parse_memory,
    parse_size,
    parse_uptime,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ironrt.protocol import Agent, Health

T = TypeVar("T")

START_HELP = """Start SCRIPT as a supervised agent and print its id.

SCRIPT is a .py file (run with your current Python or --python) or any executable.
Options before `--` are ironrt's, before or after SCRIPT: an unknown one is an error
(a typo must never start an agent without its budget). Plain words after SCRIPT go to
the agent; so does everything after `--`, options included:

\b
    ironrt start agents/hello.py --budget 5
    ironrt start --name bot agent.py input.txt
    ironrt start agent.py --budget 5 -- --verbose --name passed-to-the-agent
    ironrt start -- node agent.js
"""


def _parse_env(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected K=V, got {pair!r}", param_hint="'--env'")
        out[key] = value
    return out


def _max_restarts(text: str) -> int | None:
    if text.strip().lower() == "unlimited":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise typer.BadParameter(
            f"expected a whole number or 'unlimited', got {text!r}", param_hint="'--max-restarts'"
        )
    return value


def _open_files(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    check_resource_limits(None, value, None)
    return value


def _parsed(parse: Callable[[str], T], text: str, option: str) -> T:
    try:
        return parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None


@app.command(
    "start",
    help=START_HELP,
    context_settings={"allow_interspersed_args": True},
)
def start(
    script: Annotated[str, typer.Argument(metavar="SCRIPT", show_default=False)],
    args: Annotated[list[str] | None, typer.Argument(metavar="ARGS", show_default=False)] = None,
    budget: Annotated[
        float | None,
        typer.Option("--budget", metavar="USD", min=0, help="Spend limit in USD (default: none)."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name (default: from SCRIPT).")] = None,
    restart: Annotated[RestartPolicy, typer.Option("--restart", help="Restart policy.")] = "no",
    max_restarts: Annotated[
        str,
        typer.Option(
            "--max-restarts",
            metavar="N|unlimited",
            help="Restarts in a row after runs shorter than --min-uptime before giving up.",
        ),
    ] = str(DEFAULT_MAX_RESTARTS),
    min_uptime: Annotated[
        str,
        typer.Option(
            "--min-uptime",
            metavar="DUR",
            help="A run shorter than this (500ms, 5s, 2m) is unstable; a longer one resets "
            "the count.",
        ),
    ] = "5s",
    log_max_size: Annotated[
        str | None,
        typer.Option(
            "--log-max-size",
            metavar="SIZE",
            help="Rotate the log at this size (1MB, 512KB; default 10MB or the daemon's).",
        ),
    ] = None,
    log_keep: Annotated[
        int | None,
        typer.Option("--log-keep", min=1, max=100, metavar="N", help="Rotated log files kept."),
    ] = None,
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory",
            metavar="SIZE",
            help="Restart the agent when its process tree's memory (RSS) exceeds this "
            "(512M, 2G), whatever --restart says (PM2's max_memory_restart).",
        ),
    ] = None,
    max_open_files: Annotated[
        str | None,
        typer.Option(
            "--max-open-files",
            metavar="N",
            help="Open files each of its processes may hold (RLIMIT_NOFILE, soft and hard).",
        ),
    ] = None,
    max_cpu_seconds: Annotated[
        str | None,
        typer.Option(
            "--max-cpu-seconds",
            metavar="DUR",
            help="CPU time each of its processes may use (90, 2m, 1h; RLIMIT_CPU): then "
            "the kernel ends it (SIGXCPU) and its restart policy applies.",
        ),
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", metavar="K=V", help="Set a variable (repeatable).")
    ] = None,
    env_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--env-file",
            metavar="FILE",
            help="Variables from a dotenv file, read at each start and never stored: the "
            "place for secrets (repeatable; later files win).",
        ),
    ] = None,
    python: Annotated[
        str | None, typer.Option("--python", metavar="PATH", help="Interpreter for a .py SCRIPT.")
    ] = None,
    on_budget: Annotated[
        OnBudget,
        typer.Option(
            "--on-budget",
            help="When a budget is spent: block its calls, pause the agent until there is "
            "budget again, or stop it.",
        ),
    ] = "block",
    project: Annotated[
        str | None,
        typer.Option(
            "--project",
            metavar="NAME",
            help="Project of the agent: its calls must also fit project:NAME's limits.",
        ),
    ] = None,
    pii: Annotated[
        PiiMode, typer.Option("--pii", help="PII handling in prompts/replies.")
    ] = "detect",
    rpm: Annotated[
        int | None, typer.Option("--rpm", min=1, metavar="N", help="Max LLM requests per minute.")
    ] = None,
    tpm: Annotated[
        int | None, typer.Option("--tpm", min=1, metavar="N", help="Max LLM tokens per minute.")
    ] = None,
    allow_unmetered: Annotated[
        bool, typer.Option("--allow-unmetered", help="Allow calls ironrt cannot price.")
    ] = False,
    cwd: Annotated[
        Path | None, typer.Option("--cwd", metavar="DIR", help="Working directory (default: here).")
    ] = None,
) -> None:
    if cwd is not None and not cwd.is_dir():
        raise typer.BadParameter(f"no such directory: {cwd}", param_hint="'--cwd'")
    agent_id = runtime().start_agent(
        script,
        args or [],
        name=name,
        budget=budget,
        env=_parse_env(env),
        env_files=[str(p) for p in env_file or ()],
        restart=restart,
        max_restarts=_max_restarts(max_restarts),
        min_uptime=_parsed(parse_uptime, min_uptime, "--min-uptime"),
        log_max_size=_parsed(parse_size, log_max_size, "--log-max-size") if log_max_size else None,
        log_keep=log_keep,
        max_memory=_parsed(parse_memory, max_memory, "--max-memory") if max_memory else None,
        max_open_files=(
            _parsed(_open_files, max_open_files, "--max-open-files") if max_open_files else None
        ),
        max_cpu_seconds=(
            _parsed(parse_cpu_seconds, max_cpu_seconds, "--max-cpu-seconds")
            if max_cpu_seconds
            else None
        ),
        cwd=str(cwd.resolve()) if cwd else os.getcwd(),
        on_budget=on_budget,
        pii=pii,
        rpm=rpm,
        tpm=tpm,
        allow_unmetered=allow_unmetered,
        python=python,
        project=project,
    )
    print(agent_id)
    for line in _mismatches(runtime().health(), os.environ):
        print(f"ironrt: warning: {line}", file=sys.stderr)


_RESTART = "ironrt daemon stop --keep-agents && {env}ironrt daemon start"


def _mismatches(health: Health, environ: Mapping[str, str]) -> list[str]:
    """What this shell asks for that the running daemon does not do. The daemon reads its
    settings and keys when it starts: exported later, they reach only this command, and
    the agent would get a 401 or a real call it did not expect."""
    from ironrt.keys import ENV_NAMES
    from ironrt.settings_table import Flag
    from ironrt.supervisor.environment import TOKEN_PREFIX

    found = []
    try:  # read as the daemon reads it (settings_table.Flag); a bad value: nothing to say
        offline = Flag().parse(environ["IRONRT_OFFLINE"]) if environ.get("IRONRT_OFFLINE") else None
    except ValueError:
        offline = None
    if offline is True and not health.offline:
        how = _RESTART.format(env="IRONRT_OFFLINE=1 ")
        found.append(f"IRONRT_OFFLINE is set here but the daemon calls real providers: {how}")
    elif offline is False and health.offline:
        how = _RESTART.format(env="IRONRT_OFFLINE=0 ")
        found.append(f"IRONRT_OFFLINE=0 here but the daemon answers offline: {how}")
    if not health.offline:
        for provider, names in ENV_NAMES.items():
            name = next((n for n in names if environ.get(n)), None)
            value = environ.get(name or "", "")
            # Inside an agent the variable holds its IC_TOKEN, not a key: nothing to say.
            if (
                name
                and not value.startswith(TOKEN_PREFIX)
                and not health.provider_keys.get(provider)
            ):
                how = _RESTART.format(env="")
                found.append(
                    f"{name} is set here but the daemon has no {provider} key (it reads keys "
                    f"when it starts); from this shell: {how}"
                )
    return found


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
    rpm: Annotated[
        int | None, typer.Option("--rpm", min=1, metavar="N", help="Max LLM requests per minute.")
    ] = None,
    tpm: Annotated[
        int | None, typer.Option("--tpm", min=1, metavar="N", help="Max LLM tokens per minute.")
    ] = None,
    on_budget: Annotated[
        OnBudget | None, typer.Option("--on-budget", help="When the budget is spent.")
    ] = None,
    budget: Annotated[
        float | None, typer.Option("--budget", metavar="USD", min=0, help="Spend limit in USD.")
    ] = None,
    unset: Annotated[
        list[str] | None,
        typer.Option("--unset", metavar="rpm|tpm|budget", help="Remove a limit (repeatable)."),
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
    for name in unset or ():
        field = {"rpm": "rpm", "tpm": "tpm", "budget": "budget_usd"}.get(name)
        if field is None:
            raise typer.BadParameter(f"--unset takes rpm, tpm or budget, not {name!r}")
        changes[field] = None
    if not changes:
        raise typer.BadParameter(
            "nothing to change: give --pii, --rpm, --tpm, --on-budget, --budget or --unset"
        )
    a = runtime().update_agent(ref, **changes)
    print(
        f"{a.name} ({a.id}): budget {render.budget(a.spent_usd, a.budget_usd)}, "
        f"on-budget {a.on_budget}, pii {a.pii}, rpm {a.rpm or render.DASH}, "
        f"tpm {a.tpm or render.DASH}"
    )
