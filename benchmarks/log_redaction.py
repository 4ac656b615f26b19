"""What the redaction of secret query values costs per log record and per request.

Run::

    .venv/bin/python benchmarks/log_redaction.py [--number 20000] [--rounds 7]

Prints, in microseconds (best of the rounds, ``time.perf_counter``):

* per Tornado log record, ``logger.handle()`` to a handler that formats the
  record, with tornado-kit's filter on the logger and without it, for four
  records: an access line without a query (the fast path: no ``=``), one
  with a query and no secret, one with a secret, and an "Uncaught exception"
  record with its request repr and traceback;
* per request, ``secret_names(handler)`` (what ``TimingMixin``'s access
  record and the WebSocket runtime's lines call when the URI has a query):
  with the default names only, and with names added by the
  ``redact_query_arguments`` setting.

``TimingMixin`` handlers write no ``tornado.access`` record, so the filter
adds nothing to them; the first figures are for the other handlers.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.web import Application, RequestHandler

from tornado_kit._redact import QueryRedactionFilter, secret_names


class _Formatting(logging.Handler):
    """Formats every record (what a real handler does) and keeps nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


class _Connection:
    """Enough of a connection for a RequestHandler to be built on it."""

    def set_close_callback(self, callback: Any) -> None:
        pass


def _request(uri: str, connection: Any = None) -> HTTPServerRequest:
    return HTTPServerRequest(
        start_line=RequestStartLine("GET", uri, "HTTP/1.1"),
        headers=HTTPHeaders({"Host": "127.0.0.1:8888"}),
        connection=connection,
    )


def _records() -> dict[str, Callable[[], logging.LogRecord]]:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        exc_info = sys.exc_info()

    def access(uri: str) -> Callable[[], logging.LogRecord]:
        return lambda: logging.LogRecord(
            "bench",
            logging.INFO,
            __file__,
            1,
            "%d %s %.2fms",
            (200, f"GET {uri} (127.0.0.1)", 0.61),
            None,
        )

    uri = "/users/7?access_token=s3cr3t-t0ken&page=2"
    request = _request(uri)
    return {
        "access, no query": access("/users/7"),
        "access, query, no secret": access("/users/7?page=2&sort=name"),
        "access, query with a secret": access(uri),
        "uncaught exception": lambda: logging.LogRecord(
            "bench",
            logging.ERROR,
            __file__,
            1,
            "Uncaught exception %s\n%r",
            (f"GET {uri} (127.0.0.1)", request),
            exc_info,
        ),
    }


def _best(fn: Callable[[], Any], number: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    logger = logging.getLogger("benchmarks.log_redaction")
    logger.propagate = False
    logger.addHandler(_Formatting())
    redaction = QueryRedactionFilter()
    print(f"per record, logger.handle() + formatting, best of {args.rounds} x {args.number}:")
    for label, make in _records().items():
        number = args.number // 10 if label == "uncaught exception" else args.number
        without = _best(lambda make=make: logger.handle(make()), number, args.rounds)
        logger.addFilter(redaction)
        with_filter = _best(lambda make=make: logger.handle(make()), number, args.rounds)
        logger.removeFilter(redaction)
        print(
            f"  {label:28} {without:7.2f} us without the filter, {with_filter:7.2f} us with it"
            f" ({with_filter - without:+.2f} us)"
        )

    class Handler(RequestHandler):
        pass

    print("per request, secret_names(handler):")
    for label, settings in (
        ("default names", {}),
        ("a redact_query_arguments setting", {"redact_query_arguments": ["session_key"]}),
    ):
        app = Application([("/", Handler)], **settings)
        handler = Handler(app, _request("/?page=2", _Connection()))
        took = _best(lambda handler=handler: secret_names(handler), args.number, args.rounds)
        print(f"  {label:34} {took:6.2f} us")


if __name__ == "__main__":
    main()
