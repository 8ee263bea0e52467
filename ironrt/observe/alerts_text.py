"""One readable line per event, for the `text` of an alert webhook's JSON.

Slack's incoming webhooks show `text` as is (and so do Mattermost, Rocket.Chat, Discord's
`/slack` endpoints and Teams' Slack-compatible connectors), so the line is all a person
reads in the channel: who (the agent's name, its project), what happened, the numbers.
It never holds a prompt, a PII value or a key: events carry none (types and counts only).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

__all__ = ["alert_text", "field"]


def field(event: object, name: str) -> Any:
    """A field of an event, typed (a flat attribute) or from before events were typed (in
    `data`): alerts and telemetry read events through this one function."""
    value = getattr(event, name, None)
    if value is None:
        data = getattr(event, "data", None)
        if isinstance(data, dict):
            value = data.get(name)
    return value


def _escape(text: str) -> str:
    """Slack's three control characters; anything else passes as is."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _who(event: object) -> str:
    name = field(event, "agent_name") or field(event, "name")
    agent_id = field(event, "agent_id")
    if not name and not agent_id:
        return ""
    who = f"agent '{name}' ({agent_id})" if name and agent_id else f"agent {name or agent_id}"
    project = field(event, "project")
    return f"{who} of project {project}" if project else who


def _usd(value: object) -> str:
    return f"${value:.4f}" if isinstance(value, int | float) else "?"


def _budget(event: object, head: str) -> str:
    scope = field(event, "scope") or "?"
    spent, budget = field(event, "spent_usd"), field(event, "budget_usd")
    return f"{head} of budget {scope}: {_usd(spent)} of {_usd(budget)}"


def _budget_warning(event: object) -> str:
    percent = field(event, "threshold_percent")
    return _budget(event, f"{percent}% used")


def _budget_exhausted(event: object) -> str:
    return _budget(event, "exhausted, calls are refused,")


def _counts(event: object) -> str:
    counts = field(event, "counts")
    if isinstance(counts, dict) and counts:
        return ", ".join(f"{t} x{n}" for t, n in sorted(counts.items()))
    types = field(event, "types")
    return ", ".join(map(str, types)) if isinstance(types, list) and types else "PII"


def _pii_blocked(event: object) -> str:
    direction = field(event, "direction") or "request"
    return f"a {direction} was blocked for PII ({_counts(event)})"


def _pii_alert(event: object) -> str:
    direction = field(event, "direction") or "request"
    action = field(event, "action") or "detected"
    return f"PII {action} in a {direction} ({_counts(event)})"


def _circuit_opened(event: object) -> str:
    circuit = field(event, "circuit") or field(event, "endpoint") or "?"
    return f"circuit opened for {circuit}: calls to it fail fast until it recovers"


def _agent_failed(event: object) -> str:
    return f"failed: {field(event, 'reason') or 'no reason given'}"


_LINES: dict[str, tuple[str, Callable[[object], str]]] = {
    "BudgetWarning": (":warning:", _budget_warning),
    "BudgetExhausted": (":no_entry:", _budget_exhausted),
    "PiiBlocked": (":lock:", _pii_blocked),
    "PiiAlert": (":mag:", _pii_alert),
    "CircuitOpened": (":zap:", _circuit_opened),
    "AgentFailed": (":x:", _agent_failed),
}

_HOST = socket.gethostname()


def _generic(event: object) -> str:
    skip = {"kind", "id", "ts", "agent_id", "agent_name", "project", "data"}
    data = getattr(event, "data", None)
    if not isinstance(data, dict):
        fields = getattr(type(event), "__struct_fields__", ())
        data = {name: getattr(event, name) for name in fields}
    shown = [f"{k}={v}" for k, v in data.items() if k not in skip and v not in (None, "", [], {})]
    return " ".join(shown[:8])


def alert_text(event: object) -> str:
    """`:warning: ironrt@host BudgetWarning: agent 'crew-1' (ab12…): 80% used of budget …`"""
    kind = str(getattr(event, "kind", "?"))
    icon, describe = _LINES.get(kind, (":information_source:", _generic))
    who = _who(event)
    what = describe(event)
    line = f"{icon} ironrt@{_HOST} {kind}: " + ": ".join(p for p in (who, what) if p)
    return _escape(line.replace("\n", " "))
