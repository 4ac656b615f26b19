"""The migration guide and the FAQ: every Python block runs and does what the page says.

Each block is marked ``% runnable: <name>`` on its page (see
``tests/_doc_snippets.py``). A server snippet runs as ``python myapp.py`` in
its own process on a free port, exactly as a reader would run it; the test
then makes the real requests that show the behaviour the page describes next
to it: for a *before* snippet the hand-written behaviour, for an *after*
snippet what tornado-kit changes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection

from tests._doc_snippets import (
    SnippetProcess,
    python_fence_count,
    runnable_snippets,
    shortened,
    silent_websocket_client,
)
from tests._servers import eventually
from tests._user_project import assert_passed, run_pytest, write_layout
from tornado_kit.testing import read_sse, ws_connect

PAGES = ("migration.md", "faq.md")
SNIPPETS = {name: code for page in PAGES for name, code in runnable_snippets(page).items()}

# Every marked block, each with the test(s) below that run it.
TESTED = {
    "auth-before",
    "auth-after",
    "errors-before",
    "errors-after",
    "timing-before",
    "timing-after",
    "heartbeat-before",
    "heartbeat-after",
    "rooms-before",
    "rooms-after",
    "sse-before",
    "sse-after",
    "executor-before",
    "executor-after",
    "fanout-before",
    "fanout-after",
    "serve-before",
    "serve-after",
    "testing-before",
    "testing-after",
    "faq-cookies",
    "faq-413",
    "faq-own-server",
}

SnippetRunner = Callable[..., SnippetProcess]


@pytest.fixture
def run_snippet(tmp_path: Path) -> Iterator[SnippetRunner]:
    """Start a snippet by name (``replace=`` shortens its intervals) and wait for its port."""
    started: list[SnippetProcess] = []

    def run(
        name: str, *, env: dict[str, str] | None = None, replace: dict[str, str] | None = None
    ) -> SnippetProcess:
        code = shortened(SNIPPETS[name], replace or {})
        snippet = SnippetProcess(code, tmp_path / f"{name}-{len(started)}", env=env)
        started.append(snippet)
        snippet.wait_ready()
        return snippet

    yield run
    for snippet in started:
        snippet.close()


async def fetch(
    client: AsyncHTTPClient, url: str, method: str = "GET", **kwargs: Any
) -> HTTPResponse:
    return await client.fetch(url, method=method, raise_error=False, **kwargs)


JSON = {"Content-Type": "application/json"}
READ_TIMEOUT = 30.0  # seconds: only a broken snippet ever waits that long


async def receive(conn: WebSocketClientConnection) -> str | bytes | None:
    """The next message of *conn*; a test fails, rather than hangs, when none comes."""
    return await asyncio.wait_for(conn.read_message(), READ_TIMEOUT)


def problem(response: HTTPResponse) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/problem+json", response.headers
    document: dict[str, Any] = json.loads(response.body)
    return document


def test_every_python_block_of_the_pages_is_marked_runnable_and_tested() -> None:
    for page in PAGES:
        assert len(runnable_snippets(page)) == python_fence_count(page), page
    assert len(SNIPPETS) == sum(len(runnable_snippets(page)) for page in PAGES)  # unique names
    assert set(SNIPPETS) == TESTED


# -- auth --------------------------------------------------------------------------------


async def test_auth_before_refuses_without_a_challenge(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    url = run_snippet("auth-before").url
    refused = await fetch(http_client, url + "/me")
    assert refused.code == 401
    assert "WWW-Authenticate" not in refused.headers
    assert refused.headers["Content-Type"].startswith("text/html")
    ok = await fetch(http_client, url + "/me", headers={"Authorization": "Bearer s3cr3t"})
    assert json.loads(ok.body) == {"sub": "alice"}


async def test_auth_after_answers_with_the_rfc6750_challenge(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    url = run_snippet("auth-after").url
    good = {"Authorization": "Bearer s3cr3t"}

    missing = await fetch(http_client, url + "/me")
    assert missing.code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert problem(missing)["status"] == 401
    wrong = await fetch(http_client, url + "/me", headers={"Authorization": "Bearer nope"})
    assert wrong.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'
    malformed = await fetch(http_client, url + "/me", headers={"Authorization": "Bearer a b"})
    assert malformed.code == 400
    assert json.loads((await fetch(http_client, url + "/me", headers=good)).body) == {
        "sub": "alice"
    }
    scoped = await fetch(http_client, url + "/me", "DELETE", headers=good)
    assert scoped.code == 403
    assert scoped.headers["WWW-Authenticate"] == (
        'Bearer realm="api", error="insufficient_scope", scope="admin"'
    )
    anonymous = await fetch(http_client, url + "/status")
    assert json.loads(anonymous.body) == {"up": True, "signed_in": False}
    signed_in = await fetch(http_client, url + "/status", headers=good)
    assert json.loads(signed_in.body) == {"up": True, "signed_in": True}
    assert (await fetch(http_client, url + "/me", "OPTIONS")).code == 405  # not a 401


# -- errors ------------------------------------------------------------------------------


async def test_errors_before_leaves_unmatched_urls_as_html(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    url = run_snippet("errors-before").url
    item = await fetch(http_client, url + "/items/7")
    assert item.code == 404
    assert json.loads(item.body) == {"error": "no item 7"}
    nowhere = await fetch(http_client, url + "/nowhere")
    assert nowhere.code == 404
    assert nowhere.headers["Content-Type"].startswith("text/html")


async def test_errors_after_answers_problem_json_everywhere(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    url = run_snippet("errors-after").url
    item = await fetch(http_client, url + "/items/7")
    assert item.code == 404
    assert problem(item) == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "no item 7",
        "instance": "/items/7",
        "item_id": 7,
    }
    nowhere = await fetch(http_client, url + "/nowhere")
    assert problem(nowhere)["status"] == 404
    not_allowed = await fetch(http_client, url + "/items/7", "POST", body=b"")
    assert problem(not_allowed)["status"] == 405
    assert "GET" in not_allowed.headers["Allow"]


# -- timing ------------------------------------------------------------------------------


async def test_timing_before_logs_the_token_twice(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    snippet = run_snippet("timing-before")
    response = await fetch(http_client, snippet.url + "/users/7?access_token=hunter2")
    assert response.code == 200

    def lines() -> list[str]:  # logged just after the response is sent
        return [line for line in snippet.stderr.splitlines() if "/users/7" in line]

    await eventually(lambda: len(lines()) >= 2)
    snippet.signal()
    assert len(lines()) == 2, snippet.stderr
    assert {line.split(":")[1] for line in lines()} == {"myapp.access", "tornado.access"}
    assert all("access_token=hunter2" in line for line in lines())


async def test_timing_after_writes_one_redacted_json_line(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    snippet = run_snippet("timing-after")
    response = await fetch(http_client, snippet.url + "/users/7?access_token=hunter2")
    assert response.code == 200
    request_id = response.headers["X-Request-ID"]
    assert "db;dur=" in response.headers["Server-Timing"]
    assert snippet.signal() == 0  # a clean stop: the file handler is flushed and closed

    records = [
        json.loads(line)
        for line in (snippet.directory / "access.jsonl").read_text().splitlines()
        if line
    ]
    assert len(records) == 1
    record = records[0]
    assert record["path"] == "/users/7?access_token=REDACTED"
    assert (record["status"], record["request_id"], record["handler"]) == (
        200,
        request_id,
        "UserHandler",
    )
    assert record["spans"]["db"] >= 10.0
    assert "tornado.access" not in snippet.stderr
    everything = snippet.stdout + snippet.stderr + json.dumps(records)
    assert "hunter2" not in everything


# -- heartbeat ---------------------------------------------------------------------------

HEARTBEAT_BEFORE = {
    "PING_EVERY_MS = 10_000": "PING_EVERY_MS = 100",
    "DEAD_AFTER = 30.0": "DEAD_AFTER = 0.5",
}
HEARTBEAT_AFTER = {
    "heartbeat_interval = 10.0": "heartbeat_interval = 0.2",
    "heartbeat_timeout = 20.0": "heartbeat_timeout = 0.4",
}


async def _dead_peer_close_code(snippet: SnippetProcess) -> int | None:
    """The close code a silent peer gets; a live client beside it stays connected."""
    live = await ws_connect(snippet.url + "/echo")
    try:
        code, pings = await asyncio.wait_for(
            silent_websocket_client(snippet.port, "/echo"), READ_TIMEOUT
        )
        assert pings >= 1
        await live.write_message("still here")  # it answered the same pings
        assert await receive(live) == "still here"
    finally:
        live.close()
    return code


async def test_heartbeat_before_closes_a_dead_peer_without_a_code(
    run_snippet: SnippetRunner,
) -> None:
    snippet = run_snippet("heartbeat-before", replace=HEARTBEAT_BEFORE)
    assert await _dead_peer_close_code(snippet) is None


async def test_heartbeat_after_closes_a_dead_peer_with_1011(run_snippet: SnippetRunner) -> None:
    snippet = run_snippet("heartbeat-after", replace=HEARTBEAT_AFTER)
    assert await _dead_peer_close_code(snippet) == 1011


# -- rooms -------------------------------------------------------------------------------


async def test_rooms_before_reaches_the_other_member(run_snippet: SnippetRunner) -> None:
    url = run_snippet("rooms-before").url + "/chat/lobby"
    alice, bob = await ws_connect(url), await ws_connect(url)
    try:
        await alice.write_message("hi")
        assert await receive(bob) == "hi"
    finally:
        alice.close()
        bob.close()


async def _chat_across(alice_url: str, bob_url: str) -> None:
    """Alice and Bob join the lobby; each gets the other's message, never their own."""
    alice, bob = (
        await ws_connect(alice_url + "/chat/lobby"),
        await ws_connect(bob_url + "/chat/lobby"),
    )
    try:
        for conn in (alice, bob):
            assert json.loads(await receive(conn) or "") == {"joined": "lobby"}
        await alice.write_message("hi")
        assert await receive(bob) == "hi"
        await bob.write_message("ho")
        assert await receive(alice) == "ho"  # not "hi": the sender was skipped
    finally:
        alice.close()
        bob.close()


async def test_rooms_after_broadcasts_to_the_others_but_not_the_sender(
    run_snippet: SnippetRunner,
) -> None:
    url = run_snippet("rooms-after").url
    await _chat_across(url, url)


@pytest.mark.redis
@pytest.mark.slow
async def test_rooms_after_spans_two_instances_through_redis(
    run_snippet: SnippetRunner, redis_url: str
) -> None:
    first = run_snippet("rooms-after", env={"REDIS_URL": redis_url})
    second = run_snippet("rooms-after", env={"REDIS_URL": redis_url})
    await _chat_across(first.url, second.url)
    assert first.signal() == 0
    assert second.signal() == 0


# -- SSE ---------------------------------------------------------------------------------


async def _first_event_while_posting(
    url: str, http_client: AsyncHTTPClient, body: bytes, last_event_id: str
) -> Any:
    """Read one event after *last_event_id* while *body* is posted to /news again and again."""
    reader = asyncio.ensure_future(
        read_sse(url + "/feed", count=1, timeout=20, headers={"Last-Event-ID": last_event_id})
    )
    try:
        while not reader.done():
            await fetch(http_client, url + "/news", "POST", body=body)
            await asyncio.sleep(0.1)
    finally:
        events = await reader
    return events[0]


async def test_sse_before_ignores_last_event_id(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    url = run_snippet("sse-before").url
    for body in (b"one", b"two"):  # published while the client is away
        assert (await fetch(http_client, url + "/news", "POST", body=body)).code == 200
    event = await _first_event_while_posting(url, http_client, b"line one\nline two", "1")
    assert int(event.id) >= 3  # "two" (id 2) is lost
    assert event.data == "line one"  # and the second line of the text too


async def test_sse_after_resumes_after_last_event_id(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    url = run_snippet("sse-after").url
    ids = []
    for headline in ("one", "two"):  # published while the client is away
        response = await fetch(
            http_client,
            url + "/news",
            "POST",
            body=json.dumps({"headline": headline}),
            headers=JSON,
        )
        assert response.code == 200, response.body
        ids.append(json.loads(response.body)["id"])
    resumed = await read_sse(url + "/feed", count=1, timeout=20, headers={"Last-Event-ID": ids[0]})
    assert (resumed[0].id, json.loads(resumed[0].data)) == (ids[1], {"headline": "two"})

    countdown = await read_sse(url + "/countdown", count=3, timeout=20)
    assert [(e.event, e.id, e.data) for e in countdown] == [
        ("tick", str(n), f"{n}...\nstill counting") for n in (3, 2, 1)
    ]
    bad = await fetch(http_client, url + "/news", "POST", body=b"\xff not json", headers=JSON)
    assert problem(bad)["status"] == 400


# -- executor ----------------------------------------------------------------------------


async def _five_at_once(url: str, http_client: AsyncHTTPClient) -> list[HTTPResponse]:
    return list(
        await asyncio.gather(
            *(fetch(http_client, url + "/report", request_timeout=60) for _ in range(5))
        )
    )


async def test_executor_before_queues_every_request(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    responses = await _five_at_once(run_snippet("executor-before").url, http_client)
    assert [r.code for r in responses] == [200] * 5


async def test_executor_after_refuses_the_excess_with_503_and_retry_after(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    responses = await _five_at_once(run_snippet("executor-after").url, http_client)
    assert sorted(r.code for r in responses) == [200, 200, 200, 200, 503]
    refused = next(r for r in responses if r.code == 503)
    assert refused.headers["Retry-After"] == "1"
    assert problem(refused)["status"] == 503
    accepted = next(r for r in responses if r.code == 200)
    assert json.loads(accepted.body) == {"report": "report"}


# -- fan-out -----------------------------------------------------------------------------


async def test_fanout_before_fails_the_page_when_one_upstream_fails(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    response = await fetch(http_client, run_snippet("fanout-before").url + "/dashboard")
    assert response.code == 500


async def test_fanout_after_marks_the_failed_upstream_unavailable(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    response = await fetch(http_client, run_snippet("fanout-after").url + "/dashboard")
    assert response.code == 200
    assert json.loads(response.body) == {
        "profile": {"name": "Alice"},
        "orders": {"unavailable": True},
    }


# -- serve -------------------------------------------------------------------------------


async def _pid_answering(url: str, http_client: AsyncHTTPClient) -> int:
    response = await fetch(http_client, url + "/")
    assert response.code == 200
    pid: int = json.loads(response.body)["pid"]
    return pid


async def _served_by_workers(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient, name: str
) -> SnippetProcess:
    """Start snippet *name*; return it once a forked worker answers and two processes run."""
    snippet = run_snippet(name)
    assert await _pid_answering(snippet.url, http_client) != snippet.proc.pid
    for _ in range(500):
        if len(snippet.processes()) >= 2:
            return snippet
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than 2 processes: {snippet.processes()}")


@pytest.mark.slow
async def test_serve_before_leaves_its_children_serving_after_sigterm(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    snippet = await _served_by_workers(run_snippet, http_client, "serve-before")
    assert snippet.signal() == -signal.SIGTERM  # the parent dies at once
    assert snippet.processes() != []  # its children are orphans...
    assert await _pid_answering(snippet.url, http_client) != snippet.proc.pid  # ...and serve


@pytest.mark.slow
async def test_serve_after_stops_every_worker_on_sigterm(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    snippet = await _served_by_workers(run_snippet, http_client, "serve-after")
    assert await asyncio.to_thread(snippet.signal) == 0
    assert snippet.processes() == []


# -- testing -----------------------------------------------------------------------------


def test_testing_before_passes_as_a_unittest_class(tmp_path: Path) -> None:
    project = write_layout(tmp_path, "bare")
    (project / "test_before.py").write_text(SNIPPETS["testing-before"])
    if tornado.version_info < (6, 3):
        # Tornado 6.2's AsyncTestCase cannot be collected by the pytest this
        # suite runs (it wraps the "runTest" method pytest instantiates it
        # with): on 6.2 such classes ran under unittest, as here.
        result = subprocess.run(
            [sys.executable, "-m", "unittest", "-v", "test_before"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert "Ran 2 tests" in result.stderr
        return
    assert_passed(run_pytest(sys.executable, project, "test_before.py"), 2)


def test_testing_after_passes_with_the_plugin_fixtures(tmp_path: Path) -> None:
    project = write_layout(tmp_path, "bare")
    (project / "test_after.py").write_text(SNIPPETS["testing-after"])
    assert_passed(run_pytest(sys.executable, project, "test_after.py"), 4)


# -- FAQ ---------------------------------------------------------------------------------


async def test_faq_cookie_session_and_bearer_token_in_one_app(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    # The page uses Tornado 6.3's names; 6.2 calls them get/set_secure_cookie.
    old_names = (
        {"get_signed_cookie(": "get_secure_cookie(", "set_signed_cookie(": "set_secure_cookie("}
        if tornado.version_info < (6, 3)
        else {}
    )
    url = run_snippet("faq-cookies", replace=old_names).url
    login = await fetch(
        http_client, url + "/login", "POST", body=json.dumps({"user": "alice"}), headers=JSON
    )
    assert login.code == 200
    token = json.loads(login.body)["token"]
    cookie = login.headers["Set-Cookie"].split(";")[0]
    assert cookie.startswith("session=")
    assert token not in cookie  # signed, not the bare session id

    by_cookie = await fetch(http_client, url + "/me", headers={"Cookie": cookie})
    assert json.loads(by_cookie.body) == {"sub": "alice"}
    by_token = await fetch(http_client, url + "/me", headers={"Authorization": f"Bearer {token}"})
    assert json.loads(by_token.body) == {"sub": "alice"}
    neither = await fetch(http_client, url + "/me")
    assert neither.code == 401
    assert neither.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    forged = await fetch(http_client, url + "/me", headers={"Cookie": "session=" + token})
    assert forged.code == 401  # an unsigned cookie is no session
    bad_token_good_cookie = await fetch(
        http_client, url + "/me", headers={"Cookie": cookie, "Authorization": "Bearer expired"}
    )
    assert bad_token_good_cookie.code == 401
    assert 'error="invalid_token"' in bad_token_good_cookie.headers["WWW-Authenticate"]
    no_name = await fetch(
        http_client, url + "/login", "POST", body=json.dumps({"user": 7}), headers=JSON
    )
    assert problem(no_name)["status"] == 400


async def test_faq_413_comes_from_the_route_limit_then_the_server_limit(
    run_snippet: SnippetRunner, http_client: AsyncHTTPClient
) -> None:
    url = run_snippet("faq-413").url
    two_mib = json.dumps({"text": "x" * (2 * 1024 * 1024)})

    small = await fetch(http_client, url + "/notes", "POST", body=two_mib, headers=JSON)
    assert small.code == 413
    assert problem(small)["detail"] == "the request body exceeds 1048576 bytes"
    large = await fetch(http_client, url + "/documents", "POST", body=two_mib, headers=JSON)
    assert json.loads(large.body) == {"fields": 1}

    too_large = await http_client.fetch(
        HTTPRequest(
            url + "/documents",
            method="POST",
            body=b"x" * (9 * 1024 * 1024),
            headers=JSON,
            expect_100_continue=True,  # as curl does: the server answers before the body
        ),
        raise_error=False,
    )
    assert too_large.code == 413
    assert problem(too_large)["detail"] == (
        "the request body (9437184 bytes) is larger than the limit of 8388608 bytes"
    )


async def test_faq_own_http_server_closes_websockets_with_1001(
    run_snippet: SnippetRunner,
) -> None:
    snippet = run_snippet("faq-own-server")
    conn = await ws_connect(snippet.url + "/echo")
    try:
        await conn.write_message("hi")
        assert await receive(conn) == "hi"
        snippet.proc.send_signal(signal.SIGTERM)
        assert await receive(conn) is None
        assert conn.close_code == 1001
    finally:
        conn.close()
    assert await asyncio.to_thread(snippet.proc.wait, 30) == 0
