"""Library scopes kept apart, beside a running daemon: threads, nested scopes, asyncio
tasks, and the `protect_agent` decorator.

Run by test_library.py as `python scopes_scenario.py OUT.json` with `IRONRT_HOME` set to
a home whose daemon is running. It writes what it saw to OUT.json; the test decides what is
right, from these numbers and from what the CLI then shows. A scope result is
`{"id", "spent", "calls"}`: the scope's agent id, its spend, and the calls made in it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from typing import Any

import openai

import ironrt
from ironrt.client import Runtime
from ironrt.testing import FakeUpstream

KEY = "sk-own-key-of-this-process-5f1c9a"
GPT = "gpt-4o-mini"

up = FakeUpstream(latency=0.2).start()
out: dict[str, Any] = {}


def client() -> openai.OpenAI:
    return openai.OpenAI(base_url=up.url + "/v1", api_key=KEY)


def ask(c: openai.OpenAI, words: int) -> None:
    c.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "w " * words}])


def scope(p: ironrt.protect, calls: int) -> dict[str, Any]:
    return {"id": p.agent_id, "spent": p.spent_usd, "calls": calls}


# ---- concurrent scopes in threads -----------------------------------------------------------


def threads() -> None:
    """Thread 0 streams an answer the upstream holds open; threads 1..3 make 2, 3 and 4
    calls meanwhile, each in its own scope. They can only finish while the hold lasts if
    the kernel serves scopes concurrently."""
    hold = up.hold_stream(timeout=15)
    start = threading.Barrier(4)
    found: dict[int, dict[str, Any]] = {}

    def work(i: int) -> None:
        c = client()
        with ironrt.protect(budget=0.05, name=f"thread-{i}") as p:
            start.wait(10)
            if i == 0:
                stream = c.chat.completions.create(
                    model=GPT, messages=[{"role": "user", "content": "held"}], stream=True
                )
                for _ in stream:
                    pass
                calls = 1
            else:
                for _ in range(i + 1):
                    ask(c, 5 * i)
                calls = i + 1
        found[i] = scope(p, calls)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    first_sent = hold.wait_first_sent(10)
    for w in workers[1:]:
        w.join(10)
    done_while_held = all(not w.is_alive() for w in workers[1:]) and not hold.released
    hold.release()
    workers[0].join(10)
    out["threads"] = {
        "scopes": [found.get(i) for i in range(4)],
        "first_sent": first_sent,
        "done_while_held": done_while_held,
    }


# ---- nested scopes: a call belongs to the innermost --------------------------------------


def nested() -> None:
    c = client()
    with ironrt.protect(budget=0.5, name="outer") as outer:
        ask(c, 3)
        with ironrt.protect(budget=0.5, name="inner") as inner:
            ask(c, 30)
            ask(c, 30)
        ask(c, 3)
    out["nested"] = {"outer": scope(outer, 2), "inner": scope(inner, 2)}


# ---- asyncio tasks, one scope each, sharing a client made before them -------------------


async def tasks() -> None:
    shared = openai.AsyncOpenAI(base_url=up.url + "/v1", api_key=KEY)

    async def one(i: int) -> dict[str, Any]:
        async with ironrt.protect(budget=0.5, name=f"task-{i}") as p:
            for _ in range(i + 1):
                await shared.chat.completions.create(
                    model=GPT, messages=[{"role": "user", "content": "t " * (i + 1)}]
                )
        return scope(p, i + 1)

    out["tasks"] = await asyncio.gather(*(one(i) for i in range(3)))
    await shared.close()


# ---- the daemon lists a scope while it is open --------------------------------------------


def watched() -> None:
    rt = Runtime(home=os.environ["IRONRT_HOME"], autostart=False)
    with ironrt.protect(budget=0.25, name="watched") as p:
        ask(client(), 2)
        listed = {a.id: a for a in rt.list_agents()}.get(p.agent_id or "")
    out["watched"] = {
        "scope": scope(p, 1),
        "pid": os.getpid(),
        "listed": None
        if listed is None
        else {
            "kind": listed.kind,
            "status": listed.status.value,
            "pid": listed.pid,
            "budget": listed.budget_usd,
        },
    }


# ---- the decorator: a scope per call, named after the function ---------------------------

#: Enough for two or three gpt-4o calls, not for six.
PER_CALL = 0.0005


def until_refused(c: openai.OpenAI) -> dict[str, Any]:
    ok = 0
    for _ in range(6):
        try:
            c.chat.completions.create(
                model="gpt-4o", max_tokens=20, messages=[{"role": "user", "content": "hello"}]
            )
        except openai.APIStatusError as exc:
            return {"ok": ok, "status": exc.status_code}
        ok += 1
    return {"ok": ok, "status": None}


class Bots:
    @staticmethod
    @ironrt.protect_agent(budget=PER_CALL)
    def spend(c: openai.OpenAI) -> dict[str, Any]:
        return until_refused(c)


def make_async_agent() -> Any:
    @ironrt.protect_agent(budget=PER_CALL)
    async def spend_async(c: openai.AsyncOpenAI) -> dict[str, Any]:
        ok = 0
        for _ in range(6):
            try:
                await c.chat.completions.create(
                    model="gpt-4o", max_tokens=20, messages=[{"role": "user", "content": "hello"}]
                )
            except openai.APIStatusError as exc:
                return {"ok": ok, "status": exc.status_code}
            ok += 1
        return {"ok": ok, "status": None}

    return spend_async


@ironrt.protect_agent(name="breaks")
def breaks() -> None:
    raise RuntimeError("the agent broke")


def decorated() -> None:
    up.latency = 0.05
    c = client()
    runs = [Bots.spend(c), Bots.spend(c)]
    agent = make_async_agent()

    async def twice() -> list[dict[str, Any]]:
        ac = openai.AsyncOpenAI(base_url=up.url + "/v1", api_key=KEY)
        done = [await agent(ac), await agent(ac)]
        await ac.close()
        return done

    runs += asyncio.run(twice())
    try:
        breaks()
        raised = None
    except RuntimeError as exc:
        raised = str(exc)
    out["decorated"] = {
        "runs": runs,
        "budget": PER_CALL,
        "names": [Bots.spend.__qualname__, agent.__qualname__],
        "raised": raised,
    }


def main() -> None:
    threads()
    nested()
    asyncio.run(tasks())
    watched()
    decorated()
    up.stop()
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
