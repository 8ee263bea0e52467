"""The SSE parser: events are found however the bytes are chunked, and pass byte-identical."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironrt.governance.flow import StreamEvent
from ironrt.router.sse import (
    MAX_EVENT_BYTES,
    EventTooLarge,
    SSEParser,
    encode_event,
    make_event,
    sse_bytes,
)


def feed_all(data: bytes, sizes: list[int]) -> list[StreamEvent]:
    parser = SSEParser()
    events: list[StreamEvent] = []
    pos = 0
    for size in sizes:
        events += parser.feed(data[pos : pos + size])
        pos += size
    events += parser.feed(data[pos:])
    return events + parser.flush()


def test_named_events_and_done() -> None:
    data = b'event: message_start\ndata: {"type":"message_start"}\n\ndata: [DONE]\n\n'
    events = SSEParser().feed(data)
    assert [(e.event, e.data) for e in events] == [
        ("message_start", {"type": "message_start"}),
        (None, None),
    ]
    assert events[1].raw == b"data: [DONE]\n\n"


def test_every_line_ending_style() -> None:
    for sep in (b"\n", b"\r\n", b"\r"):
        data = b"event: x" + sep + b'data: {"a":1}' + sep + sep + b'data: {"b":2}' + sep + sep
        events = feed_all(data, [1] * len(data))
        assert [(e.event, e.data) for e in events if e.data] == [("x", {"a": 1}), (None, {"b": 2})]
        assert b"".join(e.raw for e in events) == data


def test_multiline_data_comments_and_fields() -> None:
    data = b': keep-alive\n\nid: 7\nretry: 10\ndata: {"a":\ndata: 1}\n\ndata\n\n'
    events = SSEParser().feed(data)
    assert [e.data for e in events] == [None, {"a": 1}, None]
    assert events[0].raw == b": keep-alive\n\n"


def test_partial_event_waits_and_flush_returns_the_tail() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"a"') == []
    assert parser.feed(b":1}\n") == []
    [event] = parser.feed(b"\n")
    assert event.data == {"a": 1}
    assert parser.feed(b'data: {"tail":true}') == []
    [tail] = parser.flush()
    assert tail.data == {"tail": True} and tail.raw == b'data: {"tail":true}'
    assert parser.flush() == []


def test_large_event_in_many_chunks() -> None:
    payload = {"text": "x" * 200_000}
    data = sse_bytes(payload, "big")
    events = feed_all(data, [1000] * (len(data) // 1000))
    assert len(events) == 1 and events[0].data == payload and events[0].raw == data


def test_encode_event_keeps_raw_unless_changed() -> None:
    [event] = SSEParser().feed(b'event: e\ndata:   {"a": 1}\n\n')
    assert encode_event(event) == event.raw
    event.data["a"] = 2
    event.changed = True
    out = encode_event(event)
    assert out == b'event: e\ndata: {"a":2}\n\n'
    [again] = SSEParser().feed(out)
    assert (again.event, again.data) == ("e", {"a": 2})


def test_done_event_is_never_reencoded() -> None:
    [done] = SSEParser().feed(b"data: [DONE]\n\n")
    done.changed = True
    assert encode_event(done) == b"data: [DONE]\n\n"


def test_make_event_is_encoded() -> None:
    event = make_event({"x": "a\nb"}, "delta")
    assert not event.changed
    assert event.raw == b'event: delta\ndata: {"x":"a\\nb"}\n\n'
    assert SSEParser().feed(event.raw)[0].data == {"x": "a\nb"}


_values = st.dictionaries(
    st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=20)), max_size=3
)
_events = st.lists(
    st.tuples(st.one_of(st.none(), st.sampled_from(["a", "message_delta"])), _values),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(
    events=_events,
    sep=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(0, 40), max_size=12),
)
def test_any_chunking_gives_the_same_events_and_bytes(
    events: list[tuple[str | None, dict[str, object]]], sep: bytes, cuts: list[int]
) -> None:
    data = b""
    for name, value in events:
        if name:
            data += b"event: " + name.encode() + sep
        data += b"data: " + msgspec.json.encode(value) + sep + sep
    parsed = feed_all(data, cuts)
    assert b"".join(e.raw for e in parsed) == data
    assert [(e.event, e.data) for e in parsed if e.data is not None] == [
        (name, value) for name, value in events
    ]


def test_an_event_without_end_is_cut_at_the_cap() -> None:
    """An upstream that never ends its event cannot make the router buffer without end:
    past MAX_EVENT_BYTES the parser raises (the relay then ends the stream with the
    provider's error event and settles the call)."""
    parser = SSEParser()
    chunk = b"data: " + b"x" * (1 << 20)
    with pytest.raises(EventTooLarge):
        for _ in range(MAX_EVENT_BYTES // len(chunk) + 2):
            assert parser.feed(chunk) == []
    assert parser.feed(b"data: {}\n\n")[0].data == {}  # nothing of the cut event is left
