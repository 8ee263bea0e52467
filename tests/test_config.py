"""Settings: read in one place, checked at start, the same for the daemon and the CLI.

The first half reads `Settings.load` directly (what each setting accepts); the second runs
a real daemon and the real CLI, because "one clear line" is about what a user sees:
`ironrt daemon start|run`, `python -m ironrt.daemon`, and any other command.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ironrt.config import (
    BY_NAME,
    DEFAULT_ROUTER_PORT,
    SETTINGS,
    ConfigError,
    Number,
    ReliabilitySettings,
    Settings,
    Timeouts,
)
from ironrt.tempdaemon import TempDaemon

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def load(home: Path, **env: str) -> Settings:
    return Settings.load({"IRONRT_HOME": str(home), **env})


# ---- what each setting accepts --------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    s = load(tmp_path)
    assert (s.router_host, s.router_port, s.offline, s.no_autostart) == (
        "127.0.0.1",
        None,
        False,
        False,
    )
    assert (s.restart_backoff, s.sample_interval, s.admission_timeout) == (0.5, 1.0, 60.0)
    assert s.reliability == ReliabilitySettings()


def test_every_setting_from_the_environment(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        IRONRT_ROUTER_HOST="::1",
        IRONRT_ROUTER_PORT="9000",
        IRONRT_OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        IRONRT_ANTHROPIC_BASE_URL="https://gateway.example/anthropic",
        IRONRT_OFFLINE="yes",
        IRONRT_NO_AUTOSTART="on",
        IRONRT_RESTART_BACKOFF="2",
        IRONRT_SAMPLE_INTERVAL="0.25",
        IRONRT_ADMISSION_TIMEOUT="0.5",
        IRONRT_LOG_MAX_SIZE="1MB",
        IRONRT_LOG_KEEP="7",
    )
    assert (s.router_host, s.router_port) == ("::1", 9000)
    assert s.openai_base_url == "http://127.0.0.1:9/v1"
    assert s.anthropic_base_url == "https://gateway.example/anthropic"
    assert s.offline and s.no_autostart
    assert (s.restart_backoff, s.sample_interval, s.admission_timeout) == (2.0, 0.25, 0.5)
    assert (s.log_max_bytes, s.log_keep) == (1_048_576, 7)


def test_reliability_settings(tmp_path: Path) -> None:
    r = load(
        tmp_path,
        IRONRT_RETRY_MAX_ATTEMPTS="5",
        IRONRT_CONNECT_TIMEOUT="2.5",
        IRONRT_READ_TIMEOUT="30",
        IRONRT_BREAKER_FAIL_MAX="2",
        IRONRT_BREAKER_RESET_S="0.5",
        IRONRT_ANTHROPIC_READ_TIMEOUT="90",
        IRONRT_RETRY_DEADLINE_S="",  # empty: default
    ).reliability
    assert (r.max_attempts, r.fail_max, r.reset_timeout_s, r.deadline_s) == (5, 2, 0.5, 60.0)
    assert r.timeouts("openai") == Timeouts(2.5, 30.0)
    assert r.timeouts("anthropic") == Timeouts(2.5, 90.0)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("IRONRT_SAMPLE_INTERVAL", "abc", "0.1 <= s <= 3600"),
        ("IRONRT_SAMPLE_INTERVAL", "0", "0.1 <= s <= 3600"),
        ("IRONRT_SAMPLE_INTERVAL", "inf", "0.1 <= s <= 3600"),
        ("IRONRT_RESTART_BACKOFF", "0", "0.01 <= s <= 60"),
        ("IRONRT_ADMISSION_TIMEOUT", "3601", "0 < s <= 3600"),
        ("IRONRT_ROUTER_PORT", "70000", "0 <= n <= 65535"),
        ("IRONRT_ROUTER_PORT", "http", "a port number"),
        ("IRONRT_ROUTER_HOST", "127.0.0.1/8", "a host name or IP address"),
        ("IRONRT_OPENAI_BASE_URL", "api.openai.com", "an http:// or https:// URL"),
        ("IRONRT_ANTHROPIC_BASE_URL", "http://host:port", "an http:// or https:// URL"),
        ("IRONRT_OFFLINE", "maybe", "a boolean"),
        ("IRONRT_RETRY_MAX_ATTEMPTS", "0", "1 <= n <= 10"),
        ("IRONRT_RETRY_MAX_ATTEMPTS", "2.5", "a whole number"),
        ("IRONRT_CONNECT_TIMEOUT", "fast", "0 < s <= 300"),
        ("IRONRT_READ_TIMEOUT", "nan", "0 < s <= 86400"),
        ("IRONRT_BREAKER_RESET_S", "-1", "0 < s <= 3600"),
        ("IRONRT_OPENAI_CONNECT_TIMEOUT", "0", "0 < s <= 300"),
        ("IRONRT_RETRY_BACKOFF_MAX_S", "0.1", "IRONRT_RETRY_BACKOFF_INITIAL_S"),
        ("IRONRT_LOG_MAX_SIZE", "12", "1KB to 1TB"),
        ("IRONRT_LOG_KEEP", "0", "1 <= n <= 100"),
    ],
)
def test_a_bad_value_names_the_setting_and_its_range(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, **{name: value})
    message = str(raised.value)
    assert message.startswith(name) and says in message and "\n" not in message


def test_the_file_takes_short_keys_in_any_case_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'Sample_Interval = 2\nironrt_offline = true\nIRONRT_LOG_MAX_SIZE = 4096\nlog_keep = "4"\n'
    )
    s = load(tmp_path)
    assert (s.sample_interval, s.offline, s.log_max_bytes, s.log_keep) == (2.0, True, 4096, 4)
    s = load(tmp_path, IRONRT_SAMPLE_INTERVAL="3", IRONRT_OFFLINE="0")
    assert (s.sample_interval, s.offline) == (3.0, False)
    # An empty variable is unset: the file applies (`IRONRT_X= cmd` does not erase a setting).
    assert load(tmp_path, IRONRT_OFFLINE="").offline is True


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("IRONRT_ROUTR_PORT = 9000", "unknown setting 'IRONRT_ROUTR_PORT'"),
        ("routr_port = 9000", "unknown setting 'routr_port'"),
        ("home = '/tmp'", "IRONRT_HOME cannot be set in"),
        ("router_port = 1\nIRONRT_ROUTER_PORT = 2", "IRONRT_ROUTER_PORT is set twice"),
        ("sample_interval = true", "IRONRT_SAMPLE_INTERVAL (in "),
        ("router_host = 127", "IRONRT_ROUTER_HOST (in "),
        ("[retry]\nmax_attempts = 2", "unknown setting 'retry'"),
        ("offline = ", "cannot read"),
    ],
)
def test_a_bad_file_is_refused_naming_the_key(tmp_path: Path, line: str, says: str) -> None:
    (tmp_path / "config.toml").write_text(line + "\n")
    with pytest.raises(ConfigError) as raised:
        load(tmp_path)
    assert says in str(raised.value) and str(tmp_path / "config.toml") in str(raised.value)


def test_a_file_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes(b"router_host = '\xff'\n")
    with pytest.raises(ConfigError) as raised:
        load(tmp_path)
    assert "cannot read" in str(raised.value) and str(tmp_path / "config.toml") in str(raised.value)


def test_a_typo_in_the_file_gets_a_suggestion_spelled_like_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    for key, guess in (
        ("IRONRT_ROUTR_PORT", "IRONRT_ROUTER_PORT"),
        ("routr_port", "router_port"),
        ("ironrt_sample_intervall", "ironrt_sample_interval"),
        ("RETRY_MAX_ATTEMPT", "RETRY_MAX_ATTEMPTS"),
    ):
        config.write_text(f"{key} = 1\n")
        with pytest.raises(ConfigError, match=re.escape(f"(did you mean {guess!r}?)")):
            load(tmp_path)
    config.write_text("colour = 1\n")
    with pytest.raises(ConfigError) as raised:
        load(tmp_path)
    assert "did you mean" not in str(raised.value)


def test_unknown_ironrt_variables_in_the_environment_are_left_alone(tmp_path: Path) -> None:
    """Agents and tools carry IRONRT_AGENT_ID, IRONRT_ROUTER_URL...: not settings, no error."""
    load(tmp_path, IRONRT_AGENT_ID="abc", IRONRT_ROUTER_URL="x", IRONRT_ROUTR_PORT="1")


def test_reliability_settings_built_in_code_get_the_same_ranges() -> None:
    with pytest.raises(ConfigError, match="max_attempts must be a whole number, 1 <= n <= 10"):
        ReliabilitySettings(max_attempts=0)
    with pytest.raises(ConfigError, match="read_s"):
        Timeouts(5.0, 0.0)
    with pytest.raises(ConfigError, match="backoff_max_s"):
        ReliabilitySettings(backoff_initial_s=2.0, backoff_max_s=1.0)


def test_docs_list_every_setting_with_its_range() -> None:
    """docs/configuration.md is the contract: a setting or range it does not show is a bug."""
    rows = [line for line in DOCS.read_text().splitlines() if line.startswith("| `IRONRT_")]
    for setting in SETTINGS:
        row = next((r for r in rows if f"`{setting.name}`" in r.split("|")[1]), None)
        assert row is not None, f"{setting.name} is not in {DOCS.name}"
        kind = setting.kind
        expected = kind.range if isinstance(kind, Number) else kind.accepts
        assert expected in row, (setting.name, expected)
    named = {n for r in rows for n in re.findall(r"`(IRONRT_[A-Z_]+)`", r.split("|")[1])}
    assert named <= set(BY_NAME), named - set(BY_NAME)


# ---- through a real daemon and the real CLI -------------------------------------------------


@pytest.fixture
def idle() -> Iterator[TempDaemon]:
    """A daemon's home and environment, not started (the test starts it, or fails to)."""
    d = TempDaemon()
    try:
        yield d
    finally:
        d.__exit__(None, None, None)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def failed_start(d: TempDaemon) -> str:
    """What `python -m ironrt.daemon` (TempDaemon's way, and the CLI's in the background)
    said when it refused to start."""
    with pytest.raises(RuntimeError, match="daemon exited with 2"):
        d.start()
    assert "Traceback" not in d.stderr()
    lines = d.stderr().strip().splitlines()
    assert len(lines) == 1, d.stderr()
    return lines[0]


@pytest.mark.parametrize(
    ("key", "guess"), [("IRONRT_ROUTR_PORT", "IRONRT_ROUTER_PORT"), ("routr_port", "router_port")]
)
def test_an_unknown_key_in_the_file_stops_every_start_in_one_line(
    idle: TempDaemon, key: str, guess: str
) -> None:
    (idle.home / "config.toml").write_text(f"{key} = 9000\n")
    says = f"unknown setting {key!r} in {idle.home / 'config.toml'} (did you mean {guess!r}?)"
    for args in (["daemon", "start"], ["daemon", "run"]):
        assert one_line(idle.cli(*args)) == f"ironrt: the daemon cannot start: {says}"
    assert failed_start(idle) == f"ironrt: the daemon cannot start: {says}"
    # Any other command reads the same settings, and says the same.
    assert one_line(idle.cli("ps")) == f"ironrt: {says}"
    assert one_line(idle.cli("doctor")) == f"ironrt: {says}"
    assert not (idle.home / "ironrt.sock").exists()


def test_an_out_of_range_value_in_the_file_is_refused(idle: TempDaemon) -> None:
    (idle.home / "config.toml").write_text("IRONRT_SAMPLE_INTERVAL = 0\n")
    idle.env["IRONRT_SAMPLE_INTERVAL"] = ""  # TempDaemon's own value would win over the file
    line = failed_start(idle)
    assert line.startswith("ironrt: the daemon cannot start: IRONRT_SAMPLE_INTERVAL (in ")
    assert line.endswith("must be a number of seconds, 0.1 <= s <= 3600, got 0")
    assert "IRONRT_SAMPLE_INTERVAL" in one_line(idle.cli("daemon", "run"))


def test_a_bad_value_in_the_environment_is_refused(idle: TempDaemon) -> None:
    idle.env["IRONRT_SAMPLE_INTERVAL"] = "abc"
    says = "IRONRT_SAMPLE_INTERVAL must be a number of seconds, 0.1 <= s <= 3600, got 'abc'"
    assert failed_start(idle) == f"ironrt: the daemon cannot start: {says}"
    assert one_line(idle.cli("daemon", "start")) == f"ironrt: the daemon cannot start: {says}"


def test_the_environment_wins_over_the_file() -> None:
    # The file asks for port 1 (refused to a user) and offline mode; the environment sets
    # a free port (TempDaemon's 0) and leaves offline unset: the file's offline applies.
    d = TempDaemon(env={"IRONRT_OFFLINE": ""})
    (d.home / "config.toml").write_text("router_port = 1\noffline = true\n")
    with d:
        h = d.rt.health()
        assert h.offline is True
        assert port_of(h.router_url) not in (1, DEFAULT_ROUTER_PORT)


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_two_homes_on_one_host_share_the_default_port() -> None:
    """Neither configures a port: the first takes 8741 (unless something else holds it),
    the second a free port, which it keeps across a restart and which doctor shows."""
    unset = {"IRONRT_ROUTER_PORT": ""}
    with TempDaemon(env=unset) as first, TempDaemon(env=unset) as second:
        p1, p2 = port_of(first.router_url), port_of(second.router_url)
        assert p1 != p2 and p2 != DEFAULT_ROUTER_PORT
        assert p1 == DEFAULT_ROUTER_PORT or not bindable(DEFAULT_ROUTER_PORT)
        second.stop()
        second.start()
        assert port_of(second.router_url) == p2
        url = second.router_url
        doctor = second.cli("doctor")
        assert doctor.returncode == 0, doctor.stderr
        assert f"router reachable at {url}" in doctor.stdout
        assert f"router on port {p2}, not {DEFAULT_ROUTER_PORT}" in doctor.stdout
        status = second.cli("daemon", "status")
        assert re.search(rf"router\s+{re.escape(url)}", status.stdout), status.stdout


def test_a_configured_port_that_is_taken_is_a_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        d = TempDaemon(env={"IRONRT_ROUTER_PORT": str(port)})
        with pytest.raises(RuntimeError, match="daemon exited with 2") as raised, d:
            pass
    message = str(raised.value)
    assert f"cannot listen on 127.0.0.1:{port}" in message
    assert f"IRONRT_ROUTER_PORT is {port}" in message and "Traceback" not in message


def test_a_kept_port_that_got_taken_moves_rather_than_failing() -> None:
    """The port kept for this home is held by someone else after a restart: agents from
    before cannot reach it anyway, and a daemon that refuses to start could not even
    stop them. It takes another port, says so in its log, and keeps the new one."""
    with TempDaemon() as d:
        kept = port_of(d.router_url)
        d.stop()
        with socket.socket() as holder:
            # SO_REUSEADDR as the daemon's: a lingering TIME_WAIT must not fail the holder
            # while the daemon could still bind the port.
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.bind(("127.0.0.1", kept))
            holder.listen()
            d.start()
            moved = port_of(d.router_url)
        assert moved != kept
        assert f"port {kept}, kept for this home, is taken" in d.log()
        d.stop()
        d.start()
        assert port_of(d.router_url) == moved


def test_pii_settings_are_read_from_the_environment_and_config_toml(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    s = Settings.load({"IRONRT_HOME": str(home), "IRONRT_PII_REGIONS": " us, gb,GB "})
    assert s.pii_regions == ("US", "GB") and s.pii_private_ips is True
    (home / "config.toml").write_text('pii_regions = ["de", "fr"]\npii_private_ips = false\n')
    s = Settings.load({"IRONRT_HOME": str(home)})
    assert s.pii_regions == ("DE", "FR") and s.pii_private_ips is False
    with pytest.raises(ConfigError, match=r"IRONRT_PII_REGIONS.*region codes.*got 'US,ZZ'"):
        Settings.load({"IRONRT_HOME": str(home), "IRONRT_PII_REGIONS": "US,ZZ"})
    with pytest.raises(ConfigError, match=r"IRONRT_PII_PRIVATE_IPS.*boolean"):
        Settings.load({"IRONRT_HOME": str(home), "IRONRT_PII_PRIVATE_IPS": "maybe"})


def test_the_pii_recall_size_is_a_size_or_off(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert Settings.load({"IRONRT_HOME": str(home)}).pii_recall_size == 4 * 1024 * 1024
    for raw, size in (("16MB", 16 * 1024 * 1024), ("512KB", 512 * 1024), ("0", 0), ("off", 0)):
        s = Settings.load({"IRONRT_HOME": str(home), "IRONRT_PII_RECALL_SIZE": raw})
        assert s.pii_recall_size == size
    (home / "config.toml").write_text('pii_recall_size = "2MB"\n')
    assert Settings.load({"IRONRT_HOME": str(home)}).pii_recall_size == 2 * 1024 * 1024
    for bad in ("2GB", "lots", "-1", "8 megs", "100"):
        with pytest.raises(ConfigError, match=r"IRONRT_PII_RECALL_SIZE.*1KB to 1GB.*0/off"):
            Settings.load({"IRONRT_HOME": str(home), "IRONRT_PII_RECALL_SIZE": bad})


def test_an_invalid_home_pii_toml_stops_the_daemon_in_one_line(idle: TempDaemon) -> None:
    pii = idle.home / "pii.toml"
    pii.write_text("[entities.ORDER_ID]\npattern = 'ORD-[0-9]+'\n")
    line = failed_start(idle)
    assert line.startswith(f"ironrt: the daemon cannot start: {pii}: [entities.ORDER_ID]")
    assert "bound every repetition" in line
    assert not (idle.home / "ironrt.sock").exists()
