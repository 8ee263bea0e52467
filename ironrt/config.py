"""Where ironrt keeps its state and how it is configured.

Every setting is an environment variable, each also settable in `$IRONRT_HOME/config.toml`
(the environment wins). The CLI and the daemon read the same settings, so the CLI finds
the socket the daemon listens on without being told.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ironrt.protocol import (
    DEFAULT_LOG_KEEP,
    DEFAULT_LOG_MAX_BYTES,
    MAX_LOG_KEEP,
    parse_size,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_ROUTER_PORT = 8741
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting has a value ironrt cannot use; the message names the setting."""


def default_home(environ: Mapping[str, str]) -> Path:
    if environ.get("IRONRT_HOME"):
        return Path(environ["IRONRT_HOME"]).expanduser()
    state = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state).expanduser() / "ironrt"


def _flag(name: str, value: object) -> bool:
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def _log_limits(size: object | None, keep: object | None) -> tuple[int, int]:
    try:
        max_bytes = DEFAULT_LOG_MAX_BYTES if size in (None, "") else parse_size(str(size))
    except ValueError as exc:
        raise ConfigError(f"IRONRT_LOG_MAX_SIZE: {exc}") from None
    try:
        kept = DEFAULT_LOG_KEEP if keep in (None, "") else int(str(keep))
    except ValueError:
        raise ConfigError(f"IRONRT_LOG_KEEP must be a whole number, got {keep!r}") from None
    if not 1 <= kept <= MAX_LOG_KEEP:
        raise ConfigError(f"IRONRT_LOG_KEEP must be between 1 and {MAX_LOG_KEEP}, got {kept}")
    return max_bytes, kept


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    router_host: str = "127.0.0.1"
    router_port: int = DEFAULT_ROUTER_PORT
    openai_base_url: str | None = None
    anthropic_base_url: str | None = None
    offline: bool = False
    no_autostart: bool = False
    #: Default log rotation of agents started without their own (`--log-max-size/--log-keep`).
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    log_keep: int = DEFAULT_LOG_KEEP

    @property
    def socket_path(self) -> Path:
        return self.home / "ironrt.sock"

    @property
    def db_path(self) -> Path:
        return self.home / "ironrt.db"

    @property
    def lock_path(self) -> Path:
        return self.home / "daemon.lock"

    @property
    def log_path(self) -> Path:
        return self.home / "daemon.log"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def keys_path(self) -> Path:
        return self.home / "keys.toml"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = default_home(env)
        file_values: dict[str, object] = {}
        config_file = home / "config.toml"
        if config_file.is_file():
            try:
                with config_file.open("rb") as fh:
                    raw = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read {config_file}: {exc}") from exc
            file_values = {str(k).upper(): v for k, v in raw.items()}

        def get(name: str) -> object | None:
            if name in env:
                return env[name]
            return file_values.get(name)

        port_value = get("IRONRT_ROUTER_PORT")
        try:
            port = DEFAULT_ROUTER_PORT if port_value in (None, "") else int(str(port_value))
        except ValueError as exc:
            raise ConfigError(
                f"IRONRT_ROUTER_PORT must be a port number, got {port_value!r}"
            ) from exc
        if not 0 <= port <= 65535:
            raise ConfigError(f"IRONRT_ROUTER_PORT must be between 0 and 65535, got {port}")
        host = str(get("IRONRT_ROUTER_HOST") or "127.0.0.1")
        offline = get("IRONRT_OFFLINE")
        no_auto = get("IRONRT_NO_AUTOSTART")
        openai_url = get("IRONRT_OPENAI_BASE_URL")
        anthropic_url = get("IRONRT_ANTHROPIC_BASE_URL")
        log_max_bytes, log_keep = _log_limits(get("IRONRT_LOG_MAX_SIZE"), get("IRONRT_LOG_KEEP"))
        return cls(
            log_max_bytes=log_max_bytes,
            log_keep=log_keep,
            home=home,
            router_host=host,
            router_port=port,
            openai_base_url=str(openai_url) if openai_url else None,
            anthropic_base_url=str(anthropic_url) if anthropic_url else None,
            offline=_flag("IRONRT_OFFLINE", offline) if offline is not None else False,
            no_autostart=_flag("IRONRT_NO_AUTOSTART", no_auto) if no_auto is not None else False,
        )

    def ensure_home(self) -> None:
        """Create the home folder private to the user (0700), and tighten it if it exists."""
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.home, 0o700)
        self.logs_dir.mkdir(exist_ok=True, mode=0o700)
