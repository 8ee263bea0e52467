"""FakeUpstream is a real HTTP server the real SDKs talk to, with bounded fault injection."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import genai_prices
import httpx
import httpx2
import openai
import pytest

from ironrt.governance.flow import TokenUsage
from ironrt.governance.pricing import genai_usage
from ironrt.providers import ADAPTERS
from ironrt.testing import FakeUpstream

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count to three please"}]}
MSG = {
    "model": "claude-haiku-4-5",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "count to three please"}],
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        # The SDK imports and builds its Responses types on first use (about a second):
        # pay it once here rather than inside whichever test happens to run first.
        with (
            openai.OpenAI(base_url=up.url + "/v1", api_key="warm-up") as client,
            client.responses.stream(model="gpt-4o-mini", input="warm up") as stream,
        ):
            stream.get_final_response()
        yield up


@pytest.fixture
def up(server: FakeUpstream) -> FakeUpstream:
    server.reset()
    return server


@pytest.fixture
def oai(up: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=up.url + "/v1", api_key="sk-real", max_retries=0, timeout=5
    ) as client:
        yield client


@pytest.fixture
def claude(up: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=up.url, api_key="sk-ant-real", max_retries=0, timeout=5
    ) as client:
        yield client


def test_openai_chat_non_stream_and_stream(up: FakeUpstream, oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert completion.choices[0].message.content.startswith("This is an offline reply")
    assert completion.usage.prompt_tokens == 6 and completion.usage.completion_tokens == 13
    chunks = list(
        oai.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True})
    )  # type: ignore[call-overload]
    assert chunks[-1].usage.completion_tokens == 13 and chunks[-1].choices == []
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == completion.choices[0].message.content
    first, second = up.requests
    assert (first.method, first.path) == ("POST", "/v1/chat/completions")
    assert first.headers["authorization"] == "Bearer sk-real"
    assert first.body["messages"] == CHAT["messages"]
    assert second.body["stream"] is True
    price = genai_prices.calc_price(
        genai_usage(TokenUsage(6, 13)), completion.model, provider_id="openai"
    )
    assert price.total_price > 0


def test_openai_responses(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-4o-mini", input="say hi")
    assert "say hi" in response.output_text
    assert response.usage is not None and response.usage.output_tokens == 11
    with oai.responses.stream(model="gpt-4o-mini", input="say hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == response.output_text
    assert final.usage is not None and final.usage.output_tokens == 11


def test_openai_embeddings_and_models(oai: openai.OpenAI) -> None:
    embedded = oai.embeddings.create(
        model="text-embedding-3-small", input=["a", "b"], dimensions=32
    )
    assert [len(d.embedding) for d in embedded.data] == [32, 32]  # the SDK asked for base64
    assert embedded.usage.prompt_tokens == 2
    assert "gpt-4o-mini" in [m.id for m in oai.models.list()]


def test_anthropic_messages_and_stream(up: FakeUpstream, claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(**MSG)  # type: ignore[call-overload]
    assert message.content[0].text.startswith("This is an offline reply")
    assert message.usage.input_tokens == 6 and message.usage.output_tokens == 13
    with claude.messages.stream(**MSG) as stream:  # type: ignore[arg-type]
        assert stream.get_final_text() == message.content[0].text
        assert stream.get_final_message().usage.output_tokens == 13
    request = up.requests[0]
    assert request.path == "/v1/messages" and "anthropic-version" in request.headers
    assert ADAPTERS["anthropic"].token_from_headers(request.headers) == "sk-ant-real"
    assert (
        claude.messages.count_tokens(
            model="claude-haiku-4-5", messages=MSG["messages"]
        ).input_tokens
        == 6
    )  # type: ignore[arg-type]


def test_usage_override_and_expected_key(up: FakeUpstream, oai: openai.OpenAI) -> None:
    up.usage = TokenUsage(input_tokens=1234, output_tokens=56, cached_tokens=1000)
    completion = oai.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert completion.usage.prompt_tokens == 1234
    assert completion.usage.prompt_tokens_details.cached_tokens == 1000
    up.expect_key = "another-key"
    with pytest.raises(openai.AuthenticationError):
        oai.chat.completions.create(**CHAT)  # type: ignore[call-overload]


def test_hold_stream_proves_events_are_not_buffered(up: FakeUpstream, oai: openai.OpenAI) -> None:
    hold = up.hold_stream(timeout=5)
    stream = oai.chat.completions.create(**CHAT, stream=True, timeout=3)  # type: ignore[call-overload]
    with stream, hold:
        chunks = iter(stream)
        first = next(chunks)  # arrives while the rest is held back
        assert first.choices[0].delta.role == "assistant"
        assert hold.wait_first_sent(1) and not hold.released
        hold.release()
        rest = list(chunks)
    assert len(rest) == 14  # 13 words and the finish chunk


def test_delay_between_events(up: FakeUpstream, oai: openai.OpenAI) -> None:
    up.delay = 0.01
    began = time.monotonic()
    chunks = list(oai.chat.completions.create(**CHAT, stream=True))  # type: ignore[call-overload]
    assert time.monotonic() - began >= 0.01 * (len(chunks) - 1)


def test_fail_then_recover(up: FakeUpstream, oai: openai.OpenAI) -> None:
    up.fail(times=2, status=503)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            oai.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert oai.chat.completions.create(**CHAT).choices  # type: ignore[call-overload]
    up.fail(times=1, status=429, retry_after=0.01)
    with openai.OpenAI(base_url=up.url + "/v1", api_key="k", max_retries=1) as retrying:
        assert retrying.chat.completions.create(**CHAT).choices  # type: ignore[call-overload]
    assert len(up.requests) == 5


def test_fail_carries_retry_after_and_provider_shape(up: FakeUpstream) -> None:
    up.fail(status=429, retry_after=2)
    response = httpx.post(
        up.url + "/v1/messages", json=MSG, headers={"anthropic-version": "2023-06-01"}
    )
    assert response.status_code == 429 and response.headers["retry-after"] == "2"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_hang_times_out_the_client(up: FakeUpstream) -> None:
    up.hang(seconds=2)
    with openai.OpenAI(base_url=up.url + "/v1", api_key="k", max_retries=0, timeout=0.3) as client:
        began = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        assert time.monotonic() - began < 1.5
        assert client.chat.completions.create(**CHAT).choices  # type: ignore[call-overload]


def test_drop_mid_stream(up: FakeUpstream, oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    up.drop_mid_stream(after=3)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(**CHAT, stream=True):  # type: ignore[call-overload]
            received.append(chunk)
    assert len(received) == 3
    up.drop_mid_stream(after=2)
    # The Anthropic SDK lets its HTTP library's error through mid-stream (no wrapping).
    with (
        pytest.raises(httpx2.RemoteProtocolError, match="incomplete"),
        claude.messages.stream(**MSG) as stream,  # type: ignore[arg-type]
    ):
        stream.get_final_text()
    assert oai.chat.completions.create(**CHAT).choices  # type: ignore[call-overload]


def test_admin_endpoints(up: FakeUpstream) -> None:
    with httpx.Client(base_url=up.url) as http:
        assert http.post(
            "/_fake/config", json={"delay": 0.0, "usage": {"input_tokens": 7, "output_tokens": 3}}
        ).json() == {"ok": True}
        assert up.usage == TokenUsage(7, 3)
        http.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
        logged = http.get("/_fake/requests").json()
        assert logged[0]["path"] == "/v1/embeddings" and logged[0]["body"]["input"] == "x"
        assert http.post("/_fake/fail", json={"times": 1, "status": 500}).status_code == 200
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 500
        assert http.post("/v1/chat/completions", json=CHAT).json()["usage"]["prompt_tokens"] == 7
        hold = http.post("/_fake/hold", json={"timeout": 5}).json()["hold"]
        assert http.post("/_fake/release", json={"hold": hold}).json() == {"released": 1}
        assert http.post("/_fake/hang", json={"times": 1, "seconds": 0.05}).status_code == 200
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 504
        assert http.post("/_fake/drop", json={"after": 1}).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert http.post("/_fake/config", json={"nope": 1}).status_code == 400
        assert http.post("/_fake/unknown").status_code == 404
        assert http.delete("/_fake/requests").json() == {"ok": True}
        assert http.post("/_fake/reset").json() == {"ok": True}
        assert http.get("/_fake/requests").json() == [] and up.usage is None
        assert http.get("/not-an-api").status_code == 404


def test_start_stop_is_clean() -> None:
    up = FakeUpstream()
    with pytest.raises(RuntimeError):
        _ = up.url
    with up:
        hold = up.hold_stream()
        url = up.url
        assert httpx.get(url + "/v1/models").status_code == 200
    assert hold.released  # stopping releases whatever a test forgot
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/v1/models")
