"""TokenAuthMixin, the verifiers and the decorators, through a real server."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler, websocket_connect

from tests._example_process import ExampleProcess
from tests._threaded_server import ThreadedServer, raw_get
from tornado_kit import (
    JSONErrorMixin,
    JWTVerifier,
    SignedTokenVerifier,
    StaticTokenVerifier,
    TimingMixin,
    TokenAuthMixin,
    allow_anonymous,
    require_scopes,
)
from tornado_kit._redact import redact_query

ALICE = {"sub": "alice", "scopes": ["read", "write"]}
BOB = {"sub": "bob", "scope": "read"}
TOKENS = {"alice-token": ALICE, "bob-token": BOB}

CHALLENGE = 'Bearer realm="api"'
INVALID_TOKEN = 'Bearer realm="api", error="invalid_token"'
INVALID_REQUEST = 'Bearer realm="api", error="invalid_request"'


# -- handlers ----------------------------------------------------------------


class ProtectedHandler(TokenAuthMixin, RequestHandler):
    def get(self) -> None:
        self.write({"sub": self.current_user["sub"]})

    async def post(self) -> None:
        self.write({"sub": self.current_user["sub"], "posted": True})

    def options(self) -> None:
        self.write("preflight")

    def put(self) -> None:
        self.write({"user": self.current_user})


class AnonymousHandler(TokenAuthMixin, RequestHandler):
    @allow_anonymous
    def get(self) -> None:
        user = self.current_user
        self.write({"sub": user["sub"] if user else None})

    def post(self) -> None:
        self.write("protected")


class ScopedHandler(TokenAuthMixin, RequestHandler):
    @require_scopes("read", "write")
    def get(self) -> None:
        self.write("read+write")

    @require_scopes("read")
    async def put(self) -> None:
        await asyncio.sleep(0)
        self.write("read")

    @require_scopes("admin")
    @allow_anonymous
    async def delete(self) -> None:
        self.write("admin")


class NoMixinScopedHandler(RequestHandler):
    """`require_scopes` still guards a handler that forgot the mixin."""

    @require_scopes("read")
    def get(self) -> None:
        self.write("should not happen")


class EchoWebSocket(TokenAuthMixin, WebSocketHandler):
    def open(self) -> None:
        self.write_message(self.current_user["sub"])


class AdminWebSocket(TokenAuthMixin, WebSocketHandler):
    @require_scopes("admin")
    def open(self) -> None:
        self.write_message("admin")


class CrashingVerifierHandler(TokenAuthMixin, RequestHandler):
    async def verify_token(self, token: str) -> dict[str, Any] | None:
        raise RuntimeError("verifier exploded with internal-detail-42")

    def get(self) -> None:  # pragma: no cover - never reached
        self.write("unreachable")


class CustomRealmHandler(TokenAuthMixin, RequestHandler):
    auth_realm = 'class "realm" \\ wins'

    def get(self) -> None:  # pragma: no cover - never reached
        self.write("x")


class NoQueryHandler(TokenAuthMixin, RequestHandler):
    auth_query_argument = ""

    def get(self) -> None:
        self.write("ok")


class OtherQueryHandler(TokenAuthMixin, RequestHandler):
    auth_query_argument = "token"

    def get(self) -> None:
        self.write("ok")


class ExemptGetHandler(TokenAuthMixin, RequestHandler):
    auth_exempt_methods = frozenset({"get"})

    def get(self) -> None:
        self.write({"user": self.current_user})

    def post(self) -> None:
        self.write("post")


ROUTES: list[Any] = [
    ("/protected", ProtectedHandler),
    ("/anon", AnonymousHandler),
    ("/scoped", ScopedHandler),
    ("/no-mixin", NoMixinScopedHandler),
    ("/ws", EchoWebSocket),
    ("/ws-admin", AdminWebSocket),
    ("/crash", CrashingVerifierHandler),
    ("/realm", CustomRealmHandler),
    ("/no-query", NoQueryHandler),
    ("/other-query", OtherQueryHandler),
    ("/exempt-get", ExemptGetHandler),
]


@pytest.fixture
def app() -> Application:
    return Application(ROUTES, token_verifier=StaticTokenVerifier(TOKENS))


async def fetch(
    client: AsyncHTTPClient, url: str, token: str | None = None, **kwargs: Any
) -> HTTPResponse:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await client.fetch(url, headers=headers, raise_error=False, **kwargs)


def challenge(response: HTTPResponse) -> str | None:
    return response.headers.get("WWW-Authenticate")


# -- the basic statuses and challenges --------------------------------------


async def test_missing_credentials_get_401_with_plain_challenge(base_url, http_client):
    response = await fetch(http_client, base_url + "/protected")
    assert response.code == 401
    assert challenge(response) == CHALLENGE


async def test_valid_bearer_token_sets_current_user(base_url, http_client):
    response = await fetch(http_client, base_url + "/protected", "alice-token")
    assert response.code == 200
    assert json.loads(response.body) == {"sub": "alice"}
    assert challenge(response) is None


async def test_async_verb_method_runs_after_auth(base_url, http_client):
    response = await fetch(
        http_client, base_url + "/protected", "bob-token", method="POST", body=b""
    )
    assert response.code == 200
    assert json.loads(response.body) == {"sub": "bob", "posted": True}


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
async def test_scheme_is_case_insensitive(base_url, http_client, scheme):
    response = await fetch(
        http_client, base_url + "/protected", headers={"Authorization": f"{scheme} alice-token"}
    )
    assert response.code == 200


@pytest.mark.parametrize("value", ["Bearer  alice-token", "Bearer alice-token  "])
async def test_several_spaces_are_allowed_by_rfc6750(base_url, http_client, value):
    # credentials = "Bearer" 1*SP b64token; trailing OWS is not part of the value.
    response = await fetch(http_client, base_url + "/protected", headers={"Authorization": value})
    assert response.code == 200


@pytest.mark.parametrize("token", ["wrong-token", "alice-tokenx", "alice-toke", "A" * 4000])
async def test_invalid_token_gets_401_invalid_token(base_url, http_client, token):
    response = await fetch(http_client, base_url + "/protected", token)
    assert response.code == 401
    assert challenge(response) == INVALID_TOKEN
    assert token.encode() not in response.body


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Bearer",
        "Bearer ",
        "Bearer  a b",
        "Bearer a,b",
        "Bearer\ttoken",
        "Bearer tok=en",
        'Bearer "quoted"',
        "Bearer tök",
        "@@@ x",
        "Bearer alice-token, Basic abc",
    ],
)
async def test_malformed_header_gets_400_invalid_request(base_url, http_client, value):
    response = await fetch(http_client, base_url + "/protected", headers={"Authorization": value})
    assert response.code == 400
    assert challenge(response) == INVALID_REQUEST


async def test_two_authorization_headers_get_400(base_url, http_client):
    request = HTTPRequest(base_url + "/protected")
    request.headers.add("Authorization", "Bearer alice-token")
    request.headers.add("Authorization", "Bearer alice-token")
    response = await http_client.fetch(request, raise_error=False)
    assert response.code == 400
    assert challenge(response) == INVALID_REQUEST


@pytest.mark.parametrize("value", ["Basic YWxpY2U6cGFzcw==", "Digest username=x", "Token abc"])
async def test_other_scheme_gets_plain_401_challenge(base_url, http_client, value):
    # RFC 6750 §3.1: an unsupported authentication method is "lacking
    # authentication information": no error code in the challenge.
    response = await fetch(http_client, base_url + "/protected", headers={"Authorization": value})
    assert response.code == 401
    assert challenge(response) == CHALLENGE


# -- the query argument ------------------------------------------------------


async def test_query_argument_is_accepted_without_header(base_url, http_client):
    response = await fetch(http_client, base_url + "/protected?access_token=alice-token")
    assert response.code == 200
    assert json.loads(response.body) == {"sub": "alice"}


async def test_invalid_query_token_gets_401_invalid_token(base_url, http_client):
    response = await fetch(http_client, base_url + "/protected?access_token=nope")
    assert response.code == 401
    assert challenge(response) == INVALID_TOKEN


async def test_header_and_query_together_get_400(base_url, http_client):
    # RFC 6750 §2: a client MUST NOT use more than one method per request.
    response = await fetch(
        http_client, base_url + "/protected?access_token=alice-token", "bob-token"
    )
    assert response.code == 400
    assert challenge(response) == INVALID_REQUEST


@pytest.mark.parametrize(
    "query",
    [
        "access_token=alice-token&access_token=alice-token",
        "access_token=",
        "access_token=%FF%FE",
        "access_token=a%20b",
        "access_token=%00",
    ],
)
async def test_malformed_query_token_gets_400(base_url, http_client, query):
    response = await fetch(http_client, base_url + "/protected?" + query)
    assert response.code == 400
    assert challenge(response) == INVALID_REQUEST


async def test_basic_header_with_query_token_is_accepted(base_url, http_client):
    # A site behind HTTP Basic auth: the browser sends Basic on every request,
    # the page authenticates its WebSocket with the query argument.
    response = await fetch(
        http_client,
        base_url + "/protected?access_token=bob-token",
        headers={"Authorization": "Basic YWxpY2U6cGFzcw=="},
    )
    assert response.code == 200
    assert json.loads(response.body) == {"sub": "bob"}


async def test_query_argument_name_is_a_class_knob(base_url, http_client):
    ok = await fetch(http_client, base_url + "/other-query?token=alice-token")
    assert ok.code == 200
    ignored = await fetch(http_client, base_url + "/other-query?access_token=alice-token")
    assert ignored.code == 401
    assert challenge(ignored) == CHALLENGE


async def test_empty_query_argument_name_disables_the_query_path(base_url, http_client):
    response = await fetch(http_client, base_url + "/no-query?access_token=alice-token")
    assert response.code == 401
    assert challenge(response) == CHALLENGE
    assert (await fetch(http_client, base_url + "/no-query", "alice-token")).code == 200


# -- knobs: realm, exempt methods, settings vs class attributes --------------


async def test_realm_class_attribute_is_quoted_and_escaped(base_url, http_client):
    response = await fetch(http_client, base_url + "/realm")
    assert response.code == 401
    assert challenge(response) == r'Bearer realm="class \"realm\" \\ wins"'


async def test_settings_knobs_apply_when_no_class_attribute(http_client):
    app = Application(
        ROUTES,
        token_verifier=StaticTokenVerifier(TOKENS),
        auth_realm="users",
        auth_query_argument="t",
        auth_exempt_methods={"PUT"},
    )
    async with _serve(app) as url:
        assert challenge(await fetch(http_client, url + "/protected")) == 'Bearer realm="users"'
        assert (await fetch(http_client, url + "/protected?t=bob-token")).code == 200
        ignored = await fetch(http_client, url + "/protected?access_token=bob-token")
        assert challenge(ignored) == 'Bearer realm="users"'
        exempt = await fetch(http_client, url + "/protected", method="PUT", body=b"")
        assert exempt.code == 200
        assert json.loads(exempt.body) == {"user": None}
        # OPTIONS is no longer exempt with this setting.
        assert (await fetch(http_client, url + "/protected", method="OPTIONS")).code == 401
        # The class attribute still wins over the setting.
        assert challenge(await fetch(http_client, url + "/realm")) == (
            r'Bearer realm="class \"realm\" \\ wins"'
        )


async def test_options_is_exempt_by_default(base_url, http_client):
    response = await fetch(http_client, base_url + "/protected", method="OPTIONS")
    assert response.code == 200
    assert response.body == b"preflight"


async def test_exempt_methods_class_knob_is_case_insensitive(base_url, http_client):
    response = await fetch(http_client, base_url + "/exempt-get")
    assert response.code == 200
    assert json.loads(response.body) == {"user": None}
    assert (await fetch(http_client, base_url + "/exempt-get", method="POST", body=b"")).code == 401


# -- decorators --------------------------------------------------------------


async def test_allow_anonymous_without_token(base_url, http_client):
    response = await fetch(http_client, base_url + "/anon")
    assert response.code == 200
    assert json.loads(response.body) == {"sub": None}


async def test_allow_anonymous_with_valid_token_sets_user(base_url, http_client):
    response = await fetch(http_client, base_url + "/anon", "bob-token")
    assert json.loads(response.body) == {"sub": "bob"}


async def test_allow_anonymous_rejects_invalid_and_malformed_tokens(base_url, http_client):
    invalid = await fetch(http_client, base_url + "/anon", "expired-or-wrong")
    assert invalid.code == 401
    assert challenge(invalid) == INVALID_TOKEN
    malformed = await fetch(http_client, base_url + "/anon", headers={"Authorization": "Bearer"})
    assert malformed.code == 400


async def test_allow_anonymous_is_per_method(base_url, http_client):
    response = await fetch(http_client, base_url + "/anon", method="POST", body=b"")
    assert response.code == 401


class StrictChildHandler(AnonymousHandler):
    """Overrides the anonymous GET without the marker: GET needs a token again."""

    def get(self) -> None:
        self.write("strict")


class ScopedChildHandler(AnonymousHandler):
    @require_scopes("write")
    def get(self) -> None:
        self.write("scoped")


class InheritingChildHandler(AnonymousHandler):
    """Inherits the anonymous GET unchanged."""


async def test_markers_follow_each_class_not_its_parent(http_client):
    # The markers are cached per class: the parent's cached "anonymous GET"
    # must not leak to subclasses that override GET, and must reach one that
    # inherits it.
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port

    app = Application(
        [
            ("/parent", AnonymousHandler),
            ("/strict", StrictChildHandler),
            ("/scoped-child", ScopedChildHandler),
            ("/inheriting", InheritingChildHandler),
        ],
        token_verifier=StaticTokenVerifier(TOKENS),
    )
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(2):  # the second round runs on the cached markers
            assert (await fetch(http_client, base + "/parent")).code == 200
            strict = await fetch(http_client, base + "/strict")
            assert (strict.code, challenge(strict)) == (401, CHALLENGE)
            assert (await fetch(http_client, base + "/strict", "bob-token")).body == b"strict"
            assert (await fetch(http_client, base + "/scoped-child")).code == 401
            assert (await fetch(http_client, base + "/scoped-child", "bob-token")).code == 403
            assert (await fetch(http_client, base + "/scoped-child", "alice-token")).code == 200
            assert (await fetch(http_client, base + "/inheriting")).body == b'{"sub": null}'
            assert (
                await fetch(http_client, base + "/inheriting", method="POST", body=b"")
            ).code == 401
    finally:
        server.stop()
        await server.close_all_connections()


async def test_require_scopes_grants_with_every_scope(base_url, http_client):
    response = await fetch(http_client, base_url + "/scoped", "alice-token")
    assert response.code == 200
    assert response.body == b"read+write"


async def test_require_scopes_missing_scope_gets_403(base_url, http_client):
    response = await fetch(http_client, base_url + "/scoped", "bob-token")
    assert response.code == 403
    assert challenge(response) == (
        'Bearer realm="api", error="insufficient_scope", scope="read write"'
    )


async def test_require_scopes_reads_oauth_scope_string(base_url, http_client):
    # bob has scope="read" (a space-separated string)
    response = await fetch(http_client, base_url + "/scoped", "bob-token", method="PUT", body=b"")
    assert response.code == 200
    assert response.body == b"read"


async def test_require_scopes_without_credentials_gets_401(base_url, http_client):
    response = await fetch(http_client, base_url + "/scoped")
    assert response.code == 401
    assert challenge(response) == CHALLENGE


async def test_require_scopes_wins_over_allow_anonymous(base_url, http_client):
    anonymous = await fetch(http_client, base_url + "/scoped", method="DELETE")
    assert anonymous.code == 401
    assert challenge(anonymous) == CHALLENGE
    lacking = await fetch(http_client, base_url + "/scoped", "alice-token", method="DELETE")
    assert lacking.code == 403
    assert 'scope="admin"' in (challenge(lacking) or "")


async def test_require_scopes_guards_handlers_without_the_mixin(base_url, http_client):
    response = await fetch(http_client, base_url + "/no-mixin", "alice-token")
    assert response.code == 401


def test_decorators_keep_sync_async_and_signature() -> None:
    class H(RequestHandler):
        @require_scopes("a")
        async def get(self, item_id: str, *, verbose: bool = False) -> None:
            """Doc."""

        @require_scopes("a")
        def put(self, item_id: str) -> str:
            return item_id

        @allow_anonymous
        async def post(self, x: int) -> None: ...

    assert inspect.iscoroutinefunction(H.get)
    assert not inspect.iscoroutinefunction(H.put)
    assert inspect.iscoroutinefunction(H.post)
    assert (
        str(inspect.signature(H.get))
        == "(self, item_id: 'str', *, verbose: 'bool' = False) -> 'None'"
    )
    assert str(inspect.signature(H.put)) == "(self, item_id: 'str') -> 'str'"
    assert H.get.__doc__ == "Doc."
    assert H.get.__name__ == "get"


@pytest.mark.parametrize(
    "user",
    [{"sub": "x", "scopes": 5}, {"sub": "x"}, {"sub": "x", "scope": None}, "not-a-mapping"],
    ids=["scopes-not-a-list", "no-scopes", "scope-none", "non-mapping-user"],
)
async def test_users_without_usable_scopes_get_403(http_client, user):
    async with _serve(Application(ROUTES, token_verifier=lambda token: user)) as url:
        response = await fetch(http_client, url + "/scoped", "any-token", method="PUT", body=b"")
        assert response.code == 403
        assert 'error="insufficient_scope", scope="read"' in (challenge(response) or "")


@pytest.mark.parametrize("bad", ["", "a b", 'q"uote', "back\\slash", "tab\t", "é"])
def test_require_scopes_refuses_invalid_scope_tokens(bad: str) -> None:
    with pytest.raises(ValueError, match="scope"):
        require_scopes(bad)


# -- WebSocket handshake -----------------------------------------------------


def ws_url(base_url: str, path: str) -> str:
    return "ws" + base_url[len("http") :] + path


async def test_websocket_handshake_without_token_is_an_http_401(base_url):
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(ws_url(base_url, "/ws"))
    assert info.value.code == 401
    assert info.value.response is not None
    assert info.value.response.headers["WWW-Authenticate"] == CHALLENGE


async def test_websocket_handshake_invalid_token_is_an_http_401(base_url):
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(ws_url(base_url, "/ws?access_token=nope"))
    assert info.value.code == 401
    assert info.value.response is not None
    assert info.value.response.headers["WWW-Authenticate"] == INVALID_TOKEN


async def test_websocket_query_token_opens_the_connection(base_url):
    conn = await websocket_connect(ws_url(base_url, "/ws?access_token=alice-token"))
    try:
        assert await conn.read_message() == "alice"
    finally:
        conn.close()


async def test_websocket_header_token_opens_the_connection(base_url):
    request = HTTPRequest(ws_url(base_url, "/ws"), headers={"Authorization": "Bearer bob-token"})
    conn = await websocket_connect(request)
    try:
        assert await conn.read_message() == "bob"
    finally:
        conn.close()


async def test_websocket_scopes_on_open_are_checked_at_handshake(base_url):
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(ws_url(base_url, "/ws-admin?access_token=alice-token"))
    assert info.value.code == 403
    assert info.value.response is not None
    assert (
        'error="insufficient_scope", scope="admin"'
        in info.value.response.headers["WWW-Authenticate"]
    )


# -- verifiers of every shape ------------------------------------------------


def sync_callable(token: str) -> dict[str, Any] | None:
    return {"sub": "sync"} if token == "t-sync" else None


async def async_callable(token: str) -> dict[str, Any] | None:
    await asyncio.sleep(0)
    return {"sub": "async"} if token == "t-async" else None


class AsyncVerifyObject:
    async def verify(self, token: str) -> dict[str, Any] | None:
        await asyncio.sleep(0)
        return {"sub": "object"} if token == "t-object" else None


@pytest.mark.parametrize(
    ("verifier", "token", "sub"),
    [
        (sync_callable, "t-sync", "sync"),
        (async_callable, "t-async", "async"),
        (AsyncVerifyObject(), "t-object", "object"),
        (StaticTokenVerifier({"t-static": {"sub": "static"}}), "t-static", "static"),
    ],
)
async def test_verifier_shapes(http_client, verifier, token, sub):
    async with _serve(Application(ROUTES, token_verifier=verifier)) as url:
        ok = await fetch(http_client, url + "/protected", token)
        assert ok.code == 200
        assert json.loads(ok.body) == {"sub": sub}
        bad = await fetch(http_client, url + "/protected", token + "x")
        assert bad.code == 401
        assert challenge(bad) == INVALID_TOKEN


async def test_overridden_verify_token_is_used_instead_of_the_verifier(http_client):
    # The default verify_token is bypassed internally for speed; an override
    # must still be the one that decides.
    class OwnLookup(TokenAuthMixin, RequestHandler):
        async def verify_token(self, token: str) -> dict[str, Any] | None:
            await asyncio.sleep(0)
            return {"sub": "custom", "scopes": ["x"]} if token == "custom-token" else None

        @require_scopes("x")
        def get(self) -> None:
            self.write(self.current_user["sub"])

    app = Application([("/own", OwnLookup)], token_verifier=StaticTokenVerifier(TOKENS))
    async with _serve(app) as url:
        ok = await fetch(http_client, url + "/own", "custom-token")
        assert (ok.code, ok.body) == (200, b"custom")
        bad = await fetch(http_client, url + "/own", "alice-token")  # valid for the setting
        assert (bad.code, challenge(bad)) == (401, INVALID_TOKEN)


async def test_class_attribute_verifier_wins_over_setting(http_client):
    class OwnVerifier(ProtectedHandler):
        token_verifier = staticmethod(sync_callable)

    app = Application([("/own", OwnVerifier)], token_verifier=StaticTokenVerifier(TOKENS))
    async with _serve(app) as url:
        assert (await fetch(http_client, url + "/own", "t-sync")).code == 200
        assert (await fetch(http_client, url + "/own", "alice-token")).code == 401


async def test_no_verifier_rejects_and_warns_once_per_application(http_client, caplog):
    caplog.set_level(logging.WARNING, logger="tornado_kit.auth")
    for _ in range(2):
        app = Application(ROUTES)
        async with _serve(app) as url:
            for _ in range(3):
                response = await fetch(http_client, url + "/protected", "alice-token")
                assert response.code == 401
                assert challenge(response) == INVALID_TOKEN
    warnings = [r for r in caplog.records if "no token_verifier" in r.getMessage()]
    assert len(warnings) == 2  # once for each of the two applications


async def test_crashing_verifier_is_a_500_that_leaks_nothing(base_url, http_client, caplog):
    caplog.set_level(logging.ERROR, logger="tornado.application")
    response = await fetch(http_client, base_url + "/crash?access_token=secret-crash-token")
    assert response.code == 500
    assert b"internal-detail-42" not in response.body
    assert b"secret-crash-token" not in response.body
    assert challenge(response) is None
    # The failure is logged with its traceback, but the token is redacted.
    assert "verifier exploded" in caplog.text
    assert "secret-crash-token" not in caplog.text
    assert "access_token=REDACTED" in caplog.text


# -- composition with other mixins ------------------------------------------


class SyncRecordingMixin(RequestHandler):
    def prepare(self) -> Awaitable[None] | None:
        # A cooperative sync prepare hands the next prepare's awaitable back.
        self.seen = [*getattr(self, "seen", []), ("sync", self.current_user)]
        return super().prepare()


class AsyncRecordingMixin(RequestHandler):
    async def prepare(self) -> None:
        await asyncio.sleep(0)
        self.seen = [*getattr(self, "seen", []), ("async", self.current_user)]
        result = super().prepare()
        if result is not None:
            await result


def _composed(*bases: type) -> type:
    def get(self: Any) -> None:
        self.write({"seen": [name for name, _ in self.seen], "sub": self.current_user["sub"]})

    return type("Composed", (*bases, RequestHandler), {"get": get})


ORDERS = [
    (TokenAuthMixin, SyncRecordingMixin, AsyncRecordingMixin),
    (SyncRecordingMixin, TokenAuthMixin, AsyncRecordingMixin),
    (SyncRecordingMixin, AsyncRecordingMixin, TokenAuthMixin),
    (AsyncRecordingMixin, TokenAuthMixin, SyncRecordingMixin),
]


@pytest.mark.parametrize("bases", ORDERS, ids=lambda b: "-".join(c.__name__ for c in b))
async def test_every_mixin_order_runs_every_prepare(http_client, bases):
    app = Application([("/c", _composed(*bases))], token_verifier=StaticTokenVerifier(TOKENS))
    async with _serve(app) as url:
        ok = await fetch(http_client, url + "/c", "alice-token")
        assert ok.code == 200, ok.body
        body = json.loads(ok.body)
        assert sorted(body["seen"]) == ["async", "sync"]
        assert body["sub"] == "alice"
        refused = await fetch(http_client, url + "/c", "bad")
        assert refused.code == 401
        assert challenge(refused) == INVALID_TOKEN


# -- with JSONErrorMixin and TimingMixin: problem+json bodies ---------------


def _full_stack(*bases: type) -> tuple[type, type]:
    @require_scopes("read")
    def get(self: Any) -> None:
        self.write({"sub": self.current_user["sub"]})

    class CrashVerifier:
        def verify(self, token: str) -> None:
            raise RuntimeError("verifier outage internal-detail-43")

    def crash(self: Any) -> None:  # pragma: no cover - never reached
        self.write("unreachable")

    attrs = {"get": get}
    ok = type("Stack", (*bases, RequestHandler), attrs)
    crashing = type("CrashStack", (*bases, RequestHandler), {"get": crash})
    crashing.token_verifier = CrashVerifier()  # type: ignore[attr-defined]
    return ok, crashing


STACK_ORDERS = list(itertools.permutations([TokenAuthMixin, JSONErrorMixin, TimingMixin]))


@pytest.mark.parametrize("bases", STACK_ORDERS, ids=lambda b: "-".join(c.__name__ for c in b))
async def test_errors_are_problem_json_in_every_order(http_client, caplog, bases):
    caplog.set_level(logging.INFO)
    ok, crashing = _full_stack(*bases)
    app = Application(
        [("/s", ok), ("/crash", crashing)], token_verifier=StaticTokenVerifier(TOKENS)
    )
    cases = [
        ({}, 401, CHALLENGE, None),
        ({"Authorization": "Bearer nope"}, 401, INVALID_TOKEN, "invalid_token"),
        ({"Authorization": "Bearer a b"}, 400, INVALID_REQUEST, "invalid_request"),
        (
            {"Authorization": "Bearer bob-token", "X-Request-ID": "req-1"},
            200,
            None,
            None,
        ),
    ]
    async with _serve(app) as url:
        for headers, status, expected_challenge, error in cases:
            response = await fetch(http_client, url + "/s", headers=headers)
            assert response.code == status
            assert challenge(response) == expected_challenge
            assert response.headers.get("X-Request-ID")
            if status == 200:
                continue
            assert response.headers["Content-Type"].startswith("application/problem+json")
            problem = json.loads(response.body)
            assert problem["status"] == status
            assert problem["instance"] == "/s"
            assert problem["request_id"] == response.headers["X-Request-ID"]
            assert problem.get("error") == error
            assert "detail" in problem

        # 403: the problem names the missing scope.
        no_scope = StaticTokenVerifier({"t": {"sub": "eve", "scopes": []}})
        app.settings["token_verifier"] = no_scope
        response = await fetch(http_client, url + "/s", "t")
        assert response.code == 403
        problem = json.loads(response.body)
        assert problem["error"] == "insufficient_scope"
        assert problem["scope"] == "read"

        # A crashing verifier: 500 problem, nothing from the exception, token redacted.
        crash = await fetch(http_client, url + "/crash?access_token=crash-secret-token")
        assert crash.code == 500
        problem = json.loads(crash.body)
        assert problem["detail"] == "internal server error"
        assert b"internal-detail-43" not in crash.body
        assert "crash-secret-token" not in caplog.text
        assert "internal-detail-43" in caplog.text  # logged, with its traceback


# -- log redaction -----------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/p?access_token=abc", "/p?access_token=REDACTED"),
        ("/p?a=1&access_token=abc&b=2", "/p?a=1&access_token=REDACTED&b=2"),
        ("/p?access%5Ftoken=abc", "/p?access%5Ftoken=REDACTED"),
        ("/p?access_token=a&access_token=b", "/p?access_token=REDACTED&access_token=REDACTED"),
        ("/p?access_token=", "/p?access_token="),
        ("/p?access_token", "/p?access_token"),
        ("/p?ACCESS_Token=abc", "/p?ACCESS_Token=REDACTED"),
        ("/p?access_tokens=abc", "/p?access_tokens=abc"),
        ("/p", "/p"),
        ("/p?x=access_token=abc", "/p?x=access_token=abc"),
        ("http://h/p?access_token=abc#frag", "http://h/p?access_token=REDACTED"),
    ],
)
def test_redact_query(uri: str, expected: str) -> None:
    assert redact_query(uri, {"access_token"}) == expected


def test_redact_query_always_redacts_the_default_names_and_adds_the_given_ones() -> None:
    # 0.2: the names given are added to the defaults (0.1: they replaced them).
    assert redact_query("/p?access_token=abc&code=c&x=1") == (
        "/p?access_token=REDACTED&code=REDACTED&x=1"
    )
    assert redact_query("/p?password=abc&tk=t", {"tk"}) == "/p?password=REDACTED&tk=REDACTED"


def test_redact_query_names_are_case_insensitive() -> None:
    assert redact_query("/p?tk=abc&x=1", {"TK"}) == "/p?tk=REDACTED&x=1"


async def test_query_token_never_reaches_tornado_logs(base_url, http_client, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "very-secret-query-token"
    for path in ("/protected", "/anon", "/scoped"):
        await fetch(http_client, f"{base_url}{path}?access_token={secret}")
    await fetch(http_client, f"{base_url}/protected?access_token=alice-token&x=1")
    await fetch(http_client, f"{base_url}/scoped?access_token=bob-token")
    await fetch(http_client, f"{base_url}/other-query?token={secret}")
    assert secret not in caplog.text
    assert "alice-token" not in caplog.text
    assert "bob-token" not in caplog.text
    # Tornado's own lines are still there, with the value redacted.
    access = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    assert any("/protected?access_token=REDACTED " in line for line in access)
    assert any("/protected?access_token=REDACTED&x=1 " in line for line in access)
    assert any("/other-query?token=REDACTED " in line for line in access)
    warnings = [r.getMessage() for r in caplog.records if r.name == "tornado.general"]
    assert any(line.startswith("401 GET /protected?access_token=REDACTED") for line in warnings)


# -- StaticTokenVerifier -----------------------------------------------------


def test_static_verifier_matches_exact_tokens_only() -> None:
    verifier = StaticTokenVerifier(TOKENS)
    assert verifier.verify("alice-token") is ALICE
    assert verifier.verify("bob-token") is BOB
    for other in ("", "alice", "alice-token ", "ALICE-TOKEN", "alice-token\x00", "\udcff"):
        assert verifier.verify(other) is None
    assert verifier.verify(b"alice-token") is None  # type: ignore[arg-type]
    assert "alice-token" not in repr(verifier)


def test_static_verifier_with_many_tokens_and_independent_instances() -> None:
    tokens = {f"service-token-{i:05d}": {"sub": f"svc{i}"} for i in range(5000)}
    verifier = StaticTokenVerifier(tokens)
    for i in (0, 1, 2500, 4999):
        assert verifier.verify(f"service-token-{i:05d}") == {"sub": f"svc{i}"}
    assert verifier.verify("service-token-05000") is None
    assert verifier.verify("service-token-0000") is None  # a prefix of real tokens
    assert repr(verifier) == "StaticTokenVerifier(<5000 tokens>)"
    # Each instance has its own key: what it stores reveals nothing shared.
    one, two = StaticTokenVerifier(TOKENS), StaticTokenVerifier(TOKENS)
    assert set(vars(one)["_users"]).isdisjoint(vars(two)["_users"])
    assert one.verify("alice-token") is two.verify("alice-token") is ALICE


def test_static_verifier_refuses_empty_tokens() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        StaticTokenVerifier({"": {"sub": "x"}})


def test_static_verifier_does_not_keep_raw_tokens() -> None:
    verifier = StaticTokenVerifier({"raw-secret-value": {"sub": "x"}})
    assert "raw-secret-value" not in repr(vars(verifier))


# -- SignedTokenVerifier -----------------------------------------------------

SECRET = "0123456789abcdef0123456789abcdef"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_signed_round_trip_adds_iat_and_exp() -> None:
    clock = FakeClock()
    signer = SignedTokenVerifier(SECRET, max_age=60, clock=clock)
    token = signer.issue({"sub": "alice", "scope": "read"})
    assert re.fullmatch(r"tk1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    claims = signer.verify(token)
    assert claims == {"sub": "alice", "scope": "read", "iat": int(clock.now), "exp": clock.now + 60}


def test_signed_token_expires() -> None:
    clock = FakeClock()
    signer = SignedTokenVerifier(SECRET, max_age=60, clock=clock)
    token = signer.issue({"sub": "alice"})
    clock.now += 59
    assert signer.verify(token) is not None
    clock.now += 1
    assert signer.verify(token) is None


def test_signed_token_per_token_max_age_and_verifier_cap() -> None:
    clock = FakeClock()
    long_lived = SignedTokenVerifier(SECRET, max_age=3600, clock=clock)
    short = long_lived.issue({"sub": "a"}, max_age=5)
    clock.now += 6
    assert long_lived.verify(short) is None
    # A verifier with a shorter max_age refuses an older token, whatever its exp.
    token = long_lived.issue({"sub": "a"})
    clock.now += 120
    assert long_lived.verify(token) is not None
    assert SignedTokenVerifier(SECRET, max_age=60, clock=clock).verify(token) is None


def test_signed_token_tampering_is_rejected() -> None:
    signer = SignedTokenVerifier(SECRET, max_age=60)
    token = signer.issue({"sub": "alice", "scopes": ["read"]})
    prefix, payload, signature = token.split(".")
    forged_claims = {"sub": "alice", "scopes": ["admin"], "iat": 0, "exp": 1e12}
    forged = _b64(json.dumps(forged_claims).encode())
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for bad in (
        f"{prefix}.{forged}.{signature}",
        f"{prefix}.{payload}.{flipped}",
        f"tk2.{payload}.{signature}",
        f"{prefix}.{payload}",
        f"{token}.x",
        token + "=",
        SignedTokenVerifier("another-secret-of-enough-length", max_age=60).issue({"sub": "alice"}),
    ):
        assert signer.verify(bad) is None, bad


def test_signed_token_rejects_signed_but_odd_payloads() -> None:
    signer = SignedTokenVerifier(SECRET, max_age=60)

    def sign(raw: bytes) -> str:
        signing_input = f"tk1.{_b64(raw)}"
        return f"{signing_input}.{signer._sign(signing_input)}"

    now = time.time()
    for raw in (
        b"not json",
        b"[1, 2]",
        b'{"sub": "x"}',
        json.dumps({"iat": now, "exp": "later"}).encode(),
        json.dumps({"iat": True, "exp": now + 10}).encode(),
        b'{"iat": 1, "exp": NaN}',
        b"\xff\xfe",
    ):
        assert signer.verify(sign(raw)) is None, raw
    assert signer.verify(sign(json.dumps({"iat": now, "exp": now + 10}).encode())) is not None
    assert signer.verify(signer.issue({"pad": "x" * 9000})) is None  # over MAX_LENGTH


def test_signed_verifier_argument_checks() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        SignedTokenVerifier("short", max_age=60)
    with pytest.raises(ValueError, match="max_age"):
        SignedTokenVerifier(SECRET, max_age=0)
    signer = SignedTokenVerifier(SECRET.encode(), max_age=60)
    with pytest.raises(ValueError, match="iat"):
        signer.issue({"exp": 1})
    with pytest.raises(ValueError, match="max_age"):
        signer.issue({"sub": "x"}, max_age=-1)
    assert SECRET not in repr(signer)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300) | st.from_regex(r"tk1\.[A-Za-z0-9_\-]{0,40}\.[A-Za-z0-9_\-=]{0,50}"))
def test_signed_and_static_verifiers_never_raise_on_garbage(token: str) -> None:
    assert SignedTokenVerifier(SECRET, max_age=60).verify(token) is None
    assert StaticTokenVerifier(TOKENS).verify(token) is None
    assert JWTVerifier("k" * 32, algorithms=["HS256"]).verify(token) is None


async def test_signed_token_through_the_server(http_client):
    signer = SignedTokenVerifier(SECRET, max_age=60)
    async with _serve(Application(ROUTES, token_verifier=signer)) as url:
        token = signer.issue({"sub": "carol", "scope": "read write"})
        assert json.loads((await fetch(http_client, url + "/protected", token)).body) == {
            "sub": "carol"
        }
        assert (await fetch(http_client, url + "/scoped", token)).code == 200
        expired = SignedTokenVerifier(SECRET, max_age=60, clock=FakeClock(1000.0)).issue({})
        response = await fetch(http_client, url + "/protected", expired)
        assert response.code == 401
        assert challenge(response) == INVALID_TOKEN


def _b64(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# -- JWTVerifier -------------------------------------------------------------

JWT_KEY = "a-jwt-hmac-key-of-at-least-32-bytes!"


def make_jwt(key: str = JWT_KEY, **claims: Any) -> str:
    payload = {"sub": "dave", "aud": "api", "iss": "issuer", "exp": time.time() + 60, **claims}
    return jwt.encode(payload, key, algorithm="HS256")


def jwt_verifier(**kwargs: Any) -> JWTVerifier:
    options: dict[str, Any] = {"algorithms": ["HS256"], "audience": "api", "issuer": "issuer"}
    options.update(kwargs)
    return JWTVerifier(JWT_KEY, **options)


def test_jwt_valid_token_returns_claims() -> None:
    claims = jwt_verifier().verify(make_jwt(scope="read"))
    assert claims is not None
    assert claims["sub"] == "dave"
    assert claims["scope"] == "read"


@pytest.mark.parametrize(
    "token_kwargs",
    [
        {"exp": time.time() - 10},
        {"aud": "another-api"},
        {"iss": "someone-else"},
        {"key": "another-key-of-at-least-32-bytes!!!"},
        {"nbf": time.time() + 600},
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "wrong-key", "not-yet-valid"],
)
def test_jwt_invalid_tokens_return_none(token_kwargs: dict[str, Any]) -> None:
    assert jwt_verifier().verify(make_jwt(**token_kwargs)) is None


def test_jwt_requires_exp_by_default() -> None:
    token = jwt.encode({"sub": "x", "aud": "api", "iss": "issuer"}, JWT_KEY, algorithm="HS256")
    assert jwt_verifier().verify(token) is None
    assert jwt_verifier(require=()).verify(token) is not None


def test_jwt_leeway_accepts_slightly_expired_tokens() -> None:
    token = make_jwt(exp=time.time() - 5)
    assert jwt_verifier().verify(token) is None
    assert jwt_verifier(leeway=60).verify(token) is not None


def test_jwt_refuses_unsigned_and_other_algorithms() -> None:
    unsigned = jwt.encode({"sub": "x", "exp": time.time() + 60}, None, algorithm="none")
    assert jwt_verifier(audience=None, issuer=None).verify(unsigned) is None
    hs512 = jwt.encode({"sub": "x", "exp": time.time() + 60}, JWT_KEY * 2, algorithm="HS512")
    assert jwt_verifier(audience=None, issuer=None).verify(hs512) is None
    with pytest.raises(ValueError, match="none"):
        JWTVerifier(JWT_KEY, algorithms=["HS256", "None"])
    with pytest.raises(TypeError, match="algorithms"):
        JWTVerifier(JWT_KEY, algorithms="HS256")
    with pytest.raises(ValueError, match="algorithms"):
        JWTVerifier(JWT_KEY, algorithms=[])
    verifier = JWTVerifier(JWT_KEY, algorithms=["HS256"])
    assert verifier.verify(None) is None  # type: ignore[arg-type]
    assert JWT_KEY not in repr(verifier)


async def test_jwt_through_the_server(http_client):
    async with _serve(Application(ROUTES, token_verifier=jwt_verifier())) as url:
        ok = await fetch(http_client, url + "/protected", make_jwt())
        assert json.loads(ok.body) == {"sub": "dave"}
        for bad in (make_jwt(exp=time.time() - 10), make_jwt(aud="other")):
            response = await fetch(http_client, url + "/protected", bad)
            assert response.code == 401
            assert challenge(response) == INVALID_TOKEN
        scoped = await fetch(http_client, url + "/scoped", make_jwt(scopes=["read", "write"]))
        assert scoped.code == 200


# -- property tests over raw sockets ----------------------------------------


@pytest.fixture(scope="module")
def threaded() -> Iterator[ThreadedServer]:
    with ThreadedServer(Application(ROUTES, token_verifier=StaticTokenVerifier(TOKENS))) as srv:
        yield srv


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def collected_logs() -> Iterator[_Collect]:
    handler = _Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


header_values = (
    st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
    | st.sampled_from([b"", b"Bearer", b"Bearer ", b"Bearer  a b", b"bearer\xe9\xff", b"Basic x"])
    | st.builds(lambda n: b"Bearer " + b"A" * n, st.integers(1, 8192))
    | st.builds(lambda s: b"Bearer " + s.encode("latin-1", "replace"), st.text(max_size=100))
    | st.builds(
        lambda scheme, rest: scheme.encode() + b" " + rest.encode("latin-1", "replace"),
        st.from_regex(r"[A-Za-z!#$%&'*+.^_`|~-]{1,10}", fullmatch=True),
        st.text(max_size=50),
    )
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=header_values)
def test_any_authorization_header_never_gives_500(threaded: ThreadedServer, value: bytes) -> None:
    with collected_logs() as logs:
        response = threaded.raw(raw_get("/protected", b"Authorization: " + value + b"\r\n"))
    status, headers, body = response.status, response.headers, response.body
    assert status in {400, 401}, (status, value)
    if status == 401:
        assert headers["www-authenticate"] in (CHALLENGE, INVALID_TOKEN)
    secret = value.partition(b" ")[2].strip()
    if len(secret) >= 12:
        assert secret not in body
        assert secret.decode("latin-1") not in headers.get("www-authenticate", "")
    assert not any("Uncaught exception" in line or "Traceback" in line for line in logs.lines)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(token=st.text(min_size=12, max_size=300))
def test_any_query_token_never_gives_500_nor_echoes_or_logs(
    threaded: ThreadedServer, token: str
) -> None:
    encoded = quote(token.encode("utf-8", "surrogatepass"), safe="")
    with collected_logs() as logs:
        response = threaded.raw(raw_get(f"/anon?access_token={encoded}"))
    status, headers, body = response.status, response.headers, response.body
    assert status in {400, 401}, (status, token)
    assert token.encode("utf-8", "surrogatepass") not in body
    assert encoded.encode() not in body
    # The challenge is one of the fixed RFC 6750 forms: nothing of the token
    # is echoed in it (a substring test would trip on tokens like "invalid_tok").
    assert headers.get("www-authenticate") in {
        'Bearer realm="api", error="invalid_token"',
        'Bearer realm="api", error="invalid_request"',
    }
    text = "\n".join(logs.lines)
    assert "/anon?access_token=REDACTED " in text
    # (the token may be a substring of the redacted query itself: "access_token")
    assert encoded not in text.replace("access_token=REDACTED", "")
    assert "Uncaught exception" not in text


# -- helpers -----------------------------------------------------------------


class _serve:
    """Serve an extra app on a free port for the duration of a block."""

    def __init__(self, app: Application) -> None:
        self.app = app

    async def __aenter__(self) -> str:
        sock, port = bind_unused_port()
        self.server = HTTPServer(self.app)
        self.server.add_sockets([sock])
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.stop()
        await self.server.close_all_connections()


# -- docs page and example ---------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_docs_snippet_prints_what_the_page_says() -> None:
    page = (ROOT / "docs" / "auth.md").read_text()
    snippet = re.findall(r"```python\n(.*?)```", page, re.S)[0]
    expected = re.findall(r"```text\n(.*?)```", page, re.S)[0]
    result = subprocess.run(
        [sys.executable, "-c", snippet],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


EXAMPLE_SECRET = "example-secret-for-the-test-run"


@pytest.fixture
def example_url() -> Iterator[str]:
    env = {"TOKEN_SECRET": EXAMPLE_SECRET}
    with ExampleProcess("01_token_auth.py", env=env, capture=True) as example:
        yield example.url
    assert b"Traceback" not in example.stderr, example.stderr.decode()
    assert b"reader-query-secret" not in example.stderr


async def test_example_01_runs_on_its_own(example_url, http_client):
    signer = SignedTokenVerifier(EXAMPLE_SECRET, max_age=3600)
    reader = signer.issue({"sub": "reader", "scope": "read"})
    admin = signer.issue({"sub": "admin", "scope": "read admin"})

    hello = await fetch(http_client, example_url + "/hello")
    assert json.loads(hello.body) == {"hello": "stranger"}
    missing = await fetch(http_client, example_url + "/me")
    assert missing.code == 401
    assert challenge(missing) == 'Bearer realm="example"'
    assert missing.headers["Content-Type"].startswith("application/problem+json")
    me = await fetch(http_client, example_url + "/me", reader)
    assert json.loads(me.body) == {"sub": "reader", "scope": "read"}
    assert (await fetch(http_client, example_url + "/admin", reader)).code == 403
    assert (await fetch(http_client, example_url + "/admin", admin)).code == 200

    conn = await websocket_connect(ws_url(example_url, f"/echo?access_token={reader}"))
    try:
        assert await conn.read_message() == "hello reader"
        await conn.write_message("ping")
        assert await conn.read_message() == "ping"
    finally:
        conn.close()
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(ws_url(example_url, "/echo?access_token=reader-query-secret"))
    assert info.value.code == 401
