"""`/v1/events` of a real daemon: typed events with the agent's name and project, the
`kind`/`project` filters, Server-Sent Events over the Unix socket (ids, resume with
`Last-Event-ID` while events keep coming, a bad header), CostUpdate from real calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from ironrt.protocol import AgentStarted, CostUpdate
from ironrt.tempdaemon import TempDaemon, wait_until
from tests.router.helpers import token_agent

SSE = {"accept": "text/event-stream"}


@pytest.fixture(scope="module")
def daemon() -> Iterator[TempDaemon]:
    with TempDaemon() as d:
        yield d


def control(d: TempDaemon) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(d.rt.settings.socket_path))
    return httpx.Client(transport=transport, base_url="http://ironrt", timeout=10)


def sse_frames(resp: httpx.Response) -> Iterator[dict[str, str]]:
    """The stream's frames as field -> value; a comment frame as {"comment": ...}."""
    frame: dict[str, str] = {}
    for line in resp.iter_lines():
        if not line:
            if frame:
                yield frame
            frame = {}
            continue
        name, _, value = line.partition(":")
        frame[name or "comment"] = value.removeprefix(" ")


def sse_events(resp: httpx.Response) -> Iterator[tuple[int, str, dict[str, object]]]:
    for frame in sse_frames(resp):
        if "id" in frame:
            data = msgspec.json.decode(frame["data"])
            assert data["id"] == int(frame["id"]) and data["kind"] == frame["event"]
            yield int(frame["id"]), frame["event"], data


def test_agent_events_are_typed_and_carry_name_and_project(
    daemon: TempDaemon, tmp_path: Path
) -> None:
    agent_id, token = token_agent(daemon, tmp_path, name="typed-one", project="acme")
    started = list(daemon.rt.events(agent=agent_id, kind="AgentStarted"))
    assert len(started) == 1 and isinstance(started[0], AgentStarted)
    assert (started[0].agent_name, started[0].project, started[0].name) == (
        "typed-one",
        "acme",
        "typed-one",
    )
    assert started[0].pid is not None
    # A project filter keeps other projects' and daemon events out.
    assert {e.project for e in daemon.rt.events(project="acme", limit=1000)} == {"acme"}
    # Real calls make one coalesced CostUpdate (not one per call).
    with httpx.Client(base_url=daemon.router_url, timeout=10) as router:
        for _ in range(3):
            reply = router.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {token}"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert reply.status_code == 200, reply.text

    def updates() -> list[CostUpdate]:
        found = daemon.rt.events(agent=agent_id, kind=["CostUpdate"])
        return [e for e in found if isinstance(e, CostUpdate)]

    wait_until(lambda: sum(u.calls for u in updates()) == 3, timeout=15)
    last = updates()[-1]
    assert last.agent_name == "typed-one" and last.llm_calls == 3 and last.spent_usd > 0
    assert len(updates()) <= 2  # coalesced: at most one every interval, never one per call
    assert sum(u.cost_usd for u in updates()) == pytest.approx(last.spent_usd)


def test_sse_frames_have_ids_kinds_and_data(daemon: TempDaemon) -> None:
    daemon.rt.set_limits("project:sse-frames", rpm=5)
    with control(daemon) as c, c.stream("GET", "/v1/events", headers=SSE) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        ids = []
        for event_id, kind, data in sse_events(resp):  # starts with the retained events
            ids.append(event_id)
            if kind == "LimitsChanged" and data["scope"] == "project:sse-frames":
                break
    assert ids[0] == 1 and ids == sorted(set(ids))


def test_sse_resumes_after_last_event_id_missing_nothing(daemon: TempDaemon) -> None:
    scope, total = "project:sse-resume", 60
    done = threading.Event()

    def produce() -> None:
        for n in range(total):
            daemon.rt.set_limits(scope, rpm=n + 1)
            time.sleep(0.005)
        done.set()

    producer = threading.Thread(target=produce)
    seen: list[int] = []
    query = {"kind": "LimitsChanged"}
    with control(daemon) as c:
        since = list(daemon.rt.events(limit=1))[-1].id
        producer.start()
        headers = {**SSE, "last-event-id": str(since)}
        with c.stream("GET", "/v1/events", params=query, headers=headers) as resp:
            for event_id, _, data in sse_events(resp):
                if data["scope"] == scope:
                    seen.append(event_id)
                if len(seen) == 10:
                    break  # the connection is dropped mid-stream, events keep coming
        headers = {**SSE, "last-event-id": str(seen[-1])}
        with c.stream("GET", "/v1/events", params=query, headers=headers) as resp:
            for event_id, _, data in sse_events(resp):
                if data["scope"] == scope:
                    seen.append(event_id)
                if len(seen) == total:
                    break
    producer.join(10)
    assert done.is_set()
    stored = [e.id for e in daemon.rt.events(since=since, limit=1000, kind="LimitsChanged")]
    assert seen == sorted(set(seen)) == stored  # nothing missed, nothing twice


def test_a_bad_last_event_id_is_a_clear_400(daemon: TempDaemon) -> None:
    with control(daemon) as c:
        reply = c.get("/v1/events", headers={**SSE, "last-event-id": "abc"})
        unknown = c.get("/v1/events", params={"kind": "NoSuchKind"})
    assert reply.status_code == 400
    assert reply.json()["error"]["field"] == "Last-Event-ID"
    assert "Last-Event-ID" in reply.json()["error"]["message"]
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "kind"


def test_the_ndjson_follower_gets_typed_events_after_since(daemon: TempDaemon) -> None:
    since = list(daemon.rt.events(limit=1))[-1].id
    daemon.rt.set_limits("project:ndjson", rpm=3)
    followed = daemon.rt.events(since=since, follow=True, kind="LimitsChanged")
    event = next(iter(followed))
    assert event.kind == "LimitsChanged" and event.id > since
    assert getattr(event, "changes", None) == {"rpm": 3}
