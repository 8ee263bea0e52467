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

from ironrt.protocol.events import (
    AgentFailed,
    BudgetExhausted,
    BudgetWarning,
    CircuitOpened,
    Event,
    PiiAlert,
    PiiBlocked,
)

__all__ = ["alert_text"]


def _escape(text: str) -> str:
    """Slack's three control characters; anything else passes as is."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _who(event: Event) -> str:
    name, agent_id = event.agent_name, event.agent_id
    if not name and not agent_id:
        return ""
    who = f"agent '{name}' ({agent_id})" if name and agent_id else f"agent {name or agent_id}"
    return f"{who} of project {event.project}" if event.project else who


def _usd(value: float | None) -> str:
    return f"${value:.4f}" if value is not None else "no limit"


def _budget(event: BudgetWarning | BudgetExhausted, head: str) -> str:
    scope = event.scope or "?"
    return f"{head} of budget {scope}: {_usd(event.spent_usd)} of {_usd(event.budget_usd)}"


def _budget_warning(event: Any) -> str:
    assert isinstance(event, BudgetWarning)
    return _budget(event, f"{event.threshold_percent}% used")


def _budget_exhausted(event: Any) -> str:
    assert isinstance(event, BudgetExhausted)
    return _budget(event, "exhausted, calls are refused,")


def _counts(event: PiiAlert | PiiBlocked) -> str:
    if event.counts:
        return ", ".join(f"{t} x{n}" for t, n in sorted(event.counts.items()))
    return ", ".join(event.types) if event.types else "PII"


def _pii_blocked(event: Any) -> str:
    assert isinstance(event, PiiBlocked)
    return f"a {event.direction or 'request'} was blocked for PII ({_counts(event)})"


def _pii_alert(event: Any) -> str:
    assert isinstance(event, PiiAlert)
    action = event.action or "detected"
    return f"PII {action} in a {event.direction or 'request'} ({_counts(event)})"


def _circuit_opened(event: Any) -> str:
    assert isinstance(event, CircuitOpened)
    circuit = event.circuit or event.endpoint or "?"
    return f"circuit opened for {circuit}: calls to it fail fast until it recovers"


def _agent_failed(event: Any) -> str:
    assert isinstance(event, AgentFailed)
    return f"failed: {event.reason or 'no reason given'}"


_LINES: dict[str, tuple[str, Callable[[Event], str]]] = {
    "BudgetWarning": (":warning:", _budget_warning),
    "BudgetExhausted": (":no_entry:", _budget_exhausted),
    "PiiBlocked": (":lock:", _pii_blocked),
    "PiiAlert": (":mag:", _pii_alert),
    "CircuitOpened": (":zap:", _circuit_opened),
    "AgentFailed": (":x:", _agent_failed),
}

_HOST = socket.gethostname()
_COMMON = {"id", "ts", "agent_id", "agent_name", "project"}


def _generic(event: Event) -> str:
    """Any other kind: its own fields that say something, `name=value`."""
    fields = getattr(type(event), "__struct_fields__", ())
    shown = [
        f"{name}={value}"
        for name in fields
        if name not in _COMMON and (value := getattr(event, name)) not in (None, "", [], {})
    ]
    return " ".join(shown[:8])


def alert_text(event: Event) -> str:
    """`:warning: ironrt@host BudgetWarning: agent 'crew-1' (ab12…): 80% used of budget …`"""
    icon, describe = _LINES.get(event.kind, (":information_source:", _generic))
    what = describe(event)
    line = f"{icon} ironrt@{_HOST} {event.kind}: " + ": ".join(p for p in (_who(event), what) if p)
    return _escape(line.replace("\n", " "))
