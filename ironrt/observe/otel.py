"""OpenTelemetry export: one span per LLM call with the GenAI semantic conventions, each a
child of an `invoke_agent {name}` span for the agent's run, and the GenAI client metrics,
over OTLP/HTTP (docs/opentelemetry.md).

Built only when an endpoint is set (`IRONRT_OTLP_ENDPOINT`, else the standard
`OTEL_EXPORTER_OTLP_ENDPOINT`). The SDK runs in a worker process (`otel_worker.py` says
why); this side is what the daemon pays per call: `observe` packs a record and appends it
to a bounded buffer (full: dropped and counted), and one task writes the buffer to the
worker in batches. A slow worker or a dead collector makes the buffer drop, never a call
wait. A worker that dies is started again after a backoff.

Runs. A run is one process lifetime of an agent, named by (agent id, pid, process start
time): the span ids are derived from that, so a run that outlives a daemon restart keeps
its ids. The run's span can only be exported once it ends: on the events that end it
(AgentExited, AgentKilled, AgentStopped, AgentFailed, AgentRestarting), on a call from a
new pid of the same agent, and at daemon stop (a run still going is exported then, and
again, same ids, when it ends under the next daemon).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
from anyio.abc import Process

from ironrt.config import Settings
from ironrt.events import EventBus
from ironrt.governance.flow import Flow
from ironrt.observe.otel_content import input_messages, output_messages
from ironrt.observe.otel_records import CallRecord, Record, RunRecord, frame
from ironrt.protocol import Trace
from ironrt.supervisor.supervisor import Supervisor

__all__ = ["OtelExporter", "build"]

log = logging.getLogger("ironrt.otel")

#: Records waiting for the worker; beyond it new ones are dropped (and counted).
MAX_PENDING = 20_000
#: Records per frame written to the worker.
BATCH = 512
#: How often the writer looks for records when none woke it.
WRITE_INTERVAL_S = 0.05
#: At daemon stop: the worker's own flush, then the most the daemon waits for it.
FLUSH_S = 3.0
STOP_WAIT_S = 5.0
_ENDS_RUN = {"AgentExited", "AgentKilled", "AgentStopped", "AgentFailed", "AgentRestarting"}
_STARTS_RUN = {"AgentStarted", "AgentRestarted", "AgentReattached", "AgentResurrected"}

#: (agent id) -> (pid, process start time, name, project) of its current run, or None.
RunLookup = Callable[[str], "tuple[int, float, str, str | None] | None"]


@dataclass(slots=True)
class _Run:
    agent_id: str
    pid: int
    started_s: float
    name: str
    project: str | None

    def ended(self, at: float) -> RunRecord:
        return RunRecord(self.agent_id, self.pid, self.started_s, at, self.name, self.project)


def supervisor_runs(supervisor: Supervisor) -> RunLookup:
    """The supervisor's record of an agent's current process."""

    def lookup(agent_id: str) -> tuple[int, float, str, str | None] | None:
        m = supervisor.agents.get(agent_id)
        if m is None or m.record.pid is None or m.stored.pid_started is None:
            return None
        return m.record.pid, m.stored.pid_started, m.gov.name, m.gov.project

    return lookup


def build(settings: Settings, supervisor: Supervisor) -> OtelExporter | None:
    """The exporter, if an endpoint is set; None otherwise (nothing is imported or run)."""
    if not (settings.otlp_endpoint or settings.otel_endpoint):
        return None
    return OtelExporter(settings, supervisor_runs(supervisor))


class OtelExporter:
    def __init__(self, settings: Settings, runs: RunLookup) -> None:
        self.settings = settings
        #: None: the worker reads OTEL_EXPORTER_OTLP_(TRACES_|METRICS_)ENDPOINT itself.
        self.endpoint = settings.otlp_endpoint
        self.capture = settings.otel_capture_content
        self._lookup = runs
        self._runs: dict[str, _Run] = {}
        self._pending: deque[Record] = deque()
        self._wake = anyio.Event()
        self._servers: dict[str, tuple[str | None, int | None]] = {}
        self._stopping = False
        self._process: Process | None = None
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()
        self._running = False
        #: Records dropped because the buffer was full (a stuck worker).
        self.dropped = 0
        #: Records handed to the worker.
        self.sent = 0

    # ---- the hot path -------------------------------------------------------------------

    def observe(self, trace: Trace, flow: Flow) -> None:
        """A settled call: packed and queued, O(1), never blocking."""
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        run = self._run_for(trace.agent_id, trace.pid)
        now_ns = time.time_ns()
        start_ns = now_ns - int((time.monotonic() - flow.started) * 1e9)
        usage = flow.usage
        address, port = self._server(flow.upstream)
        inputs = system = outputs = None
        if self.capture and trace.refusal is None and flow.upstream_status is not None:
            inputs, system = input_messages(flow)
            outputs = output_messages(flow)
        self._pending.append(
            CallRecord(
                agent_id=trace.agent_id,
                agent_name=trace.agent_name,
                project=trace.project,
                pid=run.pid if run else None,
                run_started_s=run.started_s if run else None,
                provider=trace.provider,
                endpoint=trace.endpoint,
                request_model=flow.model or trace.model,
                response_model=trace.response_model,
                stream=trace.stream,
                status_code=trace.status_code,
                input_tokens=trace.input_tokens,
                output_tokens=trace.output_tokens,
                cached_tokens=trace.cached_tokens,
                cache_write_tokens=usage.cache_write_tokens if usage else 0,
                reasoning_tokens=trace.reasoning_tokens,
                has_usage=usage is not None,
                cost_usd=trace.cost_usd,
                start_ns=start_ns,
                end_ns=start_ns + int(trace.latency_ms * 1e6),
                ttfb_s=trace.ttfb_ms / 1000 if trace.ttfb_ms is not None else None,
                overhead_ms=trace.overhead_ms,
                refusal=trace.refusal,
                error_type=error_type(trace, flow),
                error=trace.error,
                server_address=address,
                server_port=port,
                input_messages=inputs,
                system_instructions=system,
                output_messages=outputs,
            )
        )
        if len(self._pending) >= BATCH:
            self._wake.set()

    def _server(self, upstream: str) -> tuple[str | None, int | None]:
        """`server.address`/`server.port` of `"<provider>:<base url>"`, parsed once each."""
        found = self._servers.get(upstream)
        if found is None:
            _, _, url = upstream.partition(":")
            try:
                parts = urlsplit(url)
                default = 443 if parts.scheme == "https" else 80
                found = (parts.hostname, parts.port or default) if parts.hostname else (None, None)
            except ValueError:
                found = (None, None)
            if len(self._servers) < 1000:
                self._servers[upstream] = found
        return found

    # ---- runs ---------------------------------------------------------------------------

    def _run_for(self, agent_id: str, pid: int | None) -> _Run | None:
        run = self._runs.get(agent_id)
        if run is not None and run.pid == pid:
            return run
        if pid is None:
            return None
        return self._open(agent_id, expected_pid=pid)

    def _open(self, agent_id: str, expected_pid: int | None = None) -> _Run | None:
        known = self._lookup(agent_id)
        if known is None or (expected_pid is not None and known[0] != expected_pid):
            return None
        pid, started, name, project = known
        old = self._runs.get(agent_id)
        if old is not None:
            if old.pid == pid and old.started_s == started:
                return old
            self._end(agent_id)
        run = self._runs[agent_id] = _Run(agent_id, pid, started, name, project)
        return run

    def _end(self, agent_id: str | None) -> None:
        run = self._runs.pop(agent_id, None) if agent_id else None
        if run is not None:
            self._pending.append(run.ended(time.time()))
            self._wake.set()

    # ---- the daemon's side --------------------------------------------------------------

    async def run(self, bus: EventBus) -> None:
        """Follow the runs on the bus and feed the worker, until `aclose`."""
        self._running = True
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._follow, bus)
                    await self._feed()
        finally:
            self._done.set()

    async def _follow(self, bus: EventBus) -> None:
        async with bus.subscribe(buffer=10_000) as events:
            async for ev in events:
                kind, agent_id = ev.kind, ev.agent_id
                if agent_id is None:
                    continue
                if kind in _ENDS_RUN:
                    self._end(agent_id)
                elif kind in _STARTS_RUN:
                    self._open(agent_id)

    async def _feed(self) -> None:
        backoff = 1.0
        while not self._stopping:
            try:
                await self._serve_worker()
                backoff = 1.0
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                log.warning("the OpenTelemetry export worker stopped (%s)", type(exc).__name__)
            if self._stopping:
                return
            await anyio.sleep(backoff)  # dropping meanwhile: never a call waits for it
            backoff = min(backoff * 2, 60.0)

    async def _serve_worker(self) -> None:
        err = open(self.settings.home / "otel.log", "ab")  # noqa: ASYNC230, SIM115 - the child's stderr
        try:
            process = self._process = await anyio.open_process(
                self._command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        finally:
            err.close()
        log.info(
            "OpenTelemetry export started",
            extra={"fields": {"worker_pid": process.pid, "capture_content": self.capture}},
        )
        try:
            while True:
                with anyio.move_on_after(WRITE_INTERVAL_S):
                    await self._wake.wait()
                self._wake = anyio.Event()
                await self._write(process)
                if process.returncode is not None:
                    raise OSError(f"exited with {process.returncode}")
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.wait()
            raise

    async def _write(self, process: Process) -> None:
        assert process.stdin is not None
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
            await process.stdin.send(frame(batch))
            self.sent += len(batch)

    def _command(self) -> list[str]:
        cmd = [sys.executable, "-m", "ironrt.observe.otel_worker", "--flush-s", str(FLUSH_S)]
        cmd += ["--log", str(self.settings.home / "otel.log")]
        if self.endpoint:
            cmd += ["--endpoint", self.endpoint]
        return cmd

    async def aclose(self) -> None:
        """At daemon stop: every run still open is exported, the rest is flushed (bounded
        by FLUSH_S in the worker, STOP_WAIT_S here), and the worker ends."""
        self._stopping = True
        self._scope.cancel()  # the feeder stops between two frames, then this one writes
        if self._running:
            await self._done.wait()
        for agent_id in list(self._runs):
            self._end(agent_id)
        process = self._process
        if process is None:
            return
        with anyio.move_on_after(STOP_WAIT_S) as scope:
            try:
                await self._write(process)
                if process.stdin is not None:
                    await process.stdin.aclose()
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            await process.wait()
        if scope.cancelled_caught:
            log.warning("the OpenTelemetry export worker did not finish in time: killed")
            process.kill()
        log.info(
            "OpenTelemetry export stopped",
            extra={"fields": {"sent": self.sent, "dropped": self.dropped}},
        )


def error_type(trace: Trace, flow: Flow) -> str | None:
    """`error.type`: the refusal's code, the upstream failure, the HTTP status, or
    `_OTHER` for an error without either (a stream cut short)."""
    if trace.refusal is not None:
        return trace.refusal
    if flow.upstream_failure is not None:
        return flow.upstream_failure
    if trace.status_code >= 400:
        return str(trace.status_code)
    if trace.error:
        return "_OTHER"
    return None
