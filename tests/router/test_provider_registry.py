"""The provider registry: an OpenAI-compatible provider is one entry.

In process: an entry registered in code reaches every place a provider is named (the key
variables, the secrets scrubbed from agents and the variables set for them, routing by
its path prefix, its upstream URL, the offline provider's models). Through a real daemon:
a `[providers.acme]` table in `$IRONRT_HOME/providers.toml` is all it takes for an agent
using the official `openai` SDK with the base URL and key its environment gives it to be
governed (PII redacted, budget charged), priced and recorded, with the real key reaching
the upstream and never the agent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironrt.config import ConfigError, Settings
from ironrt.governance.tokens import TOKEN_PREFIX
from ironrt.keys import ENV_NAMES, load_keys
from ironrt.providers import ADAPTERS, adapter_for, registry
from ironrt.providers.offline import DEFAULT_MODELS, offline_response
from ironrt.settings_table import BUILTIN_PROVIDERS, BY_NAME, PROVIDERS
from ironrt.supervisor.environment import PROVIDER_SECRETS, agent_environment
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import agent_script, run_agent

ACME_KEY = "sk-acme-REALKEYnevershown0123456789abcdefABCDEF"
EMAIL = "jane.doe@example.com"
PROVIDERS_TOML = """\
[providers.acme]
base_url = "https://api.acme.invalid/v1"
base_url_env = "ACME_BASE_URL"
models = ["acme-1"]
"""
#: The model's price, per million tokens: genai-prices knows no `acme` provider.
PRICES_TOML = """\
[models."acme-1"]
input_mtok = 3.0
output_mtok = 7.0
"""


# ---- in process: one entry reaches every place -------------------------------------------


@pytest.fixture
def beta() -> Iterator[registry.ProviderEntry]:
    entry = registry.configured_entry(
        "beta",
        registry.ProviderTable(base_url="http://127.0.0.1:9/v1", models=["beta-small"]),
    )
    registry.register(entry)
    try:
        yield entry
    finally:
        registry.unregister("beta")


def test_the_built_in_providers_are_entries_too() -> None:
    assert PROVIDERS == ("openai", "anthropic") == tuple(e.name for e in BUILTIN_PROVIDERS)
    for entry in BUILTIN_PROVIDERS:
        assert ENV_NAMES[entry.name] == entry.key_env
        assert entry.base_url_env in BY_NAME  # a setting, also in config.toml
        assert set(entry.key_env) <= PROVIDER_SECRETS
        assert DEFAULT_MODELS[entry.name] == entry.models
        assert ADAPTERS[entry.name].entry is entry
    env = agent_environment({}, agent_id="a", token="ic-t", router_url="http://r:1")
    assert env["OPENAI_BASE_URL"] == env["OPENAI_API_BASE"] == "http://r:1/v1"
    assert env["ANTHROPIC_BASE_URL"] == "http://r:1"
    assert env["OPENAI_API_KEY"] == env["ANTHROPIC_API_KEY"] == "ic-t"
    assert "ANTHROPIC_AUTH_TOKEN" not in env


def test_a_registered_entry_reaches_every_place(beta: registry.ProviderEntry) -> None:
    assert (beta.key_env, beta.base_url_env, beta.path_prefix) == (
        ("BETA_API_KEY",),
        "IRONRT_BETA_BASE_URL",
        "/beta",
    )
    # Keys: loaded from its variable, scrubbed from agents, its IC_TOKEN variable set.
    assert ENV_NAMES["beta"] == ("BETA_API_KEY",)
    keys = load_keys({"BETA_API_KEY": "sk-beta"}, Path("/nonexistent/keys.toml"))
    assert (keys.get("beta"), keys.sources["beta"]) == ("sk-beta", "BETA_API_KEY")
    assert "BETA_API_KEY" in PROVIDER_SECRETS
    env = agent_environment(
        {"BETA_API_KEY": "sk-beta", "PATH": "/bin"},
        agent_id="a",
        token="ic-t",
        router_url="http://r:1",
        overrides={"BETA_API_KEY": "sk-beta-again"},
    )
    assert env["BETA_API_KEY"] == "ic-t" and env["BETA_BASE_URL"] == "http://r:1/beta/v1"
    assert "sk-beta" not in json.dumps(env)
    # Routing: its prefix names it; the upstream is sent the path without it.
    adapter = adapter_for("/beta/v1/chat/completions", {"authorization": "Bearer t"})
    assert adapter is ADAPTERS["beta"] and adapter.name == "beta"
    assert adapter_for("/beta/v2/chat/completions", {}) is None
    assert adapter_for("/gamma/v1/chat/completions", {}) is None
    assert adapter.endpoint_for("POST", "/beta/v1/chat/completions") == "chat.completions"
    assert adapter.endpoint_for("GET", "/beta/v1/models/beta-small") == "models"
    assert adapter.upstream_url("/beta/v1/embeddings?x=1") == "http://127.0.0.1:9/v1/embeddings?x=1"
    assert adapter.upstream_auth_headers("sk-beta", "BETA_API_KEY") == {
        "authorization": "Bearer sk-beta"
    }
    # The offline provider speaks its family's API and lists its models.
    listing = json.loads(offline_response("beta", "models", None, path="/beta/v1/models").body)
    assert [m["id"] for m in listing["data"]] == ["beta-small"]
    body = {"model": "beta-small", "messages": [{"role": "user", "content": "hi"}]}
    answer = json.loads(offline_response("beta", "chat.completions", body).body)
    assert answer["object"] == "chat.completion" and answer["usage"]["prompt_tokens"] == 1


def test_an_entry_that_would_collide_is_refused(beta: registry.ProviderEntry) -> None:
    with pytest.raises(ValueError, match="taken by ironrt"):
        registry.register(registry.configured_entry("openai", beta_table()))
    clash = registry.ProviderTable(base_url="http://x:1", sdk_base_url_env=["OPENAI_BASE_URL"])
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        registry.register(registry.configured_entry("gamma", clash))
    with pytest.raises(ValueError, match="base_url"):
        registry.register(registry.configured_entry("gamma", beta_table("ftp://x")))
    with pytest.raises(ValueError, match="built in"):
        registry.unregister("anthropic")
    assert "gamma" not in registry.REGISTRY


def beta_table(base_url: str = "http://127.0.0.1:9") -> registry.ProviderTable:
    return registry.ProviderTable(base_url=base_url)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[providers.acme]\nbase_url = "http://x:1"\nkey_evn = ["A"]\n', "mean 'key_env'"),
        ("[providers.acme]\nfamily = 'openai'\n", "base_url"),
        ('[providers.acme]\nbase_url = "http://x:1"\nfamily = "gemini"\n', "family"),
        ('[providers.acme]\nbase_url = "not a url"\n', "http:// or https://"),
        ('base_url = "http://x:1"\n', "'base_url'"),
        # Every agent would get PATH=<the router's URL>, or HOME=<its IC_TOKEN>.
        (
            '[providers.acme]\nbase_url = "http://x:1"\nsdk_base_url_env = ["PATH"]\n',
            "provider 'acme': PATH is not a provider's variable: every agent's environment",
        ),
        ('[providers.acme]\nbase_url = "http://x:1"\nkey_env = ["HOME"]\n', "HOME is not a"),
        ('[providers.acme]\nbase_url = "http://x:1"\nkey_env = ["IRONRT_HOME"]\n', "IRONRT_HOME"),
        ('[providers.acme]\nbase_url = "http://x:1"\nkey_env = ["lc_all"]\n', "lc_all is not"),
    ],
)
def test_a_bad_providers_file_is_refused_naming_the_key(
    tmp_path: Path, text: str, says: str
) -> None:
    (tmp_path / "providers.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"providers\.toml") as info:
        Settings.load({"IRONRT_HOME": str(tmp_path)})
    assert says in str(info.value)
    assert "acme" not in registry.REGISTRY


def test_a_bad_base_url_variable_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "providers.toml").write_text(PROVIDERS_TOML)
    try:
        with pytest.raises(ConfigError, match=r"ACME_BASE_URL \(the acme upstream\)"):
            Settings.load({"IRONRT_HOME": str(tmp_path), "ACME_BASE_URL": "acme.example"})
        url = "http://127.0.0.1:7/v1"
        settings = Settings.load({"IRONRT_HOME": str(tmp_path), "ACME_BASE_URL": url})
        assert settings.base_urls == {"acme": url}
    finally:
        registry.unregister("acme")


# ---- through a real daemon ---------------------------------------------------------------


@pytest.fixture(scope="module")
def acme() -> Iterator[tuple[TempDaemon, FakeUpstream]]:
    """A daemon that knows `acme` from providers.toml only, forwarding to a fake upstream
    that answers 401 unless it is sent acme's real key."""
    with FakeUpstream() as up:
        up.expect_key = ACME_KEY
        env = {"ACME_API_KEY": ACME_KEY, "ACME_BASE_URL": up.url, "IRONRT_RETRY_MAX_ATTEMPTS": "1"}
        d = TempDaemon(offline=False, env=env)
        (d.home / "providers.toml").write_text(PROVIDERS_TOML)
        (d.home / "prices.toml").write_text(PRICES_TOML)
        with d:
            yield d, up


AGENT = f"""
    import json, os, openai
    client = openai.OpenAI(
        api_key=os.environ["ACME_API_KEY"], base_url=os.environ["ACME_BASE_URL"], max_retries=0
    )
    said = "please mail {EMAIL} today"
    answer = client.chat.completions.create(
        model="acme-1", messages=[{{"role": "user", "content": said}}]
    )
    stream = client.chat.completions.create(
        model="acme-1", stream=True, messages=[{{"role": "user", "content": "stream it"}}]
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    print(json.dumps({{
        "key": os.environ["ACME_API_KEY"],
        "base": os.environ["ACME_BASE_URL"],
        "answer": answer.choices[0].message.content,
        "streamed": "".join(pieces),
        "env": dict(os.environ),
    }}))
"""


def test_an_openai_compatible_provider_from_providers_toml_is_governed(
    acme: tuple[TempDaemon, FakeUpstream], tmp_path: Path
) -> None:
    d, up = acme
    up.clear_requests()
    script = agent_script(tmp_path, "acme_agent.py", AGENT)
    agent_id = d.rt.start_agent(script, budget=1.0, pii="redact")
    final = d.rt.wait(agent_id, timeout=60)
    log = d.rt.logs(agent_id, tail=10_000)
    assert final.exit_code == 0, log
    out = json.loads(log.splitlines()[-1])

    # The agent's environment pointed its SDK at the router under acme's prefix, with
    # its IC_TOKEN as the key; the real key is nowhere in it.
    assert out["base"] == d.router_url + "/acme/v1"
    assert out["key"].startswith(TOKEN_PREFIX) and out["key"] != ACME_KEY
    assert ACME_KEY not in json.dumps(out["env"])

    # The upstream got the real key (it answers 401 otherwise), on the path without the
    # prefix, and never the agent's token or the e-mail address (redacted by the policy).
    sent = up.wait_for_requests(2)
    assert [(r.method, r.path) for r in sent] == [("POST", "/v1/chat/completions")] * 2
    assert all(r.headers["authorization"] == f"Bearer {ACME_KEY}" for r in sent)
    assert all(out["key"] not in json.dumps(r.headers) for r in sent)
    assert EMAIL not in sent[0].raw.decode() and "[EMAIL_1]" in sent[0].raw.decode()
    assert EMAIL in out["answer"]  # the offline echo's placeholder, restored for the agent
    assert sent[1].body["stream_options"] == {"include_usage": True}  # usage is metered
    assert out["streamed"].startswith("This is an offline reply")

    # Priced and recorded as acme's calls, and charged to the agent's budget.
    traces = [t for t in d.rt.traces(agent=agent_id) if t.provider == "acme"]
    assert [(t.endpoint, t.stream, t.status_code, t.model) for t in traces] == [
        ("chat.completions", False, 200, "acme-1"),
        ("chat.completions", True, 200, "acme-1"),
    ]
    for t in traces:
        assert t.input_tokens > 0 and t.output_tokens > 0
        expected = (t.input_tokens * 3.0 + t.output_tokens * 7.0) / 1e6
        assert t.cost_usd == pytest.approx(expected)
    wait_until(lambda: d.rt.get_agent(agent_id).spent_usd > 0, timeout=5)
    spent = d.rt.get_agent(agent_id).spent_usd
    assert spent == pytest.approx(sum(t.cost_usd or 0 for t in traces))
    assert d.rt.health().provider_keys.get("acme") is True

    # The key reached no log line and no row of the database.
    for path in (d.home / "ironrt.db", d.home / "daemon.log", d.home / "daemon.err"):
        if path.exists():
            assert ACME_KEY.encode() not in path.read_bytes(), path


def test_an_unknown_prefix_is_no_provider(
    acme: tuple[TempDaemon, FakeUpstream], tmp_path: Path
) -> None:
    d, up = acme
    up.clear_requests()
    script = agent_script(
        tmp_path,
        "other.py",
        """
        import os, openai
        base = os.environ["IRONRT_ROUTER_URL"] + "/nobody/v1"
        client = openai.OpenAI(api_key=os.environ["ACME_API_KEY"], base_url=base, max_retries=0)
        try:
            client.chat.completions.create(model="acme-1", messages=[{"role": "user", "content": "x"}])
        except openai.NotFoundError as exc:
            print("404", exc.code)
        """,
    )
    assert "404 unknown_endpoint" in run_agent(d, script, budget=1.0)
    assert up.requests == []


def test_a_bad_providers_file_stops_the_daemon_in_one_line() -> None:
    d = TempDaemon()
    try:
        (d.home / "providers.toml").write_text('[providers.acme]\nbse_url = "http://x:1"\n')
        with pytest.raises(RuntimeError, match="daemon exited with 2"):
            d.start()
        lines = d.stderr().strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in d.stderr(), d.stderr()
        assert "unknown key 'bse_url' in [providers.acme]" in lines[0]
        assert "did you mean 'base_url'?" in lines[0]
    finally:
        d.__exit__(None, None, None)
