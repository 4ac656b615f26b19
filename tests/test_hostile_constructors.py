"""A value of the wrong kind is a ``TypeError`` naming the parameter, at once.

DESIGN.md (Hardening): "A constructor given a value of the wrong kind
(``MemoryEventLog(100)``) raises ``TypeError`` naming the parameter." In 0.1
``MemoryEventLog(100)`` took 100 as the broker and failed at the first
``append`` with ``'int' object has no attribute 'publish'``;
``SignedTokenVerifier(32, ...)`` signed with 32 zero bytes. Every parameter of
every constructor that takes a broker, log, verifier or client is driven here
with values of other kinds (hypothesis), and so are the settings read while
serving (``token_verifier``, ``broker``) and ``stream_topic(log=...)``, which
must give the client a 500 and the log one clear record.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import prometheus_client
import pytest
import redis
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application, RequestHandler

from tests._servers import serve_app
from tornado_kit import (
    JSONErrorMixin,
    JWTVerifier,
    LocalBroker,
    MemoryEventLog,
    PrometheusMetrics,
    RedisBroker,
    RedisEventLog,
    SignedTokenVerifier,
    SSEMixin,
    StaticTokenVerifier,
    TokenAuthMixin,
)

SECRET = "hostile-constructors-secret-0123456789"
MARK = "s3cr3t-"  # every generated string starts with it: it must never reach a message


class SyncBroker:
    """Looks like a broker, but its methods are plain ``def``: awaiting them fails."""

    def publish(self, topic: str, message: str) -> None: ...

    def subscribe(self, topic: str) -> None: ...

    def close(self) -> None: ...


class HalfBroker:
    """Has an async ``publish`` and nothing else."""

    async def publish(self, topic: str, message: str) -> None: ...


def _values() -> st.SearchStrategy[Any]:
    """Values of many kinds; each parameter's test drops the kinds it accepts."""
    text = st.text(max_size=8).map(lambda t: MARK + t)
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        text,
        st.binary(max_size=8).map(lambda b: MARK.encode() + b),
    )
    return st.one_of(
        scalars,
        st.lists(scalars, max_size=3),
        st.tuples(scalars),
        st.dictionaries(text, scalars, max_size=2),
        st.frozensets(st.integers(), max_size=2),
        st.sampled_from(
            [
                object(),
                LocalBroker,  # the class, not an instance
                MemoryEventLog,
                int,
                SyncBroker(),
                HalfBroker(),
                lambda *args: None,
                print,
                datetime.date(2026, 1, 1),
                bytearray(b"x" * 20),
            ]
        ),
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return _is_int(v) or isinstance(v, float)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(i, str) for i in v)


@dataclass(frozen=True)
class Param:
    """One constructor parameter: how to call with a value, and which values are its kind."""

    owner: str
    name: str
    call: Callable[[Any], Any]
    accepts: Callable[[Any], bool]

    def __str__(self) -> str:
        return f"{self.owner}.{self.name}"


def _param(
    owner: Callable[..., Any],
    name: str,
    accepts: Callable[[Any], bool],
    positional: bool = False,
    **base: Any,
) -> Param:
    def call(value: Any) -> Any:
        if positional:
            return owner(value, **base)
        return owner(**{**base, name: value})

    return Param(owner.__name__, name, call, accepts)


_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens: construction never connects
_ASYNC_REDIS = (redis.asyncio.Redis,)
_LOG = {"broker": LocalBroker()}

PARAMS = [
    _param(MemoryEventLog, "broker", lambda v: v is None),
    _param(MemoryEventLog, "broker", lambda v: v is None, positional=True),
    _param(MemoryEventLog, "maxlen", _is_int),
    _param(RedisBroker, "url", lambda v: isinstance(v, str)),
    _param(RedisBroker, "client", lambda v: v is None or isinstance(v, _ASYNC_REDIS)),
    _param(RedisBroker, "channel_prefix", lambda v: isinstance(v, str)),
    _param(RedisBroker, "timeout", _is_number),
    _param(RedisBroker, "reconnect_max_delay", _is_number),
    _param(RedisBroker, "health_check_interval", _is_number),
    _param(RedisBroker, "max_connections", _is_int),
    _param(
        RedisEventLog,
        "url_or_client",
        lambda v: v is None or isinstance(v, (str, *_ASYNC_REDIS)),
        **_LOG,
    ),
    _param(RedisEventLog, "broker", lambda v: False, url_or_client=_REDIS_URL),
    _param(RedisEventLog, "maxlen", _is_int, url_or_client=_REDIS_URL, **_LOG),
    _param(
        RedisEventLog,
        "approximate",
        lambda v: isinstance(v, bool),
        url_or_client=_REDIS_URL,
        **_LOG,
    ),
    _param(
        RedisEventLog, "key_prefix", lambda v: isinstance(v, str), url_or_client=_REDIS_URL, **_LOG
    ),
    _param(RedisEventLog, "timeout", _is_number, url_or_client=_REDIS_URL, **_LOG),
    _param(RedisEventLog, "max_connections", _is_int, url_or_client=_REDIS_URL, **_LOG),
    _param(StaticTokenVerifier, "tokens", lambda v: isinstance(v, Mapping) and not v),
    _param(
        SignedTokenVerifier, "secret", lambda v: isinstance(v, (str, bytes, bytearray)), max_age=60
    ),
    _param(SignedTokenVerifier, "max_age", _is_number, secret=SECRET),
    _param(SignedTokenVerifier, "clock", callable, secret=SECRET, max_age=60),
    _param(JWTVerifier, "key", lambda v: isinstance(v, (str, bytes)), algorithms=["HS256"]),
    _param(JWTVerifier, "algorithms", _is_str_list, key=SECRET),
    _param(
        JWTVerifier,
        "audience",
        lambda v: v is None or isinstance(v, str) or _is_str_list(v),
        key=SECRET,
        algorithms=["HS256"],
    ),
    _param(
        JWTVerifier,
        "issuer",
        lambda v: v is None or isinstance(v, str),
        key=SECRET,
        algorithms=["HS256"],
    ),
    _param(JWTVerifier, "leeway", _is_number, key=SECRET, algorithms=["HS256"]),
    _param(JWTVerifier, "require", _is_str_list, key=SECRET, algorithms=["HS256"]),
    _param(PrometheusMetrics, "registry", lambda v: v is None),
    _param(PrometheusMetrics, "namespace", lambda v: isinstance(v, str)),
    _param(
        PrometheusMetrics,
        "buckets",
        lambda v: (
            isinstance(v, Sequence)
            and not isinstance(v, (str, bytes))
            and all(_is_number(b) for b in v)
        ),
    ),
]


@pytest.mark.parametrize("param", PARAMS, ids=str)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_wrong_kind_is_a_type_error_naming_the_parameter(param: Param, data: st.DataObject) -> None:
    value = data.draw(_values().filter(lambda v: not param.accepts(v)), label=param.name)
    with pytest.raises(TypeError, match=re.escape(repr(param.name))) as raised:
        param.call(value)
    message = str(raised.value)
    assert MARK not in message  # the type is named, never the value (it may be a secret)
    assert param.owner in message


@settings(max_examples=60, deadline=None)
@given(
    tokens=st.one_of(
        st.dictionaries(
            st.one_of(st.integers(), st.binary(min_size=1), st.none()),
            st.just({"sub": "x"}),
            min_size=1,
            max_size=3,
        ),
        st.dictionaries(
            st.text(min_size=1),
            st.one_of(st.integers(), st.text(), st.lists(st.text()), st.none()),
            min_size=1,
            max_size=3,
        ),
    )
)
def test_static_tokens_must_map_str_to_a_mapping(tokens: dict[Any, Any]) -> None:
    with pytest.raises(TypeError, match="'tokens'"):
        StaticTokenVerifier(tokens)


def test_memory_event_log_of_an_int_names_the_broker() -> None:
    # The report's own example.
    with pytest.raises(TypeError, match=r"MemoryEventLog\(\) argument 'broker' must be a Broker"):
        MemoryEventLog(100)  # type: ignore[arg-type]
    for maxlen in (True, "5", 5.0):
        with pytest.raises(TypeError, match="'maxlen'"):
            MemoryEventLog(maxlen=maxlen)  # type: ignore[arg-type]
    for maxlen in (0, -1):
        with pytest.raises(ValueError, match="'maxlen'"):
            MemoryEventLog(maxlen=maxlen)
    with pytest.raises(TypeError, match="pass an instance"):
        MemoryEventLog(LocalBroker)  # type: ignore[arg-type]


def test_right_kinds_are_still_accepted() -> None:
    broker = LocalBroker()
    assert MemoryEventLog(broker, 5).broker is broker
    client = redis.asyncio.Redis.from_url(_REDIS_URL)
    assert RedisBroker(client=client, timeout=1).client is client
    assert RedisEventLog(client, broker=broker, maxlen=3, approximate=False).maxlen == 3
    assert RedisEventLog(_REDIS_URL, broker=broker).broker is broker
    assert StaticTokenVerifier({"t": {"sub": "x"}}).verify("t") == {"sub": "x"}
    assert SignedTokenVerifier(SECRET.encode(), 60).max_age == 60
    assert SignedTokenVerifier(bytearray(SECRET.encode()), 1).max_age == 1
    JWTVerifier(SECRET, algorithms=("HS256",), audience=["a", "b"], issuer="i", leeway=1.5)
    JWTVerifier(SECRET.encode(), algorithms=["HS512"], leeway=datetime.timedelta(seconds=3))
    registry = prometheus_client.CollectorRegistry()
    PrometheusMetrics(registry, "ns", buckets=range(1, 4))


def test_a_sync_redis_client_is_refused_where_an_asyncio_one_is_needed() -> None:
    client = redis.Redis()  # the synchronous client: a common mix-up
    try:
        with pytest.raises(TypeError, match=r"'client' must be a redis\.asyncio\.Redis"):
            RedisBroker(client=client)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'url_or_client'"):
            RedisEventLog(client, broker=LocalBroker())  # type: ignore[arg-type]
    finally:
        client.close()


def test_jwt_key_no_algorithm_can_use() -> None:
    with pytest.raises(ValueError, match="'key' cannot be used with HS256"):
        JWTVerifier(
            "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----", algorithms=["HS256"]
        )
    with pytest.raises(ValueError, match="'HS1024' is not available"):
        JWTVerifier(SECRET, algorithms=["HS1024"])


# -- settings read while serving ------------------------------------------------


class Protected(TokenAuthMixin, JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        self.write({"sub": self.current_user["sub"]})


class Feed(SSEMixin, JSONErrorMixin, RequestHandler):
    async def get(self) -> None:
        await self.stream_topic("news")


class FeedWithLog(SSEMixin, JSONErrorMixin, RequestHandler):
    async def get(self) -> None:
        await self.stream_topic("news", log=self.settings["feed_log"])


WRONG_VERIFIERS = [42, MARK + "token", StaticTokenVerifier, {"t": {"sub": "x"}}, HalfBroker()]
WRONG_BROKERS = [MARK + "redis://127.0.0.1:6379/0", LocalBroker, SyncBroker(), HalfBroker(), 7]
WRONG_LOGS = [LocalBroker(), MARK + "log", SyncBroker(), 3]
RUNTIME_CASES = [
    *[(Protected, {"token_verifier": v}, "'token_verifier' setting") for v in WRONG_VERIFIERS],
    *[(Feed, {"broker": b}, "'broker' setting") for b in WRONG_BROKERS],
    *[(FeedWithLog, {"feed_log": log}, "stream_topic() argument 'log'") for log in WRONG_LOGS],
]


@pytest.mark.parametrize(
    ("handler", "app_settings", "named"),
    RUNTIME_CASES,
    ids=[f"{h.__name__}-{type(next(iter(s.values()))).__name__}" for h, s, _ in RUNTIME_CASES],
)
async def test_a_value_of_the_wrong_kind_read_while_serving_is_a_500_logged_once(
    http_client: AsyncHTTPClient,
    caplog: Any,
    handler: type[RequestHandler],
    app_settings: dict[str, Any],
    named: str,
) -> None:
    caplog.set_level(logging.ERROR)
    async with serve_app(Application([("/", handler)], **app_settings)) as url:
        response = await http_client.fetch(
            url + "/", headers={"Authorization": "Bearer abc"}, raise_error=False
        )
    assert response.code == 500, response.body
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert json.loads(response.body)["status"] == 500
    records = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    error = records[0].exc_info[1]
    assert isinstance(error, TypeError)
    assert named in str(error)
    assert MARK not in caplog.text
