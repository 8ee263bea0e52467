"""Library mode with both real SDKs, sync and async, with no daemon running.

Run by test_library.py as `python sdks_scenario.py OUT.json` with `IRONRT_HOME` set (the
kernel is process-wide and reads its settings once, so each scenario is its own process).
It only drives the SDKs and writes what it saw to OUT.json, one key per check; the test
decides what is right. Scope results are `{"id", "spent"}`, upstream requests are
`{"path", "key", "body"}` as the FakeUpstream received them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import sys
from collections.abc import Iterable
from typing import Any

import anthropic
import httpx2
import openai

import ironrt
from ironrt.testing import FakeUpstream

KEY = "sk-own-key-of-this-process-5f1c9a"
EMAIL = "jane.doe@example.com"
SAFE = "[EMAIL_1]"
GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
PROMPT = f"hello, please write to {EMAIL} today"
TOOL_PROMPT = f"use the tool to mail {EMAIL}"
#: A model shown the placeholder calls the tool with it: the offline provider streams tool
#: arguments 8 characters at a time, so the placeholder reaches ironrt in pieces.
_TO = {"type": "object", "properties": {"to": {"type": "string", "enum": [SAFE]}}}
GPT_TOOLS: Any = [{"type": "function", "function": {"name": "send_mail", "parameters": _TO}}]
CLAUDE_TOOLS: Any = [{"name": "send_mail", "input_schema": _TO}]

up = FakeUpstream(latency=0.05, expect_key=KEY).start()
out: dict[str, Any] = {}


def user(text: str) -> Any:
    return [{"role": "user", "content": text}]


def scope(p: ironrt.protect) -> dict[str, Any]:
    return {"id": p.agent_id, "spent": p.spent_usd}


def seen(mark: int) -> list[dict[str, Any]]:
    """The API requests the upstream received since `mark`."""
    found = []
    for r in up.requests[mark:]:
        bearer = r.headers.get("authorization", "").removeprefix("Bearer ")
        found.append({"path": r.path, "key": r.headers.get("x-api-key", bearer), "body": r.body})
    return found


def counted(client: Any, *, is_async: bool = False) -> list[int]:
    """Count the SDK's own tries (its retries included) through this client."""
    tries = [0]
    inner = client._client
    original = inner.send

    def send(*args: Any, **kwargs: Any) -> Any:
        tries[0] += 1
        return original(*args, **kwargs)

    async def asend(*args: Any, **kwargs: Any) -> Any:
        tries[0] += 1
        return await original(*args, **kwargs)

    inner.send = asend if is_async else send
    return tries


def gpt_pieces(chunks: Iterable[Any]) -> list[str]:
    return [
        call.function.arguments
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
        if call.function is not None and call.function.arguments is not None
    ]


def claude_pieces(events: Iterable[Any]) -> list[str]:
    return [
        ev.delta.partial_json
        for ev in events
        if ev.type == "content_block_delta" and ev.delta.type == "input_json_delta"
    ]


def refused(exc: openai.APIStatusError | anthropic.APIStatusError) -> dict[str, Any]:
    return {
        "class": type(exc).__name__,
        "status": exc.status_code,
        "should_retry": exc.response.headers.get("x-should-retry"),
        "message": str(exc),
    }


# ---- 1. sync openai: plain, streamed, a tool call streamed in pieces ----------------------


def openai_sync() -> None:
    client = openai.OpenAI(base_url=up.url + "/v1", api_key=KEY)  # made before the scope
    mark = len(up.requests)
    with ironrt.protect(budget=0.5, name="nb", pii="redact") as p:
        plain = client.chat.completions.create(model=GPT, messages=user(PROMPT))
        stream = client.chat.completions.create(model=GPT, messages=user(PROMPT), stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        tool = client.chat.completions.create(
            model=GPT, messages=user(TOOL_PROMPT), tools=GPT_TOOLS, stream=True
        )
        pieces = gpt_pieces(tool)
    out["openai_sync"] = {
        "scope": scope(p),
        "texts": [plain.choices[0].message.content, text],
        "pieces": pieces,
        "upstream": seen(mark),
    }


# ---- 2. sync anthropic: plain, `messages.stream`, `stream=True` with a tool --------------


def anthropic_sync() -> None:
    client = anthropic.Anthropic(base_url=up.url, api_key=KEY)
    mark = len(up.requests)
    with ironrt.protect(budget=0.5, name="claude", pii="redact") as p:
        plain = client.messages.create(model=CLAUDE, max_tokens=100, messages=user(PROMPT))
        with client.messages.stream(model=CLAUDE, max_tokens=100, messages=user(PROMPT)) as s:
            text = "".join(s.text_stream)
        events = client.messages.create(
            model=CLAUDE,
            max_tokens=100,
            messages=user(TOOL_PROMPT),
            tools=CLAUDE_TOOLS,
            stream=True,
        )
        pieces = claude_pieces(events)
    out["anthropic_sync"] = {
        "scope": scope(p),
        "texts": ["".join(b.text for b in plain.content if b.type == "text"), text],
        "pieces": pieces,
        "upstream": seen(mark),
    }


# ---- 2. async clients, made inside their scopes --------------------------------------------


async def openai_async() -> None:
    mark = len(up.requests)
    async with ironrt.protect(budget=0.5, name="nb-async", pii="redact") as p:
        client = openai.AsyncOpenAI(base_url=up.url + "/v1", api_key=KEY)
        plain = await client.chat.completions.create(model=GPT, messages=user(PROMPT))
        stream = await client.chat.completions.create(model=GPT, messages=user(PROMPT), stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        tool = await client.chat.completions.create(
            model=GPT, messages=user(TOOL_PROMPT), tools=GPT_TOOLS, stream=True
        )
        pieces = gpt_pieces([c async for c in tool])
        await client.close()
    out["openai_async"] = {
        "scope": scope(p),
        "texts": [plain.choices[0].message.content, text],
        "pieces": pieces,
        "upstream": seen(mark),
    }


async def anthropic_async() -> None:
    mark = len(up.requests)
    async with ironrt.protect(budget=0.5, name="claude-async", pii="redact") as p:
        client = anthropic.AsyncAnthropic(base_url=up.url, api_key=KEY)
        plain = await client.messages.create(model=CLAUDE, max_tokens=100, messages=user(PROMPT))
        async with client.messages.stream(model=CLAUDE, max_tokens=100, messages=user(PROMPT)) as s:
            text = "".join([t async for t in s.text_stream])
        events = await client.messages.create(
            model=CLAUDE,
            max_tokens=100,
            messages=user(TOOL_PROMPT),
            tools=CLAUDE_TOOLS,
            stream=True,
        )
        pieces = claude_pieces([ev async for ev in events])
        await client.close()
    out["anthropic_async"] = {
        "scope": scope(p),
        "texts": ["".join(b.text for b in plain.content if b.type == "text"), text],
        "pieces": pieces,
        "upstream": seen(mark),
    }


# ---- 3. a budget too small for any call: refused before the network ------------------------


async def refusals() -> None:
    gpt = openai.OpenAI(base_url=up.url + "/v1", api_key=KEY)
    claude = anthropic.Anthropic(base_url=up.url, api_key=KEY)
    aclaude = anthropic.AsyncAnthropic(base_url=up.url, api_key=KEY)
    tries = [counted(gpt), counted(claude), counted(aclaude, is_async=True)]
    errors = []
    mark = len(up.requests)
    async with ironrt.protect(budget=0.000001, name="tiny") as p:
        try:
            gpt.chat.completions.create(model=GPT, messages=user("hi"), max_tokens=5)
        except openai.APIStatusError as exc:
            errors.append(refused(exc))
        for client in (claude, aclaude):
            try:
                answer = client.messages.create(model=CLAUDE, max_tokens=5, messages=user("hi"))
                if asyncio.iscoroutine(answer):
                    await answer
            except anthropic.APIStatusError as exc:
                errors.append(refused(exc))
    out["refusals"] = {
        "scope": scope(p),
        "errors": errors,
        "tries": [t[0] for t in tries],
        "upstream": seen(mark),
    }


# ---- 7. outside any scope, and a request no SDK made: untouched ----------------------------


def ungoverned() -> None:
    client = openai.OpenAI(base_url=up.url + "/v1", api_key=KEY)
    mark = len(up.requests)
    outside = client.chat.completions.create(model=GPT, messages=user(PROMPT))
    with (
        ironrt.protect(budget=0.5, name="raw-http", pii="redact") as p,
        httpx2.Client() as raw,
    ):
        answer = raw.post(
            up.url + "/v1/chat/completions",
            json={"model": GPT, "messages": user(PROMPT)},
            headers={"authorization": f"Bearer {KEY}"},
        )
    out["ungoverned"] = {
        "scope": scope(p),
        "texts": [
            outside.choices[0].message.content,
            answer.json()["choices"][0]["message"]["content"],
        ],
        "upstream": seen(mark),
    }


# ---- 9. an upstream that is down; a provider 500 then 200 ---------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def faults() -> None:
    down = openai.OpenAI(base_url=f"http://127.0.0.1:{closed_port()}/v1", api_key=KEY)
    down_tries = counted(down)
    with ironrt.protect(budget=0.5, name="down") as p:
        try:
            down.chat.completions.create(model=GPT, messages=user("hi"))
            error: dict[str, Any] | str = "no error"
        except openai.APIStatusError as exc:
            error = refused(exc)
        except openai.APIError as exc:
            error = {"class": type(exc).__name__, "message": str(exc)}
    out["down"] = {"scope": scope(p), "error": error, "tries": down_tries[0]}

    client = openai.OpenAI(base_url=up.url + "/v1", api_key=KEY)
    tries = counted(client)
    with ironrt.protect(budget=0.5, name="flaky") as p:
        mark = len(up.requests)
        up.fail(times=1, status=500)
        answer = client.chat.completions.create(model=GPT, messages=user("hi"))
    out["flaky"] = {
        "scope": scope(p),
        "text": answer.choices[0].message.content,
        "tries": tries[0],
        "upstream": seen(mark),
    }


# ---- 8. an SDK whose HTTP client library mode does not know ---------------------------------


class NotHttpx:
    """What a future SDK might send through instead of httpx/httpx2."""


def unrecognised() -> None:
    import anthropic._base_client
    import openai._base_client

    errors = []
    for hints, kind in (
        (openai._base_client.SyncAPIClient.__annotations__, NotHttpx),
        (anthropic._base_client.AsyncAPIClient.__annotations__, "aiohttp.ClientSession"),
    ):
        saved = hints["_client"]
        hints["_client"] = kind
        try:
            with ironrt.protect(name="unrecognised"):
                errors.append("entered")
        except ironrt.LibraryModeError as exc:
            errors.append(str(exc))
        finally:
            hints["_client"] = saved
    out["unrecognised"] = errors


# ---- a stream left early, just before the process exits -------------------------------------


def left_early() -> None:
    """The client stops reading after two chunks and the process exits right away: the
    call settles only once the upstream's usage is drained, which the exit must wait for
    (the upstream keeps streaming, an event every 50 ms, after the client left)."""
    client = openai.OpenAI(base_url=up.url + "/v1", api_key=KEY)
    up.delay = 0.05
    with ironrt.protect(budget=0.5, name="left-early") as p:
        stream = client.chat.completions.create(
            model=GPT, messages=user("one two three four five six seven"), stream=True
        )
        for number, _ in enumerate(stream):
            if number == 1:
                break
        stream.close()
    out["left_early"] = {"scope": scope(p)}


def main() -> None:
    openai_sync()
    anthropic_sync()
    asyncio.run(openai_async())
    asyncio.run(anthropic_async())
    asyncio.run(refusals())
    ungoverned()
    faults()
    unrecognised()
    left_early()
    out["frozen_objects"] = gc.get_freeze_count()  # the daemon freezes its heap; never this
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
    # No `up.stop()`: the upstream must outlive this function, for the exit's drain.


if __name__ == "__main__":
    main()
