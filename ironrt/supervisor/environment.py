"""The environment an agent process gets (the contract of DESIGN.md, "Agent environment").

The caller's environment is the base, so virtualenvs, PATH and relative paths behave as
the user expects; real provider secrets are scrubbed from it, and the router's address and
the agent's own IC_TOKEN are put where the official SDKs look for a key and a base URL.
An agent must never hold a real provider key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Set
from urllib.parse import urlsplit

from ironrt.providers.registry import agent_variables, key_variables
from ironrt.sdnotify import NOTIFY_VARIABLES

#: Credentials of providers ironrt does not (yet) route to, and the OpenAI account
#: variables that go with a key. The key variables of every registered provider are added
#: (`PROVIDER_SECRETS`).
_OTHER_SECRETS = frozenset(
    {
        "OPENAI_ADMIN_KEY",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "AZURE_OPENAI_API_KEY",
        "AZURE_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "MISTRAL_API_KEY",
        "COHERE_API_KEY",
        "CO_API_KEY",
        "GROQ_API_KEY",
        "TOGETHER_API_KEY",
        "FIREWORKS_API_KEY",
        "DEEPSEEK_API_KEY",
        "XAI_API_KEY",
        "OPENROUTER_API_KEY",
        "PERPLEXITY_API_KEY",
        "HF_TOKEN",
        "HUGGINGFACE_API_KEY",
        "AWS_BEARER_TOKEN_BEDROCK",
    }
)


class _ProviderSecrets(Set[str]):
    """The other providers' credentials and every registered provider's key variables,
    read from the registry on every use (a provider of providers.toml included)."""

    def _all(self) -> frozenset[str]:
        return _OTHER_SECRETS | key_variables()

    def __contains__(self, name: object) -> bool:
        return name in _OTHER_SECRETS or name in key_variables()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


#: Variables that carry real provider credentials. Removed from every agent's environment
#: (and never stored); each provider's canonical key variable is then set to the IC_TOKEN.
PROVIDER_SECRETS: Set[str] = _ProviderSecrets()

#: ironrt's own settings do not leak into agents (an agent is not a daemon client).
_DAEMON_ONLY_PREFIX = "IRONRT_"

#: systemd's notify protocol (see sdnotify.py): an agent must never speak to the service
#: manager, in the daemon's name or in that of a unit the caller ran in.
_SERVICE_MANAGER = frozenset(NOTIFY_VARIABLES)


def scrub(environ: Mapping[str, str], secrets: Set[str] = PROVIDER_SECRETS) -> dict[str, str]:
    """The caller's environment minus provider secrets, ironrt's own settings and the
    service manager's variables."""
    secrets = frozenset(secrets)  # once: the registry's view recomputes on each lookup
    return {
        k: v
        for k, v in environ.items()
        if k not in secrets and k not in _SERVICE_MANAGER and not k.startswith(_DAEMON_ONLY_PREFIX)
    }


def refused_override(name: str) -> str | None:
    """Why an agent cannot be given `name` (`--env NAME=...`), or None if it can.

    Each of these would otherwise be dropped or overwritten without a word, and the agent
    would run with something other than what its caller asked for: a real key never
    reaches an agent, ironrt's settings and the service manager's are the daemon's, and
    ironrt sets the variables that point the SDKs at the router."""
    if name in _OTHER_SECRETS or name in key_variables():
        why = (
            "it holds a provider's real key, which never reaches an agent (the router adds "
            "it to each call): give it to the daemon, in its environment or keys.toml"
        )
    elif name in _ROUTED or name in agent_variables("", ""):
        why = (
            "ironrt sets it for every agent (the agent's token for the router, or the "
            "router's address for its SDK)"
        )
    elif name.startswith(_DAEMON_ONLY_PREFIX):
        why = "it is an ironrt setting, which configures the daemon, not an agent"
    elif name in _SERVICE_MANAGER:
        why = "it belongs to the service manager, which an agent never speaks to"
    else:
        return None
    return f"cannot set {name} for an agent: {why}"


#: What `agent_environment` sets for every agent besides the SDKs' variables (it extends
#: NO_PROXY, so an agent's own NO_PROXY is kept).
_ROUTED = frozenset({"IC_TOKEN"})


def _extend_no_proxy(current: str | None, router_url: str) -> str:
    """The agent's NO_PROXY plus loopback and the router's own host: a proxy set for the
    agent (HTTPS_PROXY) must not carry its calls to the router, wherever the router
    listens (IRONRT_ROUTER_HOST may be an interface's address or a name)."""
    parts = [p.strip() for p in (current or "").split(",") if p.strip()]
    router_host = urlsplit(router_url).hostname
    for host in ("127.0.0.1", "localhost", *([router_host] if router_host else [])):
        if host not in parts:
            parts.append(host)
    return ",".join(parts)


def agent_environment(
    base: Mapping[str, str],
    *,
    agent_id: str,
    token: str,
    router_url: str,
    overrides: Mapping[str, str] | None = None,
    python_agent: bool = False,
) -> dict[str, str]:
    secrets = _OTHER_SECRETS | key_variables()
    env = scrub(base, secrets)
    # An env file's values (`overrides`: read at each start, so not checked at the
    # request) follow the caller environment's rules: a real key, an ironrt setting or the
    # service manager's variable in a file shared with other tools is left out.
    env.update(scrub(overrides or {}, secrets))
    env.update({"IC_TOKEN": token, "IRONRT_AGENT_ID": agent_id, "IRONRT_ROUTER_URL": router_url})
    # Each provider's SDK: OPENAI_API_KEY=IC_TOKEN, OPENAI_BASE_URL=router/v1, ...
    env.update(agent_variables(router_url, token))
    no_proxy = _extend_no_proxy(env.get("NO_PROXY") or env.get("no_proxy"), router_url)
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    if python_agent:
        # The log file is not a terminal: without this, print() output would reach
        # `ironrt logs -f` only in 8 KB blocks.
        env.setdefault("PYTHONUNBUFFERED", "1")
    return env
