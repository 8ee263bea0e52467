"""Prometheus metrics end to end: a real daemon forwarding to a real fake upstream (150 ms
of latency), two real agents calling it through the openai SDK, and `/metrics` scraped
over the control socket and over `IRONRT_METRICS_ADDR`, parsed by prometheus_client's own
parser. What the counters say is held against what the daemon recorded (`/v1/traces`,
`/v1/events`, `/v1/limits`), never against numbers written in the test.

One daemon for the module: the agents finish their calls, then stay alive until the test
releases them, so their series are checked while they run and pruned once they ended
(the agent TTL is 1 s here).
"""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ironrt._version import __version__
from ironrt.config import ConfigError, Settings
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import ANTHROPIC_KEY, OPENAI_KEY, agent_script, governed_env

LATENCY_S = 0.15

AGENT = """
    import json, pathlib, sys, time
    import openai

    done, go, model, plan = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    client = openai.OpenAI(max_retries=0)
    results = []
    for step in plan.split(","):
        text = "mail jane.doe@example.com or jane@example.org" if step == "pii" else "hello"
        try:
            answer = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}], stream=step == "stream"
            )
            if step == "stream":
                for _ in answer:
                    pass
            results.append("ok")
        except openai.APIStatusError as exc:
            results.append(exc.status_code)
    # Written whole, then renamed: the test waits for the name, never reads half a file.
    partial = done.with_suffix(".partial")
    partial.write_text(json.dumps(results))
    partial.rename(done)
    # Alive until the test has read the metrics of a running agent.
    deadline = time.monotonic() + 120
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
"""


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    return [
        Sample(s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def pick(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [
        s
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in pick(samples, name, **labels))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class World:
    d: TempDaemon
    up: FakeUpstream
    http: httpx.Client
    metrics_url: str
    alpha: str
    beta: str
    go_beta: Path
    results: dict[str, list[object]]

    def get(self, path: str) -> Any:
        r = self.http.get(path)
        assert r.status_code == 200, r.text
        return r.json()

    def scrape(self) -> str:
        r = self.http.get("/metrics")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        return r.text

    def traces(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get("/v1/traces?limit=10000")["traces"]
        return found

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.get("/v1/events?limit=10000")["events"] if e["kind"] == kind]


def field(event: dict[str, Any], name: str) -> Any:
    """An event's field, flat (typed events) or in its `data` (older ones)."""
    return event[name] if name in event else event.get("data", {}).get(name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("metrics")
    port = free_port()
    with FakeUpstream(latency=LATENCY_S, delay=0.02) as up:
        env = governed_env(
            up.url, IRONRT_METRICS_ADDR=f"127.0.0.1:{port}", IRONRT_METRICS_AGENT_TTL="1"
        )
        with TempDaemon(offline=False, env=env) as d:
            transport = httpx.HTTPTransport(uds=str(d.home / "ironrt.sock"))
            with httpx.Client(transport=transport, base_url="http://ironrt", timeout=30) as http:
                script = agent_script(tmp, "agent.py", AGENT)
                go_alpha, go_beta = tmp / "go-alpha", tmp / "go-beta"
                plan = {
                    # rpm 3: the fourth call is refused by the rate limit, reaching no provider.
                    "alpha": ("gpt-4o-mini", "plain,stream,pii,plain", go_alpha),
                    "beta": ("gpt-4.1-mini", "plain,stream", go_beta),
                }
                ids = {}
                for name, (model, steps, go) in plan.items():
                    args = [str(tmp / f"done-{name}"), str(go), model, steps]
                    ids[name] = d.rt.start_agent(
                        script,
                        args,
                        name=name,
                        project=f"p-{name}",
                        rpm=3 if name == "alpha" else None,
                        budget=5.0 if name == "beta" else None,
                    )
                for name in plan:
                    wait_until((tmp / f"done-{name}").exists, timeout=60)
                results = {n: json.loads((tmp / f"done-{n}").read_text()) for n in plan}
                try:
                    yield World(
                        d,
                        up,
                        http,
                        f"http://127.0.0.1:{port}/metrics",
                        ids["alpha"],
                        ids["beta"],
                        go_beta,
                        results,
                    )
                finally:
                    go_alpha.touch()
                    go_beta.touch()


def test_the_agents_made_the_calls_the_test_counts_on(world: World) -> None:
    assert world.results == {"alpha": ["ok", "ok", "ok", 429], "beta": ["ok", "ok"]}


def test_calls_cost_and_tokens_equal_the_recorded_traces(world: World) -> None:
    traces = world.traces()
    assert len(traces) == 6
    samples = parse(world.scrape())
    expected: dict[tuple[str, ...], float] = defaultdict(float)
    for t in traces:
        labels = (t["agent_name"], t["project"] or "", t["provider"], t["model"])
        status = (
            "refused"
            if t["refusal"]
            else ("error" if t["status_code"] >= 400 or t["error"] else "ok")
        )
        expected[("calls", *labels, status)] += 1
        expected[("cost", *labels)] += t["cost_usd"] or 0.0
        for kind in ("input", "output", "cached", "reasoning"):
            expected[("tokens", *labels, kind)] += t[f"{kind}_tokens"]
    names = {"calls": "ironrt_llm_calls_total", "cost": "ironrt_llm_cost_usd_total"}
    names["tokens"] = "ironrt_llm_tokens_total"
    for key, value in expected.items():
        what, agent, project, provider, model, *rest = key
        labels = dict(agent=agent, project=project, provider=provider, model=model)
        if what == "calls":
            labels["status"] = rest[0]
        elif what == "tokens":
            labels["type"] = rest[0]
        found = pick(samples, names[what], **labels)
        assert len(found) == 1, (key, found)
        assert found[0].value == pytest.approx(value, abs=1e-9), key
    # Every series of the counters is one of the recorded calls' (nothing invented).
    assert total(samples, "ironrt_llm_calls_total") == len(traces)
    assert total(samples, "ironrt_llm_cost_usd_total") == pytest.approx(
        sum(t["cost_usd"] or 0.0 for t in traces), abs=1e-9
    )
    assert total(samples, "ironrt_llm_cost_usd_total") > 0
    assert total(samples, "ironrt_llm_tokens_total", type="output") > 0
    assert total(samples, "ironrt_llm_calls_total", agent="alpha", status="refused") == 1


def test_histograms_count_every_call_in_seconds(world: World) -> None:
    traces = world.traces()
    samples = parse(world.scrape())
    answered = [t for t in traces if t["ttfb_ms"] is not None]
    upstream = [t for t in traces if t["overhead_ms"] is not None]
    assert len(answered) == len(upstream) == 5  # all but the refused call
    duration = "ironrt_llm_request_duration_seconds"
    assert total(samples, f"{duration}_count") == len(traces)
    assert total(samples, f"{duration}_sum") == pytest.approx(
        sum(t["latency_ms"] for t in traces) / 1000, rel=1e-6
    )
    ttfb = "ironrt_llm_time_to_first_byte_seconds"
    assert total(samples, f"{ttfb}_count") == len(answered)
    # Seconds, not milliseconds: no answer came sooner than the upstream's latency.
    assert total(samples, f"{ttfb}_bucket", le="0.1") == 0
    assert total(samples, f"{ttfb}_bucket", le="+Inf") == len(answered)
    overhead = "ironrt_router_overhead_seconds"
    assert total(samples, f"{overhead}_count") == len(upstream)
    assert total(samples, f"{overhead}_sum") == pytest.approx(
        sum(t["overhead_ms"] for t in upstream) / 1000, rel=1e-6
    )
    for model in ("gpt-4o-mini", "gpt-4.1-mini"):
        assert total(samples, f"{duration}_count", provider="openai", model=model) == sum(
            1 for t in traces if t["model"] == model
        )


def test_the_router_overhead_leaves_out_the_upstreams_time(world: World) -> None:
    """The fake upstream waits 150 ms before answering and 20 ms between stream events:
    none of that is the router's own time, the streamed body included."""
    streams = 0
    for t in world.traces():
        if t["overhead_ms"] is None:
            continue
        assert t["overhead_ms"] <= t["latency_ms"] - LATENCY_S * 1000, t
        if t["stream"]:
            streams += 1
            reading = t["latency_ms"] - t["ttfb_ms"]  # the events, 20 ms apart
            assert reading >= 40, t
            assert t["overhead_ms"] < reading / 2, t
    assert streams == 2


def test_rate_limit_refusals_and_pii_findings(world: World) -> None:
    samples = parse(world.scrape())
    refused = [t for t in world.traces() if t["refusal"] == "rate_limited"]
    assert len(refused) == 1
    ratelimited = "ironrt_ratelimit_refusals_total"
    assert total(samples, ratelimited, agent="alpha", project="p-alpha") == 1
    assert total(samples, ratelimited) == 1
    expected: dict[tuple[str, str], int] = defaultdict(int)
    alerts = world.events("PiiAlert")
    for e in alerts:
        assert e["agent_id"] == world.alpha
        actions = field(e, "actions")
        for type_, n in field(e, "counts").items():
            expected[(type_, actions[type_])] += n
    assert expected.get(("EMAIL", "detected"), 0) >= 2, expected  # two addresses in a prompt
    found = {
        (s.labels["type"], s.labels["action"]): s.value
        for s in pick(samples, "ironrt_pii_findings_total", agent="alpha", project="p-alpha")
    }
    assert found == expected
    assert total(samples, "ironrt_pii_findings_total") == sum(expected.values())


def test_budget_gauges_equal_the_limits(world: World) -> None:
    limits = world.get("/v1/limits")["limits"]
    samples = parse(world.scrape())
    keys = {s["scope"] for s in limits}
    assert {"global", "project:p-alpha", "project:p-beta", f"agent:{world.beta}"} <= keys
    assert {s.labels["scope"] for s in pick(samples, "ironrt_budget_spent_usd")} == keys
    for scope in limits:
        key = scope["scope"]
        (spent,) = pick(samples, "ironrt_budget_spent_usd", scope=key)
        (held,) = pick(samples, "ironrt_budget_held_usd", scope=key)
        assert spent.value == pytest.approx(scope["spent_usd"], abs=1e-9)
        assert held.value == pytest.approx(scope["held_usd"], abs=1e-9)
        budget = pick(samples, "ironrt_budget_usd", scope=key)
        assert [b.value for b in budget] == ([scope["budget_usd"]] if scope["budget_usd"] else [])
    (beta_budget,) = pick(samples, "ironrt_budget_usd", scope=f"agent:{world.beta}")
    assert beta_budget.value == 5.0
    beta_spent = pick(samples, "ironrt_budget_spent_usd", scope=f"agent:{world.beta}")
    assert beta_spent[0].value > 0


def test_agent_gauges_and_circuits(world: World) -> None:
    def memory_sampled() -> bool:
        found = pick(parse(world.scrape()), "ironrt_agent_memory_bytes", agent_id=world.alpha)
        return bool(found) and found[0].value > 0

    wait_until(memory_sampled, timeout=10)
    samples = parse(world.scrape())
    for name, agent_id in (("alpha", world.alpha), ("beta", world.beta)):
        labels = dict(agent=name, agent_id=agent_id, project=f"p-{name}")
        (up,) = pick(samples, "ironrt_agent_up", **labels)
        assert up.value == 1
        (restarts,) = pick(samples, "ironrt_agent_restarts_total", **labels)
        assert restarts.value == world.get(f"/v1/agents/{agent_id}")["restarts"] == 0
    (cpu,) = pick(samples, "ironrt_agent_cpu_seconds_total", agent_id=world.alpha)
    assert cpu.value > 0  # importing the openai SDK alone takes CPU time
    circuits = world.get(f"/v1/agents/{world.alpha}/metrics")["circuits"]
    assert circuits, "the calls went through a circuit"
    states = {s.labels["circuit"]: s.value for s in pick(samples, "ironrt_circuit_state")}
    assert states == {k: {"closed": 0, "half-open": 1, "open": 2}[v] for k, v in circuits.items()}
    (info,) = pick(samples, "ironrt_info")
    assert info.labels == {"version": __version__} and info.value == 1


def test_the_daemons_own_process_series_are_the_daemons(world: World) -> None:
    """`process_*`, `python_gc_*`, `python_info`, as any Python exporter has them, held
    against the daemon's process as psutil reads it."""
    assert world.d.proc is not None
    daemon = psutil.Process(world.d.proc.pid)
    samples = parse(world.scrape())
    rss = daemon.memory_info().rss
    (resident,) = pick(samples, "process_resident_memory_bytes")
    assert 0.5 * rss < resident.value < 2 * rss
    (started,) = pick(samples, "process_start_time_seconds")
    assert abs(started.value - daemon.create_time()) < 2
    (fds,) = pick(samples, "process_open_fds")
    assert fds.value >= 3  # the sockets it listens on, its database, its log
    (cpu,) = pick(samples, "process_cpu_seconds_total")
    assert 0 < cpu.value <= sum(daemon.cpu_times()[:2]) + 0.05
    passes = {s.labels["generation"]: s.value for s in pick(samples, "python_gc_collections_total")}
    assert set(passes) == {"0", "1", "2"} and passes["2"] >= 1  # the freeze's own collect
    (python,) = pick(samples, "python_info")
    assert python.labels["version"] == platform.python_version()


def test_the_tcp_port_serves_the_same_metrics_and_nothing_else(world: World) -> None:
    over_tcp = httpx.get(world.metrics_url, timeout=10)
    assert over_tcp.status_code == 200
    assert over_tcp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    counters = ("ironrt_llm_cost_usd_total", "ironrt_llm_tokens_total", "ironrt_llm_calls_total")
    tcp, unix = parse(over_tcp.text), parse(world.scrape())
    for name in counters:
        assert sorted((str(s.labels), s.value) for s in pick(tcp, name)) == sorted(
            (str(s.labels), s.value) for s in pick(unix, name)
        )
        assert pick(tcp, name)
    base = world.metrics_url.removesuffix("/metrics")
    assert httpx.get(base + "/v1/agents", timeout=10).status_code == 404
    assert httpx.post(world.metrics_url, timeout=10).status_code == 405


def test_no_provider_key_is_ever_in_the_metrics(world: World) -> None:
    text = world.scrape() + httpx.get(world.metrics_url, timeout=10).text
    assert OPENAI_KEY not in text and ANTHROPIC_KEY not in text
    assert "sk-" not in text


def test_an_ended_agents_series_are_pruned_after_the_ttl(world: World) -> None:
    """Last in the module: beta ends, and after the agent TTL (1 s) its label sets leave
    every counter and gauge, while the live alpha's stay."""
    world.go_beta.touch()
    assert world.d.rt.wait(world.beta, timeout=30).status.value == "exited"

    def beta_gone() -> bool:
        text = world.scrape()
        return 'agent="beta"' not in text and world.beta not in text

    wait_until(beta_gone, timeout=15)
    samples = parse(world.scrape())
    for name in ("ironrt_llm_calls_total", "ironrt_llm_tokens_total", "ironrt_agent_up"):
        assert pick(samples, name, agent="alpha"), name
    assert pick(samples, "ironrt_pii_findings_total", agent="alpha")
    assert pick(samples, "ironrt_ratelimit_refusals_total", agent="alpha")
    # The histograms carry no agent: they keep beta's calls.
    count = total(samples, "ironrt_llm_request_duration_seconds_count", model="gpt-4.1-mini")
    assert count == 2


# ---- start-up errors ----------------------------------------------------------------------


def daemon_start_error(env: dict[str, str]) -> str:
    """The one line `python -m ironrt.daemon` says when it refuses to start."""
    d = TempDaemon(env=env)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ironrt.daemon"],
            env=d.env,
            cwd=d.home,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        d.__exit__(None, None, None)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    "value", ["9464", "[::1]9464", "::1:9464", "127.0.0.1:0", "127.0.0.1:65536", "http://h:1"]
)
def test_a_bad_metrics_address_names_the_setting_and_the_form(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.load({"IRONRT_HOME": str(tmp_path), "IRONRT_METRICS_ADDR": value})
    assert str(raised.value) == (
        "IRONRT_METRICS_ADDR must be host:port, e.g. 127.0.0.1:9464 or [::1]:9464 "
        f"(port 1-65535), got {value!r}"
    )


def test_metrics_settings_are_read(tmp_path: Path) -> None:
    s = Settings.load({"IRONRT_HOME": str(tmp_path)})
    assert (s.metrics_addr, s.metrics_agent_ttl) == (None, 3600.0)
    env = {"IRONRT_METRICS_ADDR": " [::1]:9464 ", "IRONRT_METRICS_AGENT_TTL": "60"}
    s = Settings.load({"IRONRT_HOME": str(tmp_path), **env})
    assert (s.metrics_addr, s.metrics_agent_ttl) == (("::1", 9464), 60.0)
    (tmp_path / "config.toml").write_text('metrics_addr = "localhost:9464"\n')
    assert Settings.load({"IRONRT_HOME": str(tmp_path)}).metrics_addr == ("localhost", 9464)
    with pytest.raises(ConfigError, match=r"IRONRT_METRICS_AGENT_TTL must be .* 1 <= s <= 604800"):
        Settings.load({"IRONRT_HOME": str(tmp_path), "IRONRT_METRICS_AGENT_TTL": "0"})


def test_a_bad_metrics_address_stops_the_daemon_in_one_line() -> None:
    line = daemon_start_error({"IRONRT_METRICS_ADDR": "9464"})
    assert line.startswith("ironrt: the daemon cannot start: IRONRT_METRICS_ADDR must be host:port")


def test_a_metrics_port_that_is_taken_is_a_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = daemon_start_error({"IRONRT_METRICS_ADDR": f"127.0.0.1:{port}"})
    assert line.startswith(f"ironrt: the daemon cannot start: cannot listen on 127.0.0.1:{port}")
    assert f"IRONRT_METRICS_ADDR is 127.0.0.1:{port}; choose a free port" in line
