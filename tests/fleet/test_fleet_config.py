"""The fleet ledger's setting, driver, connection and what the CLI shows of it: bad input
gets a clear error, the database's password is never shown, a database that does not
answer stops nothing but shared budgets."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from ironrt.config import ConfigError, Settings
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.fleet.helpers import burst_script, daemons, fleet_env, tally
from tests.fleet.pg import Postgres
from tests.router.helpers import sdk_client, token_agent

PASSWORD = "s3cret-Pw-never-shown"


def scrape(d: TempDaemon) -> str:
    """`/metrics` on the daemon's control socket."""
    transport = httpx.HTTPTransport(uds=str(d.home / "ironrt.sock"))
    with httpx.Client(transport=transport, base_url="http://ironrt") as http:
        r = http.get("/metrics")
        assert r.status_code == 200, r.text
        return r.text


def with_password(url: str) -> str:
    return url.replace("postgres:@", f"postgres:{PASSWORD}@")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ironrt:pw@db.internal:5432/ironrt",
        "postgres://db.internal/ironrt",
        "postgresql:///ironrt?host=/run/postgresql",
    ],
)
def test_ledger_url_forms_accepted(tmp_path: Path, url: str) -> None:
    s = Settings.load({"IRONRT_HOME": str(tmp_path), "IRONRT_LEDGER_URL": url})
    assert s.ledger_url == url
    assert "pw@" not in repr(s)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"mysql://u:{PASSWORD}@h/db", "not a postgresql:// URL"),
        ("postgresql:///db", "no host"),
        (f"postgresql://u:{PASSWORD}@h:port/db", "a URL that is not"),
    ],
)
def test_a_bad_ledger_url_is_refused_without_its_password(
    tmp_path: Path, url: str, why: str
) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.load({"IRONRT_HOME": str(tmp_path), "IRONRT_LEDGER_URL": url})
    text = str(err.value)
    assert "IRONRT_LEDGER_URL" in text and why in text
    assert PASSWORD not in text


def test_lease_ttl_and_poll_from_config_toml(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'ledger_url = "postgresql://h/db"\nlease_ttl = "30"\nledger_poll = 0.5\n'
    )
    s = Settings.load({"IRONRT_HOME": str(tmp_path)})
    assert (s.ledger_url, s.lease_ttl, s.ledger_poll) == ("postgresql://h/db", 30.0, 0.5)
    with pytest.raises(ConfigError, match="IRONRT_LEASE_TTL"):
        Settings.load({"IRONRT_HOME": str(tmp_path), "IRONRT_LEASE_TTL": "0"})
    (tmp_path / "config.toml").write_text('ledger_urll = "postgresql://h/db"\n')
    with pytest.raises(ConfigError, match="ledger_url"):  # a typo is named, with the fix
        Settings.load({"IRONRT_HOME": str(tmp_path)})


def test_the_daemon_refuses_to_start_with_a_bad_url() -> None:
    d = TempDaemon(env={"IRONRT_LEDGER_URL": f"mysql://u:{PASSWORD}@h/db"})
    with pytest.raises(RuntimeError) as err:
        d.__enter__()
    assert "IRONRT_LEDGER_URL" in str(err.value)
    assert PASSWORD not in str(err.value)


def test_without_the_driver_the_daemon_says_which_extra_to_install(
    tmp_path: Path, ledger_url: str
) -> None:
    shadow = tmp_path / "shadow" / "asyncpg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('asyncpg is not installed')\n")
    env = {"IRONRT_LEDGER_URL": ledger_url, "PYTHONPATH": str(shadow.parent)}
    d = TempDaemon(env=env)
    with pytest.raises(RuntimeError) as err:
        d.__enter__()
    assert "pip install 'ironrt[postgres]'" in str(err.value)


def test_an_unreachable_database_stops_only_shared_budgets(tmp_path: Path) -> None:
    nowhere = tmp_path / "no-server"
    nowhere.mkdir()
    url = f"postgresql://postgres:{PASSWORD}@/ironrt?host={nowhere}"
    with TempDaemon(env={"IRONRT_LEDGER_URL": url, "IRONRT_LEDGER_POLL": "0.2"}) as d:
        health = d.rt.health()
        assert health.ledger is not None and health.ledger.state == "unavailable"
        assert PASSWORD not in json.dumps({"url": health.ledger.url, "error": health.ledger.error})
        # An agent with no shared budget calls as ever (global has no budget here).
        agent = d.rt.start_agent(burst_script(tmp_path), ["1", "2"])
        assert tally(d, agent)["ok"] == 2
        # A shared scope's limits cannot change while the fleet cannot hear of it.
        changed = d.cli("limits", "set", "project:team", "--budget", "5")
        assert changed.returncode != 0
        assert "fleet ledger" in changed.stderr and "were not changed" in changed.stderr
        assert PASSWORD not in changed.stderr
        assert d.rt.get_limits("project:team").budget_usd is None
        doctor = d.cli("doctor")
        assert "fleet ledger" in doctor.stdout and "does not answer" in doctor.stdout
        assert PASSWORD not in doctor.stdout + doctor.stderr + d.log()


def test_limits_json_and_doctor_show_the_lease(
    ledger_url: str, tmp_path: Path, postgres: Postgres
) -> None:
    url = with_password(ledger_url)  # trust auth: the password is sent, never needed
    with FakeUpstream(latency=0.1) as up, daemons(2, fleet_env(up.url, url)) as ds:
        ds[0].rt.set_limits("project:team", budget_usd=1.0, models=["gpt-4o-mini"])
        wait_until(lambda: ds[1].rt.get_limits("project:team").budget_usd == 1.0, timeout=10)
        # The allowlist holds across daemons too.
        assert ds[1].rt.get_limits("project:team").models == ["gpt-4o-mini"]
        _, token = token_agent(ds[1], tmp_path, project="team")
        with (
            sdk_client(ds[1], token) as client,
            pytest.raises(openai.PermissionDeniedError) as refused,
        ):
            client.chat.completions.create(
                model="gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        assert "project:team" in refused.value.message
        agent = ds[1].rt.start_agent(burst_script(tmp_path), ["2", "3"], project="team")
        assert tally(ds[1], agent)["ok"] == 6
        shown = ds[1].cli("limits", "--json")
        assert shown.returncode == 0, shown.stderr
        rows = {r["scope"]: r for r in json.loads(shown.stdout)}
        team = rows["project:team"]
        assert team["shared"] is True and team["budget_usd"] == 1.0
        assert team["own_spent_usd"] > 0 and team["leased_usd"] > 0
        assert team["lease_expires_at"].endswith("Z") and team["ledger"] == "ok"
        wait_until(
            lambda: (
                ds[0].rt.get_limits("project:team").spent_usd
                == pytest.approx(team["own_spent_usd"], abs=1e-9)
            ),
            timeout=10,
        )  # the other daemon shows the settled spend of both
        doctor = ds[0].cli("doctor")
        assert "fleet ledger:" in doctor.stdout and "answers" in doctor.stdout
        scraped = scrape(ds[1])
        assert 'ironrt_fleet_ledger_up{scope="project:team"} 1.0' in scraped
        assert 'ironrt_fleet_lease_usd{scope="project:team"}' in scraped
        for d in ds:
            assert PASSWORD not in doctor.stdout + d.log()
            assert PASSWORD.encode() not in (d.home / "ironrt.db").read_bytes()


def test_a_limit_set_on_one_daemon_reaches_the_others_before_their_poll(
    ledger_url: str,
) -> None:
    # Polls 30 s apart: only the database's notification can bring the change sooner.
    env = {"IRONRT_LEDGER_URL": ledger_url, "IRONRT_LEDGER_POLL": "30"}
    with daemons(2, env) as ds:
        ds[0].rt.set_limits("project:team", budget_usd=2.5, window="1h")
        wait_until(lambda: ds[1].rt.get_limits("project:team").budget_usd == 2.5, timeout=5)
        theirs = ds[1].rt.get_limits("project:team")
        assert theirs.resets_at == ds[0].rt.get_limits("project:team").resets_at
        ds[1].rt.set_limits("project:team", budget_usd=None)
        wait_until(lambda: ds[0].rt.get_limits("project:team").budget_usd is None, timeout=5)
