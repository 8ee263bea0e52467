"""Three daemons on one fleet ledger, and a bursting agent, for the fleet tests."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from ironrt.tempdaemon import TempDaemon, wait_until
from tests.router.helpers import agent_script, governed_env

#: Each worker thread calls until refused (402) or the fleet ledger is unavailable (503
#: once: the SDK's own retries are off here, so every answer is counted as it came).
BURST = """
    import json, sys, threading, openai
    workers, limit = int(sys.argv[1]), int(sys.argv[2])
    c = openai.OpenAI(max_retries=0)
    tally = {"ok": 0, "402": 0, "503": 0, "other": []}
    lock = threading.Lock()
    def work():
        for _ in range(limit):
            try:
                c.chat.completions.create(model="gpt-4o-mini", max_tokens=20,
                    messages=[{"role": "user", "content": "a small task"}])
                with lock:
                    tally["ok"] += 1
            except openai.APIStatusError as exc:
                with lock:
                    if exc.status_code in (402, 503):
                        tally[str(exc.status_code)] += 1
                        if exc.status_code == 402:
                            return
                    else:
                        tally["other"].append(exc.status_code)
                        return
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads: t.start()
    for t in threads: t.join()
    print("TALLY " + json.dumps(tally), flush=True)
"""


def fleet_env(upstream_url: str, ledger_url: str, **more: str) -> dict[str, str]:
    return governed_env(
        upstream_url,
        IRONRT_LEDGER_URL=ledger_url,
        IRONRT_LEDGER_POLL="0.2",
        **more,
    )


@contextlib.contextmanager
def daemons(
    n: int, env: dict[str, str], *, final_logs: list[str] | None = None
) -> Iterator[list[TempDaemon]]:
    """`n` daemons, stopped and removed on exit; `final_logs` gets each one's log lines
    of the fleet ledger as it stopped (for what a test checks after the stop)."""
    started: list[TempDaemon] = []
    try:
        for _ in range(n):
            started.append(TempDaemon(offline=False, env=env).start())
        yield started
    finally:
        for d in started:
            d.stop()
            if final_logs is not None:
                final_logs += [ln for ln in d.log().splitlines() if '"ironrt.fleet"' in ln]
        for d in started:
            import shutil

            shutil.rmtree(d.home, ignore_errors=True)


def burst_script(tmp_path: Path) -> str:
    return agent_script(tmp_path, "burst.py", BURST)


def tally(d: TempDaemon, agent_id: str, timeout: float = 90) -> dict[str, object]:
    """Wait for a burst agent to end; what it counted."""
    final = d.rt.wait(agent_id, timeout=timeout)
    out = d.rt.logs(agent_id, tail=1000)
    assert final.exit_code == 0, out
    line = [ln for ln in out.splitlines() if "TALLY " in ln][-1]
    found: dict[str, object] = json.loads(line.split("TALLY ", 1)[1])
    return found


def wait_budget_seen(ds: list[TempDaemon], scope: str, budget: float) -> None:
    for d in ds:
        wait_until(lambda d=d: d.rt.get_limits(scope).budget_usd == budget, timeout=10)


def one_call_usd(d: TempDaemon, tmp_path: Path) -> float:
    """What one burst call costs (an agent outside the shared project)."""
    agent_id = d.rt.start_agent(burst_script(tmp_path), ["1", "1"], project="calibrate")
    assert tally(d, agent_id)["ok"] == 1
    return d.rt.get_agent(agent_id).spent_usd


def share_budget(
    ds: list[TempDaemon], tmp_path: Path, calls: int, *, by: int = 0, **limits: object
) -> tuple[float, float]:
    """Give `project:team` a budget of `calls` burst calls, set on daemon `by`, and wait
    until every daemon has it: (one call's cost, the budget)."""
    call = one_call_usd(ds[0], tmp_path)
    budget = round(call * calls, 9)
    ds[by].rt.set_limits("project:team", budget_usd=budget, **limits)  # type: ignore[arg-type]
    wait_budget_seen(ds, "project:team", budget)
    return call, budget
