"""The bearer scheme (RFC 6750) as :class:`~tornado_kit.TokenAuthMixin` speaks it (private).

What the protocol says, apart from the mixin's policy: where a token comes
from and what it may look like (§2), and what the server answers when it
cannot accept the request (§3)::

    401  WWW-Authenticate: Bearer realm="api"                       no credentials
    401  WWW-Authenticate: Bearer realm="api", error="invalid_token"    bad or expired
    400  WWW-Authenticate: Bearer realm="api", error="invalid_request"  malformed
    403  WWW-Authenticate: Bearer realm="api", error="insufficient_scope", scope="a b"
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tornado.web import RequestHandler

from tornado_kit._apierror import APIError
from tornado_kit._settings import resolve

DEFAULT_REALM = "api"
#: The query argument a token may come in (``auth_query_argument``'s default):
#: defined here only; the redaction defaults include it.
DEFAULT_QUERY_ARGUMENT = "access_token"

# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token
#                b64token    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_BEARER_CREDENTIALS = re.compile(r" +([A-Za-z0-9\-._~+/]+=*)")
# RFC 9110 §11.1 / §5.6.2: auth-scheme = token, tchar = "!" / "#" / ... / ALPHA / DIGIT
_AUTH_SCHEME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


# -- challenges ----------------------------------------------------------------


def _quote(value: str) -> str:
    """Return *value* as an RFC 9110 §5.6.4 ``quoted-string``.

    Backslash and double quote are escaped as ``quoted-pair``; control
    characters (which no ``qdtext`` may contain, and which would split the
    header) are dropped.
    """
    cleaned = "".join(ch for ch in value if ch == "\t" or (" " <= ch <= "\xff" and ch != "\x7f"))
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(realm: str, error: str | None = None, scope: Sequence[str] = ()) -> str:
    """The ``WWW-Authenticate`` value: RFC 6750 §3 ``"Bearer" [ 1*SP 1#auth-param ]``."""
    params = [f"realm={_quote(realm)}"]
    if error is not None:
        params.append(f"error={_quote(error)}")
    if scope:
        params.append(f"scope={_quote(' '.join(scope))}")
    return "Bearer " + ", ".join(params)


def auth_error(
    handler: RequestHandler,
    status: int,
    detail: str,
    error: str | None = None,
    scope: Sequence[str] = (),
) -> APIError:
    """The :class:`~tornado_kit.APIError` that refuses *handler*'s request, challenge included."""
    realm = resolve(handler, "auth_realm", DEFAULT_REALM)
    extensions: dict[str, Any] = {}
    if error is not None:
        extensions["error"] = error
    if scope:
        extensions["scope"] = " ".join(scope)
    return APIError(
        status,
        detail,
        headers={"WWW-Authenticate": challenge(realm, error, scope)},
        **extensions,
    )


# -- scopes --------------------------------------------------------------------


def user_scopes(user: Any) -> frozenset[str]:
    """Scopes granted to *user*: ``"scopes"`` (a list) or ``"scope"`` (space-separated)."""
    if not isinstance(user, Mapping):
        return frozenset()
    scopes = user.get("scopes")
    if scopes is None:
        scopes = user.get("scope")
    if isinstance(scopes, str):
        return frozenset(scopes.split())
    if isinstance(scopes, Iterable):
        return frozenset(s for s in scopes if isinstance(s, str))
    return frozenset()


def check_scopes(handler: RequestHandler, required: Sequence[str]) -> None:
    """Raise the RFC 6750 §3.1 error when the current user lacks any of *required*."""
    user = handler.current_user
    if user is None:
        # No credentials at all: a plain challenge without an error code (§3.1).
        raise auth_error(handler, 401, "authentication required")
    if not set(required) <= user_scopes(user):
        raise auth_error(
            handler,
            403,
            "the access token lacks a required scope",
            "insufficient_scope",
            required,
        )


# -- credentials ---------------------------------------------------------------


def header_token(handler: RequestHandler) -> str | None:
    """The token of the ``Authorization: Bearer`` header; ``None`` without one.

    Raises the 400 ``invalid_request`` error for malformed credentials.
    Another scheme (Basic, Digest...) carries no bearer token: RFC 6750 §3.1
    treats it as a request lacking credentials.
    """
    values = handler.request.headers.get_list("Authorization")
    if len(values) > 1:
        raise auth_error(handler, 400, "more than one Authorization header", "invalid_request")
    if not values:
        return None
    scheme, _, rest = values[0].strip().partition(" ")
    if scheme.lower() == "bearer":
        match = _BEARER_CREDENTIALS.fullmatch(" " + rest if rest else "")
        if match is None:
            # RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token
            raise auth_error(handler, 400, "malformed Bearer credentials", "invalid_request")
        return match.group(1)
    if not _AUTH_SCHEME.fullmatch(scheme):
        # RFC 9110 §11.4: credentials = auth-scheme [ ... ]
        raise auth_error(handler, 400, "malformed Authorization header", "invalid_request")
    return None


def query_token(handler: RequestHandler, name: str, from_header: str | None) -> str | None:
    """The token of the query argument *name*, else *from_header* (the header's token).

    Raises the 400 ``invalid_request`` error for a token given more than
    once or in both places (RFC 6750 §2: one method per request), and for a
    value that is not a ``b64token``.
    """
    raw_values = handler.request.query_arguments.get(name, []) if name else []
    if not raw_values:
        return from_header
    if from_header is not None or len(raw_values) > 1:
        raise auth_error(
            handler, 400, "the access token was given more than once", "invalid_request"
        )
    try:
        token = raw_values[0].decode("ascii")
    except UnicodeDecodeError:
        token = ""
    if not _B64TOKEN.fullmatch(token):
        raise auth_error(handler, 400, f"malformed {name} query argument", "invalid_request")
    return token
