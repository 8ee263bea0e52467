"""What a start imports, and what the daemon loads only after its router answers.

The daemon's start until the router answers is mostly imports (bench/startup.py measures
it). These tests pin the heavy packages that must stay off that path, each checked in a
fresh interpreter (a test process has imported everything already), and the work moved
to after the start (the log relay, the price tables, the PII checks) done through a real
daemon.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ironrt.tempdaemon import TempDaemon

#: Packages the daemon loads on first use (or never): a scrape of /metrics
#: (prometheus_client), webhooks and telemetry (httpx, which brings rich), OTLP export
#: (opentelemetry, in its own worker process), the first phone number checked
#: (phonenumbers), the first price (genai_prices, pydantic), the CLI (rich, typer), the
#: first call with PII checks (the detectors, which compile their patterns at import),
#: the fleet ledger (only with IRONRT_LEDGER_URL).
NOT_AT_START = (
    "prometheus_client",
    "httpx",
    "rich",
    "typer",
    "opentelemetry",
    "phonenumbers",
    "genai_prices",
    "pydantic",
    "ironrt.client",
    "ironrt.aclient",
    "ironrt.cli",
    "ironrt.pii.detectors",
    "ironrt.policies.pii_checks",
    "ironrt.policies.pii_call",
    # The fleet ledger: only a daemon with IRONRT_LEDGER_URL imports it (and asyncpg).
    "ironrt.fleet",
    "asyncpg",
    # The first retry's backoff (tenacity), a configured base URL (yarl), a host's proxy
    # settings (urllib.request, which brings http.client and email), a Retry-After date
    # (email), a keys or prices file (tomllib): ~55 ms of the start together, loaded by
    # the warm-up after the router answers or when first used.
    "tenacity",
    "yarl",
    "urllib.request",
    "email",
    "tomllib",
)


def imported_by(statement: str, names: tuple[str, ...]) -> list[str]:
    """The `names` (packages or modules) that `statement` imports in a fresh interpreter."""
    code = (
        f"import sys\n{statement}\n"
        f"names = {names!r}\n"
        "print(' '.join(sorted(n for n in names if any("
        "m == n or m.startswith(n + '.') for m in sys.modules))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.split()


def test_the_daemon_module_imports_none_of_the_heavy_packages() -> None:
    assert imported_by("import ironrt.daemon", NOT_AT_START) == []


def test_import_ironrt_leaves_the_clients_until_used() -> None:
    heavy = ("httpx", "ironrt.client", "ironrt.aclient", "ironrt.library", "ironrt.router")
    assert imported_by("import ironrt", heavy) == []
    # ... and there, as attributes, when asked for.
    used = "import ironrt\nironrt.Runtime\nironrt.AsyncRuntime"
    assert imported_by(used, heavy) == ["ironrt.aclient", "ironrt.client"]


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_after_the_router_answers_the_daemon_loads_prices_and_starts_its_relay() -> None:
    """The price tables (genai_prices -> pydantic_core, a C extension: visible in the
    process's memory map) are loaded in the background after the start, and the log relay
    is started without waiting for an agent; an agent started right away gets its logs."""
    with TempDaemon() as d:
        assert d.proc is not None
        script = d.home / "hello.py"
        script.write_text("print('hello from the agent', flush=True)\n")
        agent_id = d.rt.start_agent(str(script))
        deadline = time.monotonic() + 30
        while "_pydantic_core" not in _maps(d.proc.pid) or not d._relays():
            assert time.monotonic() < deadline, "no price tables or no relay after the start"
            time.sleep(0.05)
        d.rt.wait(agent_id, timeout=30)
        while "hello from the agent" not in d.rt.logs(agent_id):
            assert time.monotonic() < deadline, "the agent's output never reached its log"
            time.sleep(0.05)
