"""A caller's mistakes on the router, through a real offline daemon and a real agent's
IC_TOKEN: each answer says what the mistake is, not something beside it."""

from __future__ import annotations

from pathlib import Path

import httpx

from ironrt.tempdaemon import TempDaemon
from tests.router.helpers import token_agent


def test_a_call_without_a_model_says_so(daemon: TempDaemon, tmp_path: Path) -> None:
    """It said "no known price for model ''... add [models.""] to prices.toml"."""
    agent_id, token = token_agent(daemon, tmp_path, budget=1.0)
    auth = {"authorization": f"Bearer {token}"}
    url = daemon.router_url + "/v1/chat/completions"
    for body in ({"messages": [{"role": "user", "content": "hi"}]}, {}):
        r = httpx.post(url, json=body, headers=auth, timeout=10)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "model_required" and error["param"] == "model"
        assert "names no `model`" in error["message"]
        assert r.headers["x-should-retry"] == "false"
    assert daemon.rt.get_metrics(agent_id).spent_usd == 0


def test_a_token_in_the_wrong_header_of_an_openai_path_is_a_401(
    daemon: TempDaemon, tmp_path: Path
) -> None:
    """An x-api-key header made /v1/chat/completions look like Anthropic's, where it
    "cannot be metered" (404), though the path is supported."""
    _, token = token_agent(daemon, tmp_path, budget=1.0)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    url = daemon.router_url + "/v1/chat/completions"
    for headers in ({"x-api-key": token}, {"x-api-key": token, "authorization": "Bearer bogus"}):
        r = httpx.post(url, json=body, headers=headers, timeout=10)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "invalid_ic_token"
        assert token not in r.text
    ok = httpx.post(url, json=body, headers={"authorization": f"Bearer {token}"}, timeout=10)
    assert ok.status_code == 200, ok.text
