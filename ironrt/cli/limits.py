"""The `limits` command group: list, set, unset and rm the limits of each scope.

Scopes are global, `project:NAME` and agents; each holds a budget (optionally per window),
rate limits, a concurrency cap, a model allow-list and a PII floor. Kept apart from the observation
commands so that `ironrt limits ...` loads only this module (see `COMMANDS` in
`__init__.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ironrt.cli import render
from ironrt.cli.app import JsonFlag, app, checked_pii_types
from ironrt.cli.context import agent_names, print_json, runtime
from ironrt.protocol import PiiMode

if TYPE_CHECKING:
    from ironrt.protocol import ScopeLimits


LIMITS_HELP = """Budgets and limits of each scope: global, per project, per agent.

Without a command, list every scope with its limits, spend (settled, and held by
calls in flight), window and calls in flight / waiting. A call must fit the limits
of its agent, of its agent's project and the global ones. With IRONRT_LEDGER_URL
set, `global` and the projects are shared by every daemon on that PostgreSQL: their
limits are the fleet's, SPENT is every daemon's, LEASE what this one may still spend.

\b
    ironrt limits set global --budget 100 --window 1d
    ironrt limits set project:search --budget 20 --window 1h --max-concurrent 4
    ironrt limits set bot --rpm 30 --models 'gpt-4o*,claude-*'
    ironrt limits set project:support --pii block --pii-types secret,card
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
    "pii": "pii",
    "pii_types": "pii-types",
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
    names = agent_names(rt) if any(s.scope.startswith("agent:") for s in scopes) else {}
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
        "PII",
        "IN FLIGHT/WAITING",
        *(["LEASE"] if any(s.shared for s in scopes) else []),
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
            render.pii(s.pii, s.pii_types),
            f"{s.in_flight}/{s.waiting}",
            *([_lease(s)] if any(x.shared for x in scopes) else []),
        )
    render.console().print(t if scopes else "no limits set")


def _lease(s: ScopeLimits) -> str:
    """A shared scope's lease: what this daemon may still spend, until when, and whether
    the fleet ledger answers."""
    if not s.shared:
        return render.DASH
    if s.ledger != "ok":
        return f"ledger {s.ledger}"
    if not s.lease_expires_at:
        return f"none ({s.daemons} daemons)"
    return (
        f"{render.usd(s.leased_usd)} until {render.clock(s.lease_expires_at)} "
        f"(own {render.usd(s.own_spent_usd)}, {s.daemons} daemons)"
    )


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
    if s.pii or s.pii_types:
        items.append("pii at least " + render.pii(s.pii, s.pii_types))
    spent = f"spent {render.usd(s.spent_usd)}" + (" by the fleet" if s.shared else "")
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
    pii: Annotated[
        PiiMode | None,
        typer.Option(
            "--pii",
            help="PII handling every call in the scope gets at least (per type, the "
            "stricter of the agent's and the scope's wins).",
        ),
    ] = None,
    pii_types: Annotated[
        str | None,
        typer.Option(
            "--pii-types",
            metavar="TYPES",
            help="The floor per type: 'secret,card' (these get --pii, else the scope's "
            "--pii), or 'secret=block,email=redact'.",
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
        "pii": pii,
    }
    changes = {field: value for field, value in given.items() if value is not None}
    if not changes and pii_types is None:
        raise typer.BadParameter(
            "nothing to set: give --budget, --window, --rpm, --tpm, --max-concurrent, "
            "--models, --pii or --pii-types (to clear a limit: ironrt limits unset SCOPE "
            "FIELD)"
        )
    # Each value is checked alone, by the protocol's own rules, so the error names the
    # option the user typed (the daemon would name the JSON field).
    for field, value in changes.items():
        try:
            LimitsUpdate(**{field: value})
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=f"'--{LIMIT_OPTIONS[field]}'") from None
    if pii_types is not None:
        # A type named without an action gets --pii, else the scope's own (the client
        # asks the daemon for it).
        checked_pii_types(pii_types, "detect")
        changes["pii_types"] = pii_types
    _show(runtime().set_limits(scope, **changes), json_)


@limits_app.command("unset")
def unset_limits(
    scope: ScopeArg,
    fields: Annotated[
        list[str],
        typer.Argument(
            metavar="FIELD...",
            help="budget, window, rpm, tpm, max-concurrent, models, pii or pii-types.",
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
