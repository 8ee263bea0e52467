"""The environment an agent process gets (the contract of DESIGN.md, "Agent environment").

The caller's environment is the base, so virtualenvs, PATH and relative paths behave as
the user expects; real provider secrets are scrubbed from it, and the router's address and
the agent's own IC_TOKEN are put where the official SDKs look for a key and a base URL.
An agent must never hold a real provider key.
"""

from __future__ import annotations

from collections.abc import Mapping

from ironrt.sdnotify import NOTIFY_VARIABLES

#: Variables that carry real provider credentials. Removed from every agent's environment
#: (and never stored); OPENAI_API_KEY / ANTHROPIC_API_KEY are then set to the IC_TOKEN.
PROVIDER_SECRETS = frozenset(
    {
        "OPENAI_API_KEY",
        "OPENAI_ADMIN_KEY",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
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

#: ironrt's own settings do not leak into agents (an agent is not a daemon client).
_DAEMON_ONLY_PREFIX = "IRONRT_"

#: systemd's notify protocol (see sdnotify.py): an agent must never speak to the service
#: manager, in the daemon's name or in that of a unit the caller ran in.
_SERVICE_MANAGER = frozenset(NOTIFY_VARIABLES)


def scrub(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment minus provider secrets, ironrt's own settings and the
    service manager's variables."""
    return {
        k: v
        for k, v in environ.items()
        if k not in PROVIDER_SECRETS
        and k not in _SERVICE_MANAGER
        and not k.startswith(_DAEMON_ONLY_PREFIX)
    }


def _extend_no_proxy(current: str | None) -> str:
    parts = [p.strip() for p in (current or "").split(",") if p.strip()]
    for host in ("127.0.0.1", "localhost"):
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
    env = scrub(base)
    for key, value in (overrides or {}).items():
        if key in PROVIDER_SECRETS:
            continue  # a real key given with --env still never reaches the agent
        env[key] = value
    env.update(
        {
            "IC_TOKEN": token,
            "IRONRT_AGENT_ID": agent_id,
            "IRONRT_ROUTER_URL": router_url,
            "OPENAI_API_KEY": token,
            "OPENAI_BASE_URL": f"{router_url}/v1",
            "OPENAI_API_BASE": f"{router_url}/v1",
            "ANTHROPIC_API_KEY": token,
            "ANTHROPIC_BASE_URL": router_url,
        }
    )
    no_proxy = _extend_no_proxy(env.get("NO_PROXY") or env.get("no_proxy"))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    if python_agent:
        # The log file is not a terminal: without this, print() output would reach
        # `ironrt logs -f` only in 8 KB blocks.
        env.setdefault("PYTHONUNBUFFERED", "1")
    return env
