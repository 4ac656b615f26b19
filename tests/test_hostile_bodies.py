"""``serve()`` bounds request bodies: no request makes a server buffer more than ``max_body_size``.

Real ``python -m tornado_kit serve`` subprocesses (``tests._hostile_app``)
talked to over loopback sockets. A declared ``Content-Length`` over the limit
gets ``413 Content Too Large`` as problem+json before any body byte is read,
whatever the route and whether or not the request is authenticated; a
chunked body that grows past it is cut off. On 0.1.0 neither ``serve()`` nor
the CLI set a limit: Tornado's 100 MB applied, and three unauthenticated
90 MB POSTs grew a server by hundreds of MB.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from tornado.web import Application

from tests._hostile_app import STREAM_LIMIT
from tests.test_server import Served
from tornado_kit._draining import DEFAULT_MAX_BODY_SIZE, with_buffer_size

pytestmark = pytest.mark.slow

APP = "tests._hostile_app:make_app"
MIB = 1024 * 1024
#: Generous: the fixed server grows by a few MB at most; 0.1.0 grew by hundreds.
RSS_GROWTH_BOUND = 64 * MIB


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*args: str, argv: list[str] | None = None) -> Served:
        server = Served(tmp_path, APP, *args, argv=argv)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.close()


def _script(**serve_kwargs: Any) -> list[str]:
    """argv of a ``python -c`` that calls serve() on the hostile app with *serve_kwargs*."""
    arguments = ", ".join(f"{name}={value!r}" for name, value in serve_kwargs.items())
    # Served formats "{port}" into argv: other braces are doubled
    arguments = arguments.replace("{", "{{").replace("}", "}}")
    code = (
        "import logging; logging.basicConfig(level=logging.INFO);"
        "from tornado_kit import serve; from tests._hostile_app import make_app;"
        f"serve(make_app, port={{port}}, address='127.0.0.1', {arguments})"
    )
    return [sys.executable, "-c", code]


def _declare(port: int, path: str, length: int | str, extra: str = "") -> bytes:
    """Send only the headers of a POST declaring *length* bytes; return all the server says."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {length}\r\n{extra}\r\n"
        sock.sendall(head.encode())
        return _read_to_eof(sock)


def _read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _problem(response: bytes) -> tuple[str, dict[str, str], dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, json.loads(body)


def _post(port: int, path: str, size: int) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=b"x" * size)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _assert_413(response: bytes, path: str, declared: int, limit: int) -> None:
    status, headers, problem = _problem(response)
    assert status == "HTTP/1.1 413 Content Too Large"
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert problem == {
        "type": "about:blank",
        "title": "Content Too Large",
        "status": 413,
        "detail": f"the request body ({declared} bytes) is larger than the limit of {limit} bytes",
        "instance": path,
        "max_bytes": limit,
    }


def _send_body(port: int, path: str, size: int, *, chunked: bool = False) -> bytes:
    """POST a *size*-byte body as fast as the server takes it; what it answered, if anything.

    The server may close the connection before the body is sent: that is
    the point, and not an error here.
    """
    piece = b"x" * MIB
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
        head = f"POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{framing}\r\n\r\n"
        sock.sendall(head.encode())
        try:
            for _ in range(size // MIB):
                sock.sendall(b"%x\r\n%b\r\n" % (MIB, piece) if chunked else piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            return _read_to_eof(sock)
        except (BrokenPipeError, ConnectionResetError):
            return b""


def _rss(server: Served) -> int:
    return int(psutil.Process(server.proc.pid).memory_info().rss)


# ---------------------------------------------------------------------------
# the default limit


def test_default_limit_refuses_10_mib_plus_one_with_a_413_problem(
    served: Callable[..., Served],
) -> None:
    server = served()
    assert DEFAULT_MAX_BODY_SIZE == 10 * MIB
    response = _declare(server.port, "/echo-length", 10 * MIB + 1)
    _assert_413(response, "/echo-length", 10 * MIB + 1, 10 * MIB)
    assert "declares a 10485761-byte body, over the limit of 10485760 bytes" in server.log


def test_default_limit_accepts_10_mib_minus_one(served: Callable[..., Served]) -> None:
    server = served()
    status, body = _post(server.port, "/echo-length", 10 * MIB - 1)
    assert status == 200
    assert json.loads(body) == {"length": 10 * MIB - 1}


@pytest.mark.parametrize(
    "path", ["/private", "/nowhere?access_token=x", "/echo-length"], ids=["401", "404", "200"]
)
def test_oversized_body_is_refused_before_auth_and_routing(
    served: Callable[..., Served], path: str
) -> None:
    server = served()
    response = _declare(server.port, path, 90 * 1000 * 1000)
    _assert_413(response, path.partition("?")[0], 90 * 1000 * 1000, 10 * MIB)


def test_a_malformed_content_length_is_a_400_before_any_body_on_every_tornado(
    served: Callable[..., Served],
) -> None:
    # RFC 9110 §8.6: Content-Length = 1*DIGIT. Tornado before 6.3.3 read it
    # with int(), which takes "+5", "-1" and "1_0" and then waited for a body.
    server = served()
    for length in ("+5", "-1", "1_0", "0x10", "5 5"):
        assert _declare(server.port, "/echo-length", length) == b"HTTP/1.1 400 Bad Request\r\n\r\n"
    assert server.log.count("POST /echo-length declares a malformed Content-Length") == 5
    status, body = _post(server.port, "/echo-length", 5)  # the server is fine
    assert (status, json.loads(body)) == (200, {"length": 5})


def test_expect_100_continue_gets_the_413_and_no_continue(served: Callable[..., Served]) -> None:
    server = served()
    response = _declare(server.port, "/echo-length", 11 * MIB, "Expect: 100-continue\r\n")
    assert not response.startswith(b"HTTP/1.1 100")
    _assert_413(response, "/echo-length", 11 * MIB, 10 * MIB)


def test_ninety_megabyte_posts_do_not_grow_the_server(served: Callable[..., Served]) -> None:
    server = served()
    _post(server.port, "/echo-length", 1000)  # warm up
    before = _rss(server)
    for path in ("/private", "/private", "/private", "/nowhere", "/nowhere", "/nowhere"):
        answer = _send_body(server.port, path, 90 * MIB)
        assert not answer or answer.startswith(b"HTTP/1.1 413 ")
    assert _rss(server) - before < RSS_GROWTH_BOUND
    assert _post(server.port, "/echo-length", 10)[0] == 200  # and it still serves


def test_chunked_body_growing_past_the_limit_is_cut_off(served: Callable[..., Served]) -> None:
    server = served()
    _post(server.port, "/echo-length", 1000)
    before = _rss(server)
    for _ in range(3):
        answer = _send_body(server.port, "/echo-length", 90 * MIB, chunked=True)
        # Tornado's bare 400 then the connection closes, or a reset mid-send
        assert answer in (b"", b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert _rss(server) - before < RSS_GROWTH_BOUND
    # a chunked body within the limit goes through
    answer = _send_body(server.port, "/echo-length", 3 * MIB, chunked=True)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert answer.endswith(b'{"length": 3145728}')


# ---------------------------------------------------------------------------
# other limits


def test_cli_max_body_size_accepts_a_suffix(served: Callable[..., Served]) -> None:
    server = served("--max-body-size", "2M")
    _assert_413(
        _declare(server.port, "/echo-length", 2 * MIB + 1), "/echo-length", 2 * MIB + 1, 2 * MIB
    )
    status, body = _post(server.port, "/echo-length", 2 * MIB - 1)
    assert (status, json.loads(body)) == (200, {"length": 2 * MIB - 1})


def test_serve_max_body_size_argument(served: Callable[..., Served]) -> None:
    server = served(argv=_script(max_body_size=1000))
    _assert_413(_declare(server.port, "/echo-length", 1001), "/echo-length", 1001, 1000)
    assert _post(server.port, "/echo-length", 1000)[0] == 200


def test_http_server_options_max_body_size_wins(served: Callable[..., Served]) -> None:
    server = served(argv=_script(max_body_size=1000, http_server_options={"max_body_size": 5000}))
    assert _post(server.port, "/echo-length", 4000)[0] == 200
    _assert_413(_declare(server.port, "/echo-length", 5001), "/echo-length", 5001, 5000)


def test_streaming_handler_may_raise_its_own_limit_in_prepare(
    served: Callable[..., Served],
) -> None:
    server = served()
    status, body = _post(server.port, "/stream-big", 12 * MIB)  # over the server's 10 MiB
    assert (status, json.loads(body)) == (200, {"length": 12 * MIB})
    response = _declare(server.port, "/stream-big", STREAM_LIMIT + 1)
    _assert_413(response, "/stream-big", STREAM_LIMIT + 1, STREAM_LIMIT)


def test_an_answer_given_in_prepare_is_not_followed_by_another_response(
    served: Callable[..., Served],
) -> None:
    # A streaming handler answered already (a 401 from prepare()) when the
    # declared body turns out too large: that answer is flushed and the
    # connection closed, with no 413 (nor Tornado's 400) written after it.
    server = served()
    response = _declare(server.port, "/stream-private", 11 * MIB)
    status, _, problem = _problem(response)
    assert status == "HTTP/1.1 401 Unauthorized"
    assert problem["status"] == 401
    assert response.count(b"HTTP/1.1 ") == 1


def test_cli_rejects_a_bad_size(capsys: pytest.CaptureFixture[str]) -> None:
    from tornado_kit.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["serve", APP, "--port", "0", "--max-body-size", "1.5M"])
    assert exc.value.code == 2
    assert "argument --max-body-size: not a size: '1.5M'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "error"), [("10M", TypeError), (True, TypeError), (2.0, TypeError), (-1, ValueError)]
)
def test_serve_rejects_a_bad_max_body_size(value: object, error: type[Exception]) -> None:
    from tornado_kit import serve

    with pytest.raises(error, match=r"^max_body_size must be"):
        serve(Application, port=0, max_body_size=value)  # type: ignore[arg-type]


def test_read_buffer_fits_one_body_or_websocket_message() -> None:
    small = with_buffer_size({"max_body_size": 1000}, Application())
    assert small["max_buffer_size"] == 10 * MIB + 128 * 1024  # Tornado's WebSocket default
    big = with_buffer_size({"max_body_size": 50 * MIB}, Application())
    assert big["max_buffer_size"] == 50 * MIB + 128 * 1024
    ws = Application(websocket_max_message_size=20 * MIB)
    assert with_buffer_size({"max_body_size": MIB}, ws)["max_buffer_size"] == 20 * MIB + 128 * 1024
    explicit = {"max_body_size": MIB, "max_buffer_size": 4 * MIB}
    assert with_buffer_size(explicit, ws) == explicit
