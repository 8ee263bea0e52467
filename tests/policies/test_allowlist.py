"""AllowlistPolicy: the models each scope of a call allows (glob patterns), checked before
anything is reserved or forwarded."""

from __future__ import annotations

import pytest

from ironrt.governance.flow import Flow
from ironrt.governance.ledger import Ledger
from ironrt.policies.allowlist import AllowlistPolicy
from ironrt.protocol import ModelRefused
from ironrt.testing import tagent, tflow


def checked(flow: Flow) -> Flow:
    AllowlistPolicy().request(flow)
    return flow


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-4.1-nano"])
def test_a_model_matching_a_pattern_goes_through(model: str) -> None:
    flow = checked(tflow(model=model, models=["gpt-4o-mini*", "gpt-4.1-*"]))
    assert flow.refusal is None and flow.events == []


def test_a_model_outside_the_agents_list_is_a_403_naming_model_scope_and_patterns() -> None:
    flow = checked(tflow(model="gpt-4o", models=["gpt-4o-mini*", "o4-mini"]))
    r = flow.refusal
    assert r is not None
    assert (r.status, r.type, r.code, r.policy, r.retryable) == (
        403,
        "permission_error",
        "model_not_allowed",
        "allowlist",
        False,  # retrying cannot help: x-should-retry: false
    )
    assert "gpt-4o " in r.message and "agent:a1" in r.message
    assert "gpt-4o-mini*, o4-mini" in r.message
    assert flow.events == [ModelRefused(model="gpt-4o", scope="agent:a1")]


def test_every_scope_of_the_call_is_checked_and_the_first_refusing_one_is_named() -> None:
    ledger = Ledger()
    ledger.set_limits(ledger.scope("project:research"), {"models": ["claude-*"]})
    agent = tagent(ledger=ledger, project="research")  # the agent itself allows anything
    assert checked(tflow("anthropic", agent=agent)).refusal is None
    refused = checked(tflow(agent=agent))  # gpt-4o-mini: not a claude model
    assert refused.refusal is not None and "project:research" in refused.refusal.message
    ledger.set_limits(ledger.scope("global"), {"models": ["nothing-at-all"]})
    refused = checked(tflow("anthropic", agent=agent))
    assert refused.refusal is not None and "in global" in refused.refusal.message


def test_no_list_allows_every_model_and_a_call_without_a_model_is_not_checked() -> None:
    assert checked(tflow(model="any-model-at-all")).refusal is None
    models_list = checked(tflow(endpoint="models", models=["gpt-4o-mini"]))
    assert models_list.model == "" and models_list.refusal is None


def test_an_empty_list_allows_nothing() -> None:
    flow = checked(tflow(models=[]))
    assert flow.refusal is not None and flow.refusal.code == "model_not_allowed"
