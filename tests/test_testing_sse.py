"""tornado_kit.testing: parse_sse (WHATWG rules), read_sse and the sse fixture."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.httpclient import HTTPClientError
from tornado.web import Application, RequestHandler

from tornado_kit import ServerSentEvent, SSEMixin
from tornado_kit.testing import parse_sse, read_sse
from tornado_kit.testing._sse import SSEParser

E = ServerSentEvent

# -- parse_sse: WHATWG 9.2.6 ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the three line endings, mixed
        ("data: a\r\n\r\ndata: b\r\rdata: c\n\n", [E("a"), E("b"), E("c")]),
        ("data: a\rdata: b\r\n\n", [E("a\nb")]),
        # one leading BOM is dropped, a second one is part of the field name
        ("\ufeffdata: x\n\n", [E("x")]),
        ("\ufeff\ufeffdata: x\n\n", []),
        ("data: \ufeffx\n\n", [E("\ufeffx")]),
        # comments
        (": hello\ndata: x\n:\n\n", [E("x")]),
        # field without colon: empty value
        ("data\n\n", [E("")]),
        ("data\ndata\n\n", [E("\n")]),
        # exactly one leading space is stripped
        ("data:x\n\n", [E("x")]),
        ("data:  x \n\n", [E(" x ")]),
        ("data: a:b: c\n\n", [E("a:b: c")]),
        # data accumulates; the trailing LF is removed
        ("data: a\ndata:\ndata: b\n\n", [E("a\n\nb")]),
        # no data field: nothing is dispatched, the event type is reset
        ("event: x\n\ndata: y\n\n", [E("y")]),
        ("id: 3\n\n", []),
        # event type; empty type means "message" (None)
        ("event: update\ndata: y\n\n", [E("y", event="update")]),
        ("event:\ndata: y\n\n", [E("y")]),
        ("event: a\nevent: b\ndata: y\n\n", [E("y", event="b")]),
        # unknown fields and field names are case-sensitive
        ("Data: x\nfoo: bar\ndata: y\n\n", [E("y")]),
        # an unterminated event at the end is discarded
        ("data: a\n\ndata: b\n", [E("a")]),
        ("data: a\n\ndata: b", [E("a")]),
        # retry: only ASCII digits count
        ("retry: 1500\ndata: x\n\n", [E("x", retry=1500)]),
        ("retry: 15.0\ndata: x\n\n", [E("x")]),
        ("retry: -1\ndata: x\n\n", [E("x")]),
        ("retry:\ndata: x\n\n", [E("x")]),
        ("retry: ١٢\ndata: x\n\n", [E("x")]),
        ("retry: 1\ndata: x\n\ndata: y\n\n", [E("x", retry=1), E("y")]),
        # 4300+ digits: Python's int() refuses, the field is ignored
        ("retry: " + "9" * 5000 + "\ndata: x\n\n", [E("x")]),
    ],
)
def test_parse_rules(text: str, expected: list[ServerSentEvent]) -> None:
    assert parse_sse(text) == expected


def test_last_event_id_persists_across_events() -> None:
    text = (
        "id: 1\ndata: a\n\n"
        "data: b\n\n"  # keeps id 1
        "id: 2\n\n"  # not dispatched, but the id is set
        "data: c\n\n"
        "id: 3\x00\ndata: d\n\n"  # an id with NUL is ignored
        "id\ndata: e\n\n"  # empty id resets
        "id: 4\ndata: f\nid: 5\n\n"  # the last id field of the block wins
    )
    assert [(e.data, e.id) for e in parse_sse(text)] == [
        ("a", "1"),
        ("b", "1"),
        ("c", "2"),
        ("d", "2"),
        ("e", None),
        ("f", "5"),
    ]


def test_event_type_may_contain_nul() -> None:
    assert parse_sse("event: a\x00b\ndata: x\n\n") == [E("x", event="a\x00b")]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("\r\n:\ufeff d\x00aitrevny0-9 ")))
def test_parse_never_raises_on_field_like_text(text: str) -> None:
    for event in parse_sse(text):
        assert isinstance(event.data, str)
        assert event.id is None or "\x00" not in event.id


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_parse_never_raises_on_any_text(text: str) -> None:
    parse_sse(text)


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("\r\n: data\ufeffid1event\x00retry9x")),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
)
def test_incremental_parsing_matches_whole_text(text: str, cuts: list[int]) -> None:
    # However the stream is split into chunks (CRLF split included), the
    # events are the same as for the whole text.
    parser = SSEParser()
    start = 0
    for cut in sorted(c for c in cuts if c <= len(text)):
        parser.feed(text[start:cut])
        start = cut
    parser.feed(text[start:])
    assert parser.events == parse_sse(text)


@settings(max_examples=100, deadline=None)
@given(
    data=st.text(),
    event=st.text().filter(lambda s: "\r" not in s and "\n" not in s),
    id_=st.text().filter(lambda s: not set(s) & {"\r", "\n", "\x00"}),
)
def test_encode_parse_round_trip(data: str, event: str, id_: str) -> None:
    wire = ServerSentEvent(data, event=event, id=id_).encode().decode()
    assert parse_sse(wire) == [
        ServerSentEvent(
            data.replace("\r\n", "\n").replace("\r", "\n"), event=event or None, id=id_ or None
        )
    ]


# -- read_sse and the sse fixture -------------------------------------------------


class Feed(SSEMixin, RequestHandler):
    async def get(self) -> None:
        count = int(self.get_query_argument("n", "3"))
        for n in range(count):
            # Multi-byte text, so UTF-8 sequences straddle chunk boundaries.
            await self.send_event(f"é{n}€" * 50, id=str(n))
        if self.get_query_argument("hold", "0") == "1":
            await self.stream_topic("nothing")  # until the client leaves


class Echo(SSEMixin, RequestHandler):
    async def get(self) -> None:
        await self.send_event(self.request.headers.get("X-Probe", "none"))


class NotSSE(RequestHandler):
    def get(self) -> None:
        self.write("plain")


class Missing(RequestHandler):
    def get(self) -> None:
        self.send_error(404)


@pytest.fixture
def app() -> Application:
    return Application(
        [("/feed", Feed), ("/echo", Echo), ("/plain", NotSSE), ("/missing", Missing)]
    )


async def test_sse_fixture_reads_count_events(sse: Any) -> None:
    events = await sse("/feed?n=5", count=2)
    assert [(e.data, e.id) for e in events] == [("é0€" * 50, "0"), ("é1€" * 50, "1")]


async def test_read_sse_returns_early_when_the_stream_ends(base_url: str) -> None:
    events = await read_sse(base_url + "/feed?n=2", count=10, timeout=5)
    assert len(events) == 2


async def test_read_sse_sends_headers(sse: Any) -> None:
    assert (await sse("/echo", headers={"X-Probe": "hi"}))[0].data == "hi"


async def test_read_sse_times_out(base_url: str) -> None:
    with pytest.raises(TimeoutError, match="1 of 2 events"):
        await read_sse(base_url + "/feed?n=1&hold=1", count=2, timeout=0.2)


async def test_read_sse_rejects_errors_and_other_content(base_url: str) -> None:
    with pytest.raises(HTTPClientError) as info:
        await read_sse(base_url + "/missing", count=1, timeout=5)
    assert info.value.code == 404
    with pytest.raises(HTTPClientError, match="not an event stream"):
        await read_sse(base_url + "/plain", count=1, timeout=5)
    with pytest.raises(ValueError):
        await read_sse("ftp://example.com/x", count=1)
