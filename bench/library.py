"""Library mode's added latency: the same SDK calling the same local upstream, directly
and inside `ironrt.protect`, interleaved in one run.

Run: `python bench/library.py` (a benchmark, not a test). Prints a table and writes
`bench/results/library.json`.

The upstream is `bench/_upstream.py` in its own process on loopback with no latency (an
upstream thread inside this process would compete for the GIL with what is measured), so
what is measured is the SDK's own cost (baseline) and what library mode adds to it: the hop to the
kernel's loop, parsing, the policies (budget, PII detection, rate limits, breaker, retry),
pricing and the trace committed to SQLite before the answer returns. The goal (the Iron
Cage design's ADR on library mode) is under 0.1 ms added per call.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ["IRONRT_HOME"] = tempfile.mkdtemp(prefix="ironrt-bench-library-")

import openai
from _common import fmt, machine, ratio, summary, table, write_results

import ironrt

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "400"))
WARMUP = 30
MESSAGES = [{"role": "user", "content": "Summarise the plot of Hamlet in one sentence."}]


def sync_samples(client: openai.OpenAI, pii: str) -> tuple[list[float], list[float]]:
    """Calls alternate between governed (inside the scope) and direct (the scope's context
    variable unset for the call), so both meet the same machine state."""
    import ironrt.library.hooks as hooks

    def call() -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)  # type: ignore[arg-type]

    direct: list[float] = []
    governed: list[float] = []
    with ironrt.protect(budget=1000.0, name=f"bench-sync-{pii}", pii=pii):  # type: ignore[arg-type]
        for _ in range(WARMUP):
            call()
        for i in range(ROUNDS):
            for protected in (False, True) if i % 2 == 0 else (True, False):
                token = None if protected else hooks.CURRENT_SCOPE.set(None)
                began = time.perf_counter()
                call()
                (governed if protected else direct).append(time.perf_counter() - began)
                if token is not None:
                    hooks.CURRENT_SCOPE.reset(token)
    return direct, governed


async def async_samples(client: openai.AsyncOpenAI) -> tuple[list[float], list[float]]:
    async def call() -> None:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)  # type: ignore[arg-type]

    direct: list[float] = []
    governed: list[float] = []
    scope = ironrt.protect(budget=1000.0, name="bench-async")
    async with scope:
        for _ in range(WARMUP):
            await call()
        for i in range(ROUNDS):
            for protected in (False, True) if i % 2 == 0 else (True, False):
                if protected:
                    began = time.perf_counter()
                    await call()
                    governed.append(time.perf_counter() - began)
                else:
                    token = ironrt.library.hooks.CURRENT_SCOPE.set(None)
                    began = time.perf_counter()
                    await call()
                    direct.append(time.perf_counter() - began)
                    ironrt.library.hooks.CURRENT_SCOPE.reset(token)
    return direct, governed


def row(label: str, direct: list[float], governed: list[float]) -> list[str]:
    d, g = summary(direct), summary(governed)
    return [
        label,
        fmt(d["p50"]),
        fmt(g["p50"]),
        fmt(g["p50"] - d["p50"]),
        fmt(ratio(g["p50"], d["p50"]), 2),
        fmt(g["p99"] - d["p99"]),
    ]


def main() -> None:

    up = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parent / "_upstream.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert up.stdout is not None
    port = int(up.stdout.readline().split()[1])
    url = f"http://127.0.0.1:{port}"
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-bench", max_retries=0)
        results: dict[str, object] = {"machine": machine(), "rounds": ROUNDS}
        rows: list[list[str]] = []
        scenarios: list[tuple[str, Callable[[], tuple[list[float], list[float]]]]] = [
            ("sync, pii=off", lambda: sync_samples(client, "off")),
            ("sync, pii=detect", lambda: sync_samples(client, "detect")),
            (
                "async, pii=detect",
                lambda: asyncio.run(
                    async_samples(
                        openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-bench", max_retries=0)
                    )
                ),
            ),
        ]
        for label, run in scenarios:
            direct, governed = run()
            rows.append(row(label, direct, governed))
            results[label] = {"direct_ms": summary(direct), "protected_ms": summary(governed)}
        print(
            table(
                "library mode: added latency per call (ms), same SDK, same local upstream",
                ["scenario", "direct p50", "protect p50", "added p50", "ratio", "added p99"],
                rows,
            )
        )
        print("goal: added p50 < 0.1 ms (Iron Cage ADR)")
        write_results("library", results)
    finally:
        up.terminate()
        up.wait(10)


if __name__ == "__main__":
    main()
