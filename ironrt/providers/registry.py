"""The provider registry: every provider the router serves, one entry each.

An entry (`ProviderEntry`) is data: the name, the API family (which surfaces, hence which
paths, bodies and streams), the auth scheme and error shape, the variables holding the
real key (canonical first) and the one overriding the base URL, the default base URL, the
genai-prices id, the models the offline provider lists, the router path prefix of a
provider other than the two built-in ones (`/groq/v1/...`), and the agent variables that
point its SDK at the router. Everything provider-specific outside the surfaces derives
from it: `keys.ENV_NAMES`, the base-URL settings and `settings_table.PROVIDERS`, the
router's base URLs, the secrets scrubbed from agents and the variables set for them
(`agent_variables`), the offline provider's models, and `adapter_for`. So adding an
OpenAI-compatible provider is one entry: `register(...)` in code, or a `[providers.NAME]`
table in `$IRONRT_HOME/providers.toml`, which `Settings.load` registers in the daemon (and
in the CLI) before anything reads the table.

The table itself is kept in `ironrt.settings_table`, at the bottom of the layers: `keys`,
`config` and the settings table sit below `providers` and derive from it too. This module
is where everything above meets it, and where an entry becomes an adapter (one per
provider, made from its family's class, rebuilt if its entry is replaced).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ironrt.providers.anthropic import AnthropicAdapter
from ironrt.providers.base import ProviderAdapter
from ironrt.providers.openai import OpenAIAdapter
from ironrt.settings_table import (
    ANTHROPIC_ENTRY,
    OPENAI_ENTRY,
    PROVIDER_TABLE,
    ProviderEntry,
    ProviderTable,
    configured_entry,
    register_provider,
    unregister_provider,
)

__all__ = [
    "ADAPTERS",
    "ANTHROPIC_ENTRY",
    "FAMILIES",
    "OPENAI_ENTRY",
    "REGISTRY",
    "ProviderEntry",
    "ProviderTable",
    "adapter",
    "agent_variables",
    "configured_entry",
    "entries",
    "entry",
    "key_variables",
    "prefixed",
    "register",
    "unregister",
]

#: The adapter class of each API family.
FAMILIES: Mapping[str, type[ProviderAdapter]] = {
    "openai": OpenAIAdapter,
    "anthropic": AnthropicAdapter,
}
#: Every provider this process knows, by name (built-in first, then registered).
REGISTRY: Mapping[str, ProviderEntry] = PROVIDER_TABLE

_adapters: dict[str, ProviderAdapter] = {}


def register(entry: ProviderEntry) -> ProviderAdapter:
    """Add a provider (ValueError says what is wrong with the entry); its adapter."""
    register_provider(entry)
    return adapter(entry.name)


def unregister(name: str) -> None:
    """Forget a registered provider (ValueError for a built-in one)."""
    unregister_provider(name)
    _adapters.pop(name, None)


def entry(name: str) -> ProviderEntry:
    return PROVIDER_TABLE[name]


def entries() -> tuple[ProviderEntry, ...]:
    return tuple(PROVIDER_TABLE.values())


def adapter(name: str) -> ProviderAdapter:
    """The provider's adapter (KeyError for a provider nobody registered)."""
    found = PROVIDER_TABLE[name]
    made = _adapters.get(name)
    if made is None or made.entry is not found:
        made = _adapters[name] = FAMILIES[found.family](found)
    return made


def prefixed(path: str) -> ProviderAdapter | None:
    """The registered provider whose router prefix starts `path` (`/acme/v1/...`), if any.

    A prefix is always `/` + the provider's name, so this is one dictionary lookup."""
    name, _, rest = path[1:].partition("/")
    found = PROVIDER_TABLE.get(name)
    if found is None or not found.path_prefix or not (rest == "v1" or rest.startswith("v1/")):
        return None
    return adapter(name)


def key_variables() -> frozenset[str]:
    """Every variable that holds a registered provider's real key."""
    return frozenset(name for e in PROVIDER_TABLE.values() for name in e.key_env)


def agent_variables(router_url: str, token: str) -> dict[str, str]:
    """What points each provider's SDK at the router: its canonical key variable holds the
    agent's IC_TOKEN, its base-URL variables the router (plus its prefix, plus `/v1` for
    the OpenAI family, whose SDKs expect it in the base URL; Anthropic's add it)."""
    env: dict[str, str] = {}
    for e in PROVIDER_TABLE.values():
        env[e.key_env[0]] = token
        base = router_url + e.path_prefix + ("/v1" if e.family == "openai" else "")
        for name in e.sdk_base_url_env:
            env[name] = base
    return env


class _Adapters(Mapping[str, ProviderAdapter]):
    """One adapter per known provider, by name (a view: registered ones appear)."""

    def __getitem__(self, name: str) -> ProviderAdapter:
        return adapter(name)

    def __iter__(self) -> Iterator[str]:
        return iter(PROVIDER_TABLE)

    def __len__(self) -> int:
        return len(PROVIDER_TABLE)


ADAPTERS: Mapping[str, ProviderAdapter] = _Adapters()
