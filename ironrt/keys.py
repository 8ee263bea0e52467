"""The real provider keys, held by the daemon only.

They come from the daemon's own environment (a daemon started by the CLI inherits the
CLI's, which is how a user's exported OPENAI_API_KEY reaches it) or from
`$IRONRT_HOME/keys.toml`. A keys file readable by the group or others is refused: a key
that others can read is already leaked. Keys are never logged, stored, or sent anywhere
but in the upstream request's auth header.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ironrt.errors import KeysFileError as KeysFileError  # defined there, re-exported
from ironrt.settings_table import PROVIDER_TABLE
from ironrt.suggest import did_you_mean
from ironrt.toml_files import load_toml


class _EnvNames(Mapping[str, tuple[str, ...]]):
    """Each provider's key variables, canonical first, read from the provider table on
    every use: a provider registered after import (providers.toml) has its key loaded."""

    def __getitem__(self, provider: str) -> tuple[str, ...]:
        return PROVIDER_TABLE[provider].key_env

    def __iter__(self) -> Iterator[str]:
        return iter(PROVIDER_TABLE)

    def __len__(self) -> int:
        return len(PROVIDER_TABLE)


ENV_NAMES: Mapping[str, tuple[str, ...]] = _EnvNames()


@dataclass(slots=True)
class ProviderKeys:
    keys: dict[str, str] = field(default_factory=dict)
    #: The variable each key came from (or would, for keys.toml): the adapter tells a bearer
    #: token (ANTHROPIC_AUTH_TOKEN) from an API key by it.
    sources: dict[str, str] = field(default_factory=dict)

    def get(self, provider: str) -> str | None:
        return self.keys.get(provider)

    def present(self) -> dict[str, bool]:
        return {name: name in self.keys for name in ENV_NAMES}

    def __repr__(self) -> str:  # never print a key, even by accident
        return f"ProviderKeys(providers={sorted(self.keys)})"


def load_keys(environ: Mapping[str, str], keys_file: Path) -> ProviderKeys:
    found = ProviderKeys()
    if keys_file.exists():
        mode = keys_file.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeysFileError(
                f"{keys_file} is readable by others (mode {stat.S_IMODE(mode):o}); "
                f"run: chmod 600 {keys_file}"
            )
        try:
            data = load_toml(keys_file)
        except (OSError, ValueError) as exc:  # ValueError: not TOML, or not UTF-8
            # tomllib's message says where (line, column), never what; others may quote
            # the file's bytes, so only their kind is said.
            why = str(exc) if type(exc).__name__ == "TOMLDecodeError" else type(exc).__name__
            raise KeysFileError(f"cannot read {keys_file}: {why}") from None
        for provider, key in _checked(data, keys_file).items():
            found.keys[provider] = key
            found.sources[provider] = ENV_NAMES[provider][0]
    for provider, names in ENV_NAMES.items():
        for name in names:
            value = environ.get(name)
            if value and provider not in found.keys:
                found.keys[provider] = value
                found.sources[provider] = name
    return found


def _checked(data: dict[str, object], keys_file: Path) -> dict[str, str]:
    """Each provider's key in the file. A misspelt provider or key, or a key that is not
    text, is an error naming the file and the table (never a value): ignored, it would
    leave the daemon without the key its user wrote down, saying only "no key"."""
    out: dict[str, str] = {}
    for provider, section in data.items():
        if provider not in ENV_NAMES:
            raise KeysFileError(
                f"{keys_file}: unknown provider [{provider}]{did_you_mean(provider, ENV_NAMES)}"
            )
        if not isinstance(section, dict):
            raise KeysFileError(
                f'{keys_file}: {provider} must be a table: [{provider}] api_key = "..."'
            )
        for key in section:
            if key != "api_key":
                hint = did_you_mean(key, ["api_key"])
                raise KeysFileError(f"{keys_file}: [{provider}]: unknown key {key!r}{hint}")
        value = section.get("api_key")
        if not isinstance(value, str) or not value:
            raise KeysFileError(f"{keys_file}: [{provider}] api_key must be a non-empty string")
        out[provider] = value
    return out
