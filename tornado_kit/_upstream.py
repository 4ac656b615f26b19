"""Concurrent fan-out to upstream HTTP services with partial results.

The seed aggregator ``await asyncio.gather(*fetches, return_exceptions=True)``
has no per-upstream timeout, no overall deadline and no record of which
upstream failed or why. :func:`fetch_all` fetches every upstream at once and
always returns one :class:`UpstreamResult` per name: a refused connection, a
timeout, a 5xx, an HTML error page or an oversized body is *a result*, never an
exception, so a page can render what it has.

Example::

    from tornado_kit import fetch_all

    results = await fetch_all(
        {"user": "http://users.internal/u/42", "orders": "http://orders.internal/u/42"},
        timeout=2.0,
    )
    if results["user"].ok:
        name = results["user"].json["name"]
    for name, result in results.items():
        if not result.ok:
            log.warning("upstream %s failed: %s", name, result.error)

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders, HTTPInputError
from tornado.simple_httpclient import HTTPTimeoutError, SimpleAsyncHTTPClient

from tornado_kit import _json
from tornado_kit._lifecycle import state_for

if TYPE_CHECKING:
    from tornado.web import Application

__all__ = ["UpstreamResult", "fetch_all", "upstream_client"]

DEFAULT_MAX_CLIENTS = 10
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024
_CLIENT_KEY = "tornado_kit.upstream:client"


@dataclass(frozen=True)
class UpstreamResult:
    """The outcome of fetching one upstream in :func:`fetch_all`.

    ``ok`` is true when the upstream answered 2xx and, unless
    ``expect_json=False``, its body is empty or valid JSON. Otherwise ``error``
    says why, in words meant for logs (it may name hosts and ports; do not
    forward it to untrusted clients verbatim).

    :ivar name: the key given to :func:`fetch_all`.
    :ivar url: the requested URL.
    :ivar ok: success as defined above.
    :ivar status: HTTP status code, or ``None`` when no response arrived.
    :ivar json: the decoded JSON body (also for non-2xx JSON answers, e.g. an
        RFC 9457 problem), or ``None``.
    :ivar error: why ``ok`` is false, else ``None``.
    :ivar elapsed: seconds from the start of this fetch to its outcome.
    :ivar body: the raw body (``b""`` when none arrived or it was too large).
    :ivar headers: the response headers, or ``None``.

    Example::

        UpstreamResult(name="users", url="http://u/", ok=False, status=None,
                       error="connection failed: [Errno 111] Connection refused")

    .. versionadded:: 0.1
    """

    name: str
    url: str
    ok: bool
    status: int | None = None
    json: Any = None
    error: str | None = None
    elapsed: float = 0.0
    body: bytes = b""
    headers: HTTPHeaders | None = None


class _BodyTooLarge(HTTPInputError):
    # An HTTPInputError so that Tornado's HTTP/1 reader closes the connection
    # quietly (any other exception from a streaming callback is logged as
    # "Uncaught exception"); the fetch then fails with "Connection closed".
    pass


def upstream_client(app: Application) -> AsyncHTTPClient:
    """Return *app*'s shared fan-out client, made on first use and closed at shutdown.

    A private :class:`~tornado.simple_httpclient.SimpleAsyncHTTPClient` (never
    Tornado's process-wide instance or its global ``configure()``) whose number
    of simultaneous connections is the ``upstream_max_clients`` setting
    (default 10) across **all** requests of the app; further fetches wait in
    its queue.

    Example::

        class Dashboard(RequestHandler):
            async def get(self) -> None:
                client = upstream_client(self.application)
                results = await fetch_all({"a": A_URL, "b": B_URL}, client=client)

    .. versionadded:: 0.1
    """

    def make() -> AsyncHTTPClient:
        max_clients = int(app.settings.get("upstream_max_clients") or DEFAULT_MAX_CLIENTS)
        return SimpleAsyncHTTPClient(force_instance=True, max_clients=max_clients)

    return state_for(app).resource(_CLIENT_KEY, make, close=_close)


def _close(client: AsyncHTTPClient) -> None:
    client.close()  # SimpleAsyncHTTPClient.close, which also closes its TCP client


async def fetch_all(
    requests: Mapping[str, str | HTTPRequest],
    *,
    timeout: float = 10.0,
    request_timeout: float | None = None,
    client: AsyncHTTPClient | None = None,
    max_clients: int = DEFAULT_MAX_CLIENTS,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    expect_json: bool = True,
) -> dict[str, UpstreamResult]:
    """Fetch every upstream concurrently; return ``{name: UpstreamResult}``.

    Never raises because of one upstream: each failure is a result with
    ``ok=False`` and an ``error``. The returned dict has the same keys, in the
    same order, as *requests*.

    :param requests: name -> URL or :class:`~tornado.httpclient.HTTPRequest`
        (method, headers, body, its own ``request_timeout`` are honoured).
    :param timeout: overall deadline in seconds. When it passes, fetches still
        waiting for a connection slot or for their answer are abandoned with
        ``error="overall timeout (…) reached"``; no task is left behind.
    :param request_timeout: per-request limit, capped by the time left before
        the overall deadline (default: the time left).
    :param client: an :class:`~tornado.httpclient.AsyncHTTPClient` to use, e.g.
        :func:`upstream_client` to bound connections across requests. By
        default a private ``SimpleAsyncHTTPClient`` is made for this call and
        closed afterwards; Tornado's shared instance and its global
        ``configure()`` are never touched.
    :param max_clients: at most this many fetches of this call run at once.
    :param max_body_size: bodies larger than this many bytes are abandoned
        while streaming (memory stays bounded) and give an error result.
    :param expect_json: decode bodies as JSON; a non-JSON ``Content-Type`` or
        invalid JSON makes the result not ``ok``. With ``False`` only the
        status decides and ``json`` stays ``None``.

    Example::

        results = await fetch_all({"a": "http://a/x", "b": HTTPRequest("http://b/y",
                                   method="POST", body=b"{}")}, timeout=1.5)
        payload = {name: r.json for name, r in results.items() if r.ok}

    .. versionadded:: 0.1
    """
    if not timeout > 0:  # also refuses NaN
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    if request_timeout is not None and not request_timeout > 0:
        raise ValueError(f"request_timeout must be positive, not {request_timeout!r}")
    if max_clients < 1:
        raise ValueError("max_clients must be at least 1")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    own_client = client is None
    http = (
        client
        if client is not None
        else SimpleAsyncHTTPClient(force_instance=True, max_clients=max_clients)
    )
    slots = asyncio.Semaphore(max_clients)
    tasks: dict[str, asyncio.Task[UpstreamResult]] = {}
    try:
        for name, request in requests.items():
            tasks[name] = asyncio.ensure_future(
                _fetch_one(
                    http,
                    slots,
                    name,
                    request,
                    deadline=deadline,
                    timeout=timeout,
                    request_timeout=request_timeout,
                    max_body_size=max_body_size,
                    expect_json=expect_json,
                )
            )
        if tasks:
            await asyncio.wait(tasks.values(), timeout=max(0.0, deadline - loop.time()))
    finally:
        leftovers = [task for task in tasks.values() if not task.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            # Let every cancelled task finish unwinding: nothing outlives the call.
            await asyncio.gather(*leftovers, return_exceptions=True)
        if own_client:
            http.close()
    results: dict[str, UpstreamResult] = {}
    for name, task in tasks.items():
        if task.cancelled():
            results[name] = UpstreamResult(
                name=name,
                url=_url_of(requests[name]),
                ok=False,
                error=f"overall timeout ({timeout:g} s) reached",
                elapsed=timeout,
            )
        else:
            results[name] = task.result()
    return results


def _url_of(request: str | HTTPRequest) -> str:
    return request.url if isinstance(request, HTTPRequest) else str(request)


async def _fetch_one(
    http: AsyncHTTPClient,
    slots: asyncio.Semaphore,
    name: str,
    request: str | HTTPRequest,
    *,
    deadline: float,
    timeout: float,
    request_timeout: float | None,
    max_body_size: int,
    expect_json: bool,
) -> UpstreamResult:
    loop = asyncio.get_running_loop()
    url = _url_of(request)
    async with slots:
        start = loop.time()
        # A slot freed just at the deadline: the fetch gets a token limit (never
        # 0, which Tornado reads as "no limit") and fetch_all cancels it anyway.
        remaining = max(deadline - start, 0.001)
        if isinstance(request, HTTPRequest):
            # The client adds headers (Host, Connection) to the request it is
            # given: work on a copy so the caller's request can be reused.
            req = copy.copy(request)
            req.headers = HTTPHeaders(request.headers)
        else:
            req = HTTPRequest(url)
        # Cap every limit by the overall deadline so that a fetch ends by itself
        # when it passes (Tornado offers no way to abort a fetch in flight).
        limit = min(x for x in (req.request_timeout, request_timeout, remaining) if x is not None)
        req.request_timeout = limit
        req.connect_timeout = min(req.connect_timeout or limit, limit)
        chunks: list[bytes] = []
        received = 0
        too_large = False
        user_callback = req.streaming_callback

        def on_chunk(chunk: bytes) -> None:
            nonlocal received, too_large
            received += len(chunk)
            if received > max_body_size:
                too_large = True
                chunks.clear()
                raise _BodyTooLarge("body too large")
            if user_callback is not None:
                user_callback(chunk)
            else:
                chunks.append(chunk)

        req.streaming_callback = on_chunk
        fetch = http.fetch(req, raise_error=False)
        try:
            # shield: if the overall deadline cancels us, the fetch still runs to
            # its own (capped) timeout and shield retrieves its outcome quietly.
            response: HTTPResponse = await asyncio.shield(fetch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return _failure(name, url, exc, too_large, limit, max_body_size, loop.time() - start)
        elapsed = loop.time() - start
    return _interpret(name, url, response, b"".join(chunks), elapsed, expect_json)


def _failure(
    name: str,
    url: str,
    exc: Exception,
    too_large: bool,
    limit: float,
    max_body_size: int,
    elapsed: float,
) -> UpstreamResult:
    if too_large:
        error = f"upstream body larger than max_body_size ({max_body_size} bytes)"
    elif isinstance(exc, HTTPTimeoutError):
        error = f"timed out after {limit:.3g} s"
    elif isinstance(exc, HTTPClientError):
        error = f"request failed: {exc}"
    elif isinstance(exc, OSError):
        error = f"connection failed: {exc}"
    else:
        error = f"request failed: {type(exc).__name__}: {exc}"
    return UpstreamResult(name=name, url=url, ok=False, error=error, elapsed=elapsed)


def _interpret(
    name: str, url: str, response: HTTPResponse, body: bytes, elapsed: float, expect_json: bool
) -> UpstreamResult:
    status = response.code
    error = None if 200 <= status < 300 else f"upstream returned HTTP {status}"
    data: Any = None
    if expect_json and body:
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type and media_type != "application/json" and not media_type.endswith("+json"):
            error = error or f"upstream returned non-JSON ({media_type})"
        else:
            try:
                data = _json.loads(body)
            except ValueError as exc:
                error = error or f"upstream returned invalid JSON: {exc}"
    return UpstreamResult(
        name=name,
        url=url,
        ok=error is None,
        status=status,
        json=data,
        error=error,
        elapsed=elapsed,
        body=body,
        headers=response.headers,
    )
