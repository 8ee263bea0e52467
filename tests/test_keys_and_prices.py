"""Provider keys held by the daemon, and prices users configure for unknown models."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from ironrt.governance.flow import TokenUsage
from ironrt.governance.pricing import Pricer, UnknownPrice
from ironrt.keys import KeysFileError, load_keys
from ironrt.router.prices_file import load_configured, load_output_limits


def test_keys_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[openai]\napi_key = "sk-from-file-123"\n')
    keys.chmod(0o644)
    with pytest.raises(KeysFileError, match="chmod 600") as info:
        load_keys({}, keys)
    assert "sk-from-file-123" not in str(info.value)


def test_keys_from_file_win_over_environment_and_never_print(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[openai]\napi_key = "sk-from-file-123"\n')
    keys.chmod(0o600)
    found = load_keys({"OPENAI_API_KEY": "sk-env-456", "ANTHROPIC_AUTH_TOKEN": "tok-789"}, keys)
    assert found.get("openai") == "sk-from-file-123"
    assert (
        found.get("anthropic") == "tok-789" and found.sources["anthropic"] == "ANTHROPIC_AUTH_TOKEN"
    )
    assert found.present() == {"openai": True, "anthropic": True}
    assert "sk-" not in repr(found) and "tok-" not in repr(found)


def test_malformed_keys_file_names_the_file_not_the_content(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[openai\napi_key = "sk-secret-000"\n')
    keys.chmod(0o600)
    with pytest.raises(KeysFileError) as info:
        load_keys({}, keys)
    assert str(keys) in str(info.value) and "sk-secret-000" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            '[opnai]\napi_key = "sk-secret-000"\n',
            "unknown provider [opnai] (did you mean 'openai'?)",
        ),
        ('[openai]\napi_kee = "sk-secret-000"\n', "[openai]: unknown key 'api_kee' (did you mean"),
        ("[openai]\napi_key = 5\n", "[openai] api_key must be a non-empty string"),
        ('[openai]\napi_key = ""\n', "[openai] api_key must be a non-empty string"),
        ('openai = "sk-secret-000"\n', 'openai must be a table: [openai] api_key = "..."'),
        ('[openai\napi_key = "sk-secret-000"\n', "(at line 1, column 8)"),
    ],
)
def test_a_keys_file_with_a_mistake_is_refused_naming_where_never_the_key(
    tmp_path: Path, text: str, says: str
) -> None:
    """Ignored, each of these left the daemon with no key, saying only "no key"."""
    keys = tmp_path / "keys.toml"
    keys.write_text(text)
    keys.chmod(0o600)
    with pytest.raises(KeysFileError) as info:
        load_keys({"OPENAI_API_KEY": "sk-env-456"}, keys)
    assert str(keys) in str(info.value) and says in str(info.value), info.value
    assert "secret" not in str(info.value) and "sk-env" not in str(info.value)


def test_a_keys_file_that_is_not_utf8_is_refused_naming_the_file(tmp_path: Path) -> None:
    """A keys file saved in another encoding (a key pasted from a Windows editor) is a
    clear error naming the file, as malformed TOML is; it was a traceback."""
    keys = tmp_path / "keys.toml"
    keys.write_bytes(b'[openai]\napi_key = "sk-secret-\xe9\xff"\n')
    keys.chmod(0o600)
    with pytest.raises(KeysFileError) as info:
        load_keys({}, keys)
    assert str(keys) in str(info.value) and "sk-secret" not in str(info.value)


def test_a_prices_file_that_is_not_utf8_is_a_value_error(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_bytes(b'[models."m\xff"]\ninput_mtok = 0.3\noutput_mtok = 1.2\n')
    with pytest.raises(ValueError):
        load_configured(prices)


def test_unknown_model_needs_a_configured_price(tmp_path: Path) -> None:
    with pytest.raises(UnknownPrice, match=r"prices\.toml"):
        Pricer().check("openai", "my-finetune-xyz")
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[models."my-finetune-xyz"]\ninput_mtok = 0.30\noutput_mtok = 1.20\ncache_read_mtok = 0.03\n'
    )
    pricer = Pricer(load_configured(prices))
    usage = TokenUsage(input_tokens=1_000_000, cached_tokens=500_000, output_tokens=1_000_000)
    assert pricer.cost("openai", "my-finetune-xyz", usage) == Decimal("0.15") + Decimal(
        "0.015"
    ) + Decimal("1.2")


PRICE = "a number of USD per million tokens, 0 <= x <= 1000000"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            'input_mtok = "cheap"\noutput_mtok = 1',
            f"model 'm': input_mtok must be {PRICE}, got 'cheap'",
        ),
        # A negative price would give each call's cost back to its budget.
        ("input_mtok = -5\noutput_mtok = -5", f"model 'm': input_mtok must be {PRICE}, got -5"),
        ("input_mtok = 1\noutput_mtok = nan", f"model 'm': output_mtok must be {PRICE}, got nan"),
        ("input_mtok = inf\noutput_mtok = 1", f"model 'm': input_mtok must be {PRICE}, got inf"),
        ("input_mtok = 1", "model 'm' needs both input_mtok and output_mtok"),
        (
            "input_mtk = 1\noutput_mtok = 1",
            "model 'm': unknown key 'input_mtk' (did you mean 'input_mtok'?)",
        ),
        ("max_output_tokens = 0", "model 'm': max_output_tokens must be a positive integer, got 0"),
    ],
)
def test_bad_prices_file_is_a_clear_error(tmp_path: Path, text: str, says: str) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(f'[models."m"]\n{text}\n')
    # Both readers of the file check every entry, but only prices need both prices.
    readers = [load_configured] + ([] if "needs both" in says else [load_output_limits])
    for load in readers:
        with pytest.raises(ValueError) as raised:
            load(prices)
        assert str(raised.value) == f"{prices}: {says}"


def test_a_misspelt_table_in_the_prices_file_is_a_clear_error(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[modls."gpt-4o"]\ninput_mtok = 1\noutput_mtok = 1\n')
    for load in (load_configured, load_output_limits):
        with pytest.raises(ValueError) as raised:
            load(prices)
        assert str(raised.value) == f"{prices}: unknown table 'modls' (did you mean 'models'?)"


def test_daemon_refuses_to_start_with_a_readable_keys_file_in_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="irt-", dir="/tmp"))
    (home / "keys.toml").write_text('[openai]\napi_key = "sk-leaky-000"\n')
    (home / "keys.toml").chmod(0o644)
    env = {**os.environ, "IRONRT_HOME": str(home), "IRONRT_ROUTER_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "ironrt.daemon"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("ironrt: the daemon cannot start:")
    assert "chmod 600" in done.stderr and "Traceback" not in done.stderr
    assert "sk-leaky-000" not in done.stderr


@pytest.mark.parametrize(
    ("env", "prices", "says"),
    [
        ({"IRONRT_ADMISSION_TIMEOUT": "abc"}, None, "IRONRT_ADMISSION_TIMEOUT"),
        ({"IRONRT_ADMISSION_TIMEOUT": "0"}, None, "IRONRT_ADMISSION_TIMEOUT"),
        ({}, '[models."gpt-4o"]\nmax_output_tokens = -5\n', "max_output_tokens"),
        ({}, '[models."mine"]\ninput_mtok = -5\noutput_mtok = -5\n', "input_mtok must be"),
        ({}, '[models."mine"]\ninput_mtok = nan\noutput_mtok = 1\n', "input_mtok must be"),
    ],
)
def test_bad_budget_settings_stop_the_daemon_in_one_line(
    env: dict[str, str], prices: str | None, says: str
) -> None:
    import os
    import subprocess
    import sys
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="irt-", dir="/tmp"))
    if prices is not None:
        (home / "prices.toml").write_text(prices)
    full = {**os.environ, "IRONRT_HOME": str(home), "IRONRT_ROUTER_PORT": "0", **env}
    done = subprocess.run(
        [sys.executable, "-m", "ironrt.daemon"],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("ironrt: the daemon cannot start:")
    assert says in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
