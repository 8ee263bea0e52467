"""The daemon's event loop (`IRONRT_EVENT_LOOP`): uvloop by default (plain asyncio, said in
daemon.log, where it cannot be imported), asyncio on request, uvloop named where it cannot
be imported refused in one line, a bad value refused in one line.

uvloop differs from asyncio where the daemon leans on it: its transports are no
`asyncio.Transport` subclasses, its `get_extra_info("socket")` is a pseudo-socket (the
control socket's SO_PEERCRED check reads through it), it watches the agents' pidfds and
takes the daemon's signals. So a daemon on uvloop here does the daemon's whole job on it:
control calls, an agent spawned, waited for and stopped, router calls plain and streamed
through the upstream client to a fake provider over TCP, and a stop by SIGTERM.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironrt.config import ConfigError, Settings
from ironrt.daemon import event_loop
from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream
from tests.router.helpers import OPENAI_KEY, governed_env, sdk_client, token_agent

MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def loop_line(d: TempDaemon) -> dict[str, object]:
    """The daemon's start-up line about its loop."""
    for line in d.log().splitlines():
        entry = json.loads(line)
        if entry["msg"] == "event loop":
            return dict(entry)
    raise AssertionError(f"no 'event loop' line in daemon.log:\n{d.log()}")


def loop_of(d: TempDaemon) -> str:
    """The loop the daemon says it runs on: the `event_loop` field of its start-up line."""
    return str(loop_line(d)["event_loop"])


def failed_start(d: TempDaemon) -> str:
    """The one line `python -m ironrt.daemon` printed when it refused to start."""
    with pytest.raises(RuntimeError, match="daemon exited with 2"):
        d.start()
    assert "Traceback" not in d.stderr()
    lines = d.stderr().strip().splitlines()
    assert len(lines) == 1, d.stderr()
    return lines[0]


@pytest.fixture
def no_uvloop(tmp_path: Path) -> dict[str, str]:
    """An environment where `import uvloop` fails, as on a platform it does not build for."""
    blocker = tmp_path / "blocker" / "uvloop"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('no uvloop on this platform')\n")
    return {"PYTHONPATH": str(blocker.parent)}


# ---- the setting ---------------------------------------------------------------------------


def test_the_setting_names_a_loop_in_any_case(tmp_path: Path) -> None:
    def loaded(value: str) -> str | None:
        return Settings.load({"IRONRT_HOME": str(tmp_path), "IRONRT_EVENT_LOOP": value}).event_loop

    assert (loaded(""), loaded("UVLOOP"), loaded(" asyncio ")) == (None, "uvloop", "asyncio")
    with pytest.raises(ConfigError, match="IRONRT_EVENT_LOOP must be one of uvloop, asyncio"):
        loaded("tokio")
    assert event_loop("asyncio") == ("asyncio", {}, None)
    for wanted in (None, "uvloop"):
        name, options, why = event_loop(wanted)
        assert name == "uvloop" and options["loop_factory"].__module__.startswith("uvloop")
        assert why is None


# ---- through real daemons ------------------------------------------------------------------


def test_a_daemon_on_uvloop_runs_everything(upstream: FakeUpstream, tmp_path: Path) -> None:
    """The default loop, unset: the whole job on it."""
    upstream.clear_requests()
    d = TempDaemon(offline=False, env=governed_env(upstream.url, IRONRT_EVENT_LOOP=""))
    with d:
        assert loop_of(d) == "uvloop" and "because" not in loop_line(d)
        assert d.rt.health().ok  # the control socket: its peer check read SO_PEERCRED
        agent_id, token = token_agent(d, tmp_path)
        client = sdk_client(d, token)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert answer.choices[0].message.content
        chunks = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        seen = upstream.wait_for_requests(2)
        assert [r.headers["authorization"] for r in seen] == [f"Bearer {OPENAI_KEY}"] * 2
        # The agent's end is seen through its pidfd, watched by the loop.
        assert d.rt.stop_agent(agent_id).status.value == "stopped"
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(20) == 0
        assert '"signal": "SIGTERM"' in d.log()


def test_asyncio_when_the_setting_names_it(upstream: FakeUpstream, tmp_path: Path) -> None:
    env = governed_env(upstream.url, IRONRT_EVENT_LOOP="asyncio")
    with TempDaemon(offline=False, env=env) as d:
        assert loop_of(d) == "asyncio" and "because" not in loop_line(d)
        _, token = token_agent(d, tmp_path)
        answer = sdk_client(d, token).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,  # type: ignore[arg-type]
        )
        assert answer.choices[0].message.content


def test_asyncio_where_uvloop_cannot_be_imported_and_the_log_says_why(
    no_uvloop: dict[str, str],
) -> None:
    with TempDaemon(env={**no_uvloop, "IRONRT_EVENT_LOOP": ""}) as d:
        assert loop_line(d)["event_loop"] == "asyncio"
        assert loop_line(d)["because"] == "uvloop cannot be imported"
        assert d.rt.health().ok


def test_a_bad_value_stops_the_start_in_one_line() -> None:
    d = TempDaemon(env={"IRONRT_EVENT_LOOP": "tokio"})
    try:
        assert failed_start(d) == (
            "ironrt: the daemon cannot start: IRONRT_EVENT_LOOP must be one of uvloop, "
            "asyncio, got 'tokio'"
        )
    finally:
        d.__exit__(None, None, None)


def test_a_named_uvloop_that_cannot_be_imported_is_refused(
    no_uvloop: dict[str, str],
) -> None:
    d = TempDaemon(env={**no_uvloop, "IRONRT_EVENT_LOOP": "uvloop"})
    try:
        line = failed_start(d)
    finally:
        d.__exit__(None, None, None)
    assert line.startswith("ironrt: the daemon cannot start: IRONRT_EVENT_LOOP is uvloop but")
    assert "set IRONRT_EVENT_LOOP=asyncio" in line
    assert "ironrt[uvloop]" not in line  # a dependency now: `pip install uvloop`
