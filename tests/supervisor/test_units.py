"""Small pure pieces of the supervisor: environment, log rotation, states, name resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from ironrt.errors import AgentNotFound, AmbiguousAgent
from ironrt.protocol import AgentStatus as S
from ironrt.supervisor import logfiles, states
from ironrt.supervisor.agents import resolve, unique_name
from ironrt.supervisor.environment import agent_environment, new_token, token_hash


def test_environment_scrubs_every_provider_secret_even_from_overrides() -> None:
    base = {
        "OPENAI_API_KEY": "sk-real",
        "GROQ_API_KEY": "gsk-real",
        "IRONRT_HOME": "/x",
        "PATH": "/bin",
        "NO_PROXY": "corp.example",
    }
    env = agent_environment(
        base,
        agent_id="a1",
        token="ic-t",
        router_url="http://127.0.0.1:1",
        overrides={"ANTHROPIC_API_KEY": "sk-ant-real", "FOO": "bar"},
    )
    assert "GROQ_API_KEY" not in env and "IRONRT_HOME" not in env
    assert env["ANTHROPIC_API_KEY"] == "ic-t" and env["OPENAI_API_KEY"] == "ic-t"
    assert env["FOO"] == "bar" and env["PATH"] == "/bin"
    assert env["NO_PROXY"] == "corp.example,127.0.0.1,localhost"


def test_tokens_are_256_bit_and_hashed() -> None:
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 3 + 43
    assert token_hash(a) != a and len(token_hash(a)) == 64


def test_rotation_keeps_the_childs_descriptor_writing(tmp_path: Path) -> None:
    import os

    path = tmp_path / "x.log"
    fd = logfiles.open_for_child(path)
    try:
        os.write(fd, b"a" * 2000)
        assert logfiles.rotate_if_needed(path, max_bytes=1000, backups=2)
        os.write(fd, b"after\n")
        assert path.read_bytes() == b"after\n"  # O_APPEND: no hole where the old bytes were
        assert (tmp_path / "x.log.1").read_bytes() == b"a" * 2000
        assert not logfiles.rotate_if_needed(path, max_bytes=1000, backups=2)
    finally:
        os.close(fd)


def test_tail_and_read_from(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(b"".join(f"line {i}\n".encode() for i in range(1000)))
    text, end = logfiles.tail_lines(path, 3)
    assert text == b"line 997\nline 998\nline 999\n" and end == path.stat().st_size
    with path.open("ab") as fh:
        fh.write(b"new\n")
    assert [d for d, _ in logfiles.read_from(path, end)] == [b"new\n"]
    path.write_bytes(b"truncated\n")  # rotation: the offset is past the end, start over
    assert [d for d, _ in logfiles.read_from(path, end)] == [b"truncated\n"]


def test_transitions() -> None:
    states.check(S.STARTING, S.RUNNING)
    states.check(S.EXITED, S.STARTING)
    with pytest.raises(states.IllegalTransition):
        states.check(S.STOPPED, S.RUNNING)


def test_resolve() -> None:
    rows = [("abc111", "web", False), ("abc222", "web", True), ("def333", "db", True)]
    assert resolve("abc111", rows) == "abc111"
    assert resolve("web", rows) == "abc222"  # the live one of that name
    assert resolve("def", rows) == "def333"
    with pytest.raises(AmbiguousAgent):
        resolve("abc", rows)
    with pytest.raises(AgentNotFound):
        resolve("zzz", rows)
    assert unique_name("web", {"web", "web-2"}) == "web-3"
