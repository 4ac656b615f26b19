"""Bearer-token auth for HTTP handlers and a WebSocket, in one file.

Run it::

    python examples/01_token_auth.py --port 8888

It prints two signed demo tokens (a reader and an admin). Then::

    curl -i localhost:8888/hello                          # anonymous welcome
    curl -i localhost:8888/me                             # 401 + WWW-Authenticate
    curl -i -H "Authorization: Bearer $READER" localhost:8888/me
    curl -i -H "Authorization: Bearer $READER" localhost:8888/admin   # 403
    curl -i -H "Authorization: Bearer $ADMIN" localhost:8888/admin

A browser cannot set headers on a WebSocket, so the socket takes the token as
the ``access_token`` query argument: ``ws://localhost:8888/echo?access_token=...``
(the value never appears in the logs).

Set ``TOKEN_SECRET`` (at least 16 characters) to keep tokens valid across
restarts; otherwise a random secret is made at start-up.
"""

from __future__ import annotations

import functools
import os
import secrets
from typing import Any

from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

from tornado_kit import (
    JSONErrorMixin,
    SignedTokenVerifier,
    TokenAuthMixin,
    allow_anonymous,
    require_scopes,
    serve,
)


class HelloHandler(TokenAuthMixin, JSONErrorMixin, RequestHandler):
    @allow_anonymous
    def get(self) -> None:
        user = self.current_user
        self.write({"hello": user["sub"] if user else "stranger"})


class MeHandler(TokenAuthMixin, JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        self.write({"sub": self.current_user["sub"], "scope": self.current_user["scope"]})


class AdminHandler(TokenAuthMixin, JSONErrorMixin, RequestHandler):
    @require_scopes("admin")
    def get(self) -> None:
        self.write({"admin": True, "sub": self.current_user["sub"]})


class EchoSocket(TokenAuthMixin, WebSocketHandler):
    def open(self) -> None:
        self.write_message(f"hello {self.current_user['sub']}")

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message, binary=isinstance(message, bytes))


def make_app(verifier: SignedTokenVerifier, **settings: Any) -> Application:
    return Application(
        [
            ("/hello", HelloHandler),
            ("/me", MeHandler),
            ("/admin", AdminHandler),
            ("/echo", EchoSocket),
        ],
        token_verifier=verifier,
        auth_realm="example",
        **settings,
    )


if __name__ == "__main__":
    from _run import parse_args  # examples/_run.py: --port, --address, logging

    args = parse_args(__doc__)
    secret = os.environ.get("TOKEN_SECRET") or secrets.token_urlsafe(32)
    verifier = SignedTokenVerifier(secret, max_age=3600)
    print("READER=" + verifier.issue({"sub": "reader", "scope": "read"}), flush=True)
    print("ADMIN=" + verifier.issue({"sub": "admin", "scope": "read admin"}), flush=True)
    app_factory = functools.partial(make_app, verifier)
    serve(app_factory, port=args.port, address=args.address)  # until SIGTERM or Ctrl-C
