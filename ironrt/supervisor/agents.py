"""Finding an agent by what a user types: a full id, a unique id prefix, or a name."""

from __future__ import annotations

from collections.abc import Iterable

from ironrt.errors import AgentNotFound, AmbiguousAgent


def resolve(ref: str, agents: Iterable[tuple[str, str, bool]]) -> str:
    """`agents` yields (id, name, live). Exact id, then name (the live one first; several
    ended ones of that name are ambiguous), then id prefix."""
    rows = list(agents)
    if not ref:
        raise AgentNotFound("an agent id, id prefix or name is required")
    for agent_id, _, _ in rows:
        if agent_id == ref:
            return agent_id
    named = [(agent_id, live) for agent_id, name, live in rows if name == ref]
    live_named = [agent_id for agent_id, live in named if live]
    if len(live_named) == 1:
        return live_named[0]
    if len(named) == 1:
        return named[0][0]
    if len(named) > 1 and not live_named:
        # Several ended agents of that name: any pick could remove the wrong one's record.
        shown = ", ".join(agent_id for agent_id, _ in named[:5])
        raise AmbiguousAgent(f"'{ref}' names {len(named)} ended agents ({shown}); give one's id")
    prefixed = [agent_id for agent_id, _, _ in rows if agent_id.startswith(ref)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        shown = ", ".join(sorted(prefixed)[:5])
        raise AmbiguousAgent(
            f"'{ref}' matches {len(prefixed)} agents ({shown}); give more of the id"
        )
    raise AgentNotFound(f"no agent with id, id prefix or name '{ref}'")


def unique_name(wanted: str, live_names: set[str]) -> str:
    if wanted not in live_names:
        return wanted
    n = 2
    while f"{wanted}-{n}" in live_names:
        n += 1
    return f"{wanted}-{n}"
