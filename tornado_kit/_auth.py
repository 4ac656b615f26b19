"""Bearer-token authentication (RFC 6750) for handlers and WebSocket handshakes.

:class:`TokenAuthMixin` checks the token in ``prepare()``, before any verb
method runs, and answers with the RFC 6750 §3 challenge when it cannot
accept the request::

    401  WWW-Authenticate: Bearer realm="api"                       no credentials
    401  WWW-Authenticate: Bearer realm="api", error="invalid_token"    bad or expired
    400  WWW-Authenticate: Bearer realm="api", error="invalid_request"  malformed
    403  WWW-Authenticate: Bearer realm="api", error="insufficient_scope", scope="a b"

A token is checked by a *verifier* from the ``token_verifier`` setting (or the
class attribute of that name): a callable ``token -> user | None``, or an
object with such a ``verify`` method, sync or async. Three are provided:
:class:`StaticTokenVerifier` (fixed tokens, constant-time comparison),
:class:`SignedTokenVerifier` (HMAC-signed expiring tokens, no dependency) and
:class:`JWTVerifier` (PyJWT, extra ``jwt``).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import hmac
import inspect
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from tornado.web import RequestHandler

from tornado_kit import _json
from tornado_kit._checks import (
    argument,
    check_instance,
    check_number,
    check_str_sequence,
    setting,
    wrong_kind,
)
from tornado_kit._errors import APIError, APIErrorHeadersMixin
from tornado_kit._lifecycle import state_for
from tornado_kit._redact import (
    DEFAULT_SECRET_NAMES,
    class_secret_names,
    install,
    redact_query_string,
)
from tornado_kit._settings import resolve

__all__ = [
    "JWTVerifier",
    "SignedTokenVerifier",
    "StaticTokenVerifier",
    "TokenAuthMixin",
    "allow_anonymous",
    "redact_query",
    "require_scopes",
]

log = logging.getLogger("tornado_kit.auth")

#: A verified user: a mapping of claims such as ``"sub"`` and ``"scopes"``.
User = Mapping[str, Any]

DEFAULT_REALM = "api"
DEFAULT_QUERY_ARGUMENT = "access_token"
DEFAULT_EXEMPT_METHODS: frozenset[str] = frozenset({"OPTIONS"})

# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token
#                b64token    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_BEARER_CREDENTIALS = re.compile(r" +([A-Za-z0-9\-._~+/]+=*)")
# RFC 9110 §11.1 / §5.6.2: auth-scheme = token, tchar = "!" / "#" / ... / ALPHA / DIGIT
_AUTH_SCHEME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")

_ANONYMOUS_ATTR = "_tornado_kit_allow_anonymous"
_SCOPES_ATTR = "_tornado_kit_required_scopes"
_WARNED_KEY = "tornado_kit.auth:no_verifier_warned"
# Per-class cache of the verb-method markers, in the class's own __dict__.
_MARKERS_ATTR = "_tk_auth_verb_markers"

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", bound=RequestHandler)


# -- challenges ----------------------------------------------------------------


def _quote(value: str) -> str:
    """Return *value* as an RFC 9110 §5.6.4 ``quoted-string``.

    Backslash and double quote are escaped as ``quoted-pair``; control
    characters (which no ``qdtext`` may contain, and which would split the
    header) are dropped.
    """
    cleaned = "".join(ch for ch in value if ch == "\t" or (" " <= ch <= "\xff" and ch != "\x7f"))
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _challenge(realm: str, error: str | None = None, scope: Sequence[str] = ()) -> str:
    # RFC 6750 §3: challenge = "Bearer" [ 1*SP 1#auth-param ], quoted values.
    params = [f"realm={_quote(realm)}"]
    if error is not None:
        params.append(f"error={_quote(error)}")
    if scope:
        params.append(f"scope={_quote(' '.join(scope))}")
    return "Bearer " + ", ".join(params)


def _auth_error(
    handler: RequestHandler,
    status: int,
    detail: str,
    error: str | None = None,
    scope: Sequence[str] = (),
) -> APIError:
    realm = resolve(handler, "auth_realm", DEFAULT_REALM)
    extensions: dict[str, Any] = {}
    if error is not None:
        extensions["error"] = error
    if scope:
        extensions["scope"] = " ".join(scope)
    return APIError(
        status,
        detail,
        headers={"WWW-Authenticate": _challenge(realm, error, scope)},
        **extensions,
    )


def _user_scopes(user: Any) -> frozenset[str]:
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


def _check_scopes(handler: RequestHandler, required: Sequence[str]) -> None:
    """Raise the RFC 6750 §3.1 error when the current user lacks any of *required*."""
    user = handler.current_user
    if user is None:
        # No credentials at all: a plain challenge without an error code (§3.1).
        raise _auth_error(handler, 401, "authentication required")
    if not set(required) <= _user_scopes(user):
        raise _auth_error(
            handler,
            403,
            "the access token lacks a required scope",
            "insufficient_scope",
            required,
        )


# -- decorators ----------------------------------------------------------------


def allow_anonymous(method: Callable[P, R]) -> Callable[P, R]:
    """Let a verb method run without credentials.

    :class:`TokenAuthMixin` still reads a token when the request carries one:
    a valid token sets ``self.current_user``; an invalid or malformed one is
    rejected (401 ``invalid_token`` / 400 ``invalid_request``) exactly as on
    protected methods, because a client that sends a token expects it to be
    honoured and must learn that it has expired rather than silently get the
    anonymous view. Without a token ``self.current_user`` is ``None``.

    The method is returned unchanged (only marked), so sync and async methods
    and their signatures are kept. On a ``WebSocketHandler``, decorate
    ``open``.

    Example::

        class FeedHandler(TokenAuthMixin, RequestHandler):
            @allow_anonymous
            def get(self) -> None:
                self.write({"personalised": self.current_user is not None})

    .. versionadded:: 0.1
    """
    setattr(method, _ANONYMOUS_ATTR, True)
    return method


def require_scopes(
    *scopes: str,
) -> Callable[[Callable[Concatenate[H, P], R]], Callable[Concatenate[H, P], R]]:
    """Require every one of *scopes* for a verb method.

    A user whose scopes (``"scopes"`` list or OAuth-style ``"scope"`` string)
    miss one gets 403 with ``WWW-Authenticate: Bearer realm="api",
    error="insufficient_scope", scope="a b"`` (RFC 6750 §3.1); a request
    without credentials gets the plain 401 challenge, even on a method also
    marked :func:`allow_anonymous`.

    :class:`TokenAuthMixin` checks the scopes in ``prepare()`` (before the
    body of a ``@stream_request_body`` handler is read); the wrapper checks
    them again when the method is called, so a handler without the mixin
    cannot skip the check by accident. Works on sync and async methods and
    keeps their signature. On a ``WebSocketHandler``, decorate ``open``.

    Example::

        class AdminHandler(TokenAuthMixin, RequestHandler):
            @require_scopes("users:write")
            async def delete(self, user_id: str) -> None:
                ...

    :raises ValueError: when a scope is not an RFC 6749 §3.3 ``scope-token``.

    .. versionadded:: 0.1
    """
    for scope in scopes:
        if not isinstance(scope, str) or not _SCOPE_TOKEN.fullmatch(scope):
            raise ValueError(f"invalid scope {scope!r} (RFC 6749 §3.3 scope-token)")
    required = tuple(dict.fromkeys(scopes))

    def decorate(method: Callable[Concatenate[H, P], R]) -> Callable[Concatenate[H, P], R]:
        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            async def async_wrapper(self: H, *args: P.args, **kwargs: P.kwargs) -> Any:
                _check_scopes(self, required)
                return await cast("Callable[..., Awaitable[Any]]", method)(self, *args, **kwargs)

            wrapper = async_wrapper
        else:

            @functools.wraps(method)
            def sync_wrapper(self: H, *args: P.args, **kwargs: P.kwargs) -> R:
                _check_scopes(self, required)
                return method(self, *args, **kwargs)

            wrapper = sync_wrapper
        inner: tuple[str, ...] = getattr(method, _SCOPES_ATTR, ())
        setattr(wrapper, _SCOPES_ATTR, tuple(dict.fromkeys(inner + required)))
        return cast("Callable[Concatenate[H, P], R]", wrapper)

    return decorate


# -- log redaction -------------------------------------------------------------


def redact_query(uri: str, names: Collection[str] = ()) -> str:
    """Return *uri* with the values of secret query arguments replaced.

    The secret names are tornado-kit's defaults (``access_token``, ``token``,
    ``password``, ``api_key``, ``code``...) plus *names*. Names are
    compared case-insensitively after percent- and ``+``-decoding, the way
    Tornado decodes them (so ``access%5Ftoken=...`` is redacted too); a
    non-empty value becomes ``REDACTED``, and every other part of the URI is
    kept byte for byte. ``TimingMixin``'s access record and the filter on
    Tornado's loggers use the same rules. Use it for your own log lines that
    include a request URI::

        >>> redact_query("/feed?access_token=s3cr3t&session=x1&page=2", {"session"})
        '/feed?access_token=REDACTED&session=REDACTED&page=2'

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       The defaults are always redacted; *names* are added to them.
    """
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    secret = DEFAULT_SECRET_NAMES.union(name.lower() for name in names)
    return f"{path}?{redact_query_string(query, secret)}"


# -- the mixin -----------------------------------------------------------------


class TokenAuthMixin(APIErrorHeadersMixin):
    """Require an RFC 6750 bearer token before any verb method runs.

    Mix it in to the left of ``RequestHandler`` or ``WebSocketHandler`` (for
    a WebSocket the check happens at the handshake, so a refusal is a plain
    HTTP 401/400/403 response, not a WebSocket close). The token comes from
    ``Authorization: Bearer <token>`` or, when there is no bearer header, from
    the query argument named by ``auth_query_argument`` (browsers cannot set
    headers on WebSocket and EventSource requests). ``self.current_user`` is
    the verified user mapping.

    Rules:

    - Methods in ``auth_exempt_methods`` (default ``{"OPTIONS"}``, for CORS
      preflights) are not authenticated at all.
    - No credentials: 401 ``Bearer realm="api"``. An ``Authorization`` header
      with another scheme (``Basic ...``) counts as no bearer credentials, as
      RFC 6750 §3.1 says for an unsupported method: 401 without an error
      code (and the query argument is still read, so a site behind HTTP Basic
      auth can use it for WebSockets).
    - A malformed bearer header (not ``Bearer 1*SP b64token``, RFC 6750
      §2.1), a malformed query token, a token given twice or in both places
      (RFC 6750 §2): 400 ``error="invalid_request"``.
    - The verifier returns ``None``: 401 ``error="invalid_token"``.
    - A verifier that *raises* has failed, not the client: the exception
      propagates and the client gets a 500 that carries nothing from it
      (with :class:`~tornado_kit.JSONErrorMixin`, a problem+json body);
      answering 401 would tell clients to throw away good tokens during a
      verifier outage.

    Knobs (class attribute, else ``Application.settings``, else default):
    ``token_verifier`` (none: every token is invalid and a warning is logged
    once per application), ``auth_realm`` (``"api"``), ``auth_query_argument``
    (``"access_token"``; ``""`` disables the query path) and
    ``auth_exempt_methods`` (``{"OPTIONS"}``).

    Errors are raised as :class:`~tornado_kit.APIError` with the challenge in
    ``headers``; :meth:`~tornado_kit.APIErrorHeadersMixin.write_error`
    applies it, so the challenge reaches the client with or without
    ``JSONErrorMixin``. The query argument's value is
    redacted from every log line (see :func:`redact_query`): its name is
    added to tornado-kit's secret names, which the filter on Tornado's
    loggers redacts.

    Example::

        class MeHandler(TokenAuthMixin, RequestHandler):
            def get(self) -> None:
                self.write({"sub": self.current_user["sub"]})

        app = Application(
            [("/me", MeHandler)],
            token_verifier=StaticTokenVerifier({"s3cr3t": {"sub": "alice"}}),
        )

    .. versionadded:: 0.1
    """

    token_verifier: Any = None
    auth_realm: str | None = None
    auth_query_argument: str | None = None
    auth_exempt_methods: Collection[str] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A class's own auth_query_argument is a secret name from the start.
        super().__init_subclass__(**kwargs)
        install(class_secret_names(cls))

    async def prepare(self) -> None:
        """Authenticate the request, then run the next ``prepare`` in the MRO.

        Runs before every verb method (and before ``WebSocketHandler.get``
        starts the handshake). Raises :class:`~tornado_kit.APIError` to
        refuse the request; the other mixins' ``prepare`` does not run then.

        This is a coroutine: a ``prepare`` override in your handler must
        ``await super().prepare()`` (or ``return super().prepare()`` from a
        sync override). Calling ``super().prepare()`` without awaiting it
        skips authentication (Python then warns that the coroutine was never
        awaited).
        """
        pending = self._authenticate()
        if pending is not None:  # an asynchronous verifier or verify_token
            await pending
        result = super().prepare()
        if result is not None:
            await result

    async def verify_token(self, token: str) -> User | None:
        """Return the user for *token*, or ``None`` when it is not valid.

        Called from ``prepare()`` with a syntactically valid token (RFC 6750
        ``b64token``). The default calls the ``token_verifier`` (its
        ``verify`` method when it has one), awaiting the result when it is
        awaitable. Override it to look tokens up yourself; raise only for a
        server-side failure (that gives a 500), never for a bad token.
        """
        result = self._call_verifier(token)
        if _is_pending(result):
            result = await result
        return cast("User | None", result)

    # -- internals --

    def _verb_markers(self) -> tuple[bool, tuple[str, ...]]:
        """(allow anonymous, required scopes) declared on the method about to run.

        The decorators mark the functions when the class body runs, so the
        answer depends only on the class and the HTTP method: it is computed
        once per (class, method) and kept in the class's own ``__dict__``
        (not inherited: a subclass may override the verb method).
        """
        cls = type(self)
        method_name = (self.request.method or "").lower()
        cache: dict[str, tuple[bool, tuple[str, ...]]] | None = cls.__dict__.get(_MARKERS_ATTR)
        if cache is None:
            cache = {}
            setattr(cls, _MARKERS_ATTR, cache)
        markers = cache.get(method_name)
        if markers is None:
            markers = cache[method_name] = _class_verb_markers(cls, method_name)
        return markers

    def _bearer_token(self) -> str | None:
        """The token from the header or the query argument; ``None`` when absent.

        Raises the 400 ``invalid_request`` error for malformed credentials.
        """
        header_values = self.request.headers.get_list("Authorization")
        header_token: str | None = None
        if len(header_values) > 1:
            raise _auth_error(self, 400, "more than one Authorization header", "invalid_request")
        if header_values:
            value = header_values[0].strip()
            scheme, _, rest = value.partition(" ")
            if scheme.lower() == "bearer":
                match = _BEARER_CREDENTIALS.fullmatch(" " + rest if rest else "")
                if match is None:
                    # RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token
                    raise _auth_error(self, 400, "malformed Bearer credentials", "invalid_request")
                header_token = match.group(1)
            elif not _AUTH_SCHEME.fullmatch(scheme):
                # RFC 9110 §11.4: credentials = auth-scheme [ ... ]
                raise _auth_error(self, 400, "malformed Authorization header", "invalid_request")
            # else: another scheme (Basic, Digest...) carries no bearer token;
            # RFC 6750 §3.1 treats it as a request lacking credentials.

        if not self.request.query:
            return header_token  # no query string, no query token
        name = resolve(self, "auth_query_argument", DEFAULT_QUERY_ARGUMENT)
        if name and name.lower() not in DEFAULT_SECRET_NAMES:
            state_for(self.application)  # its creation installs the app's names
        raw_values = self.request.query_arguments.get(name, []) if name else []
        if not raw_values:
            return header_token
        if header_token is not None or len(raw_values) > 1:
            # RFC 6750 §2: clients MUST NOT use more than one method per request.
            raise _auth_error(
                self, 400, "the access token was given more than once", "invalid_request"
            )
        try:
            query_token = raw_values[0].decode("ascii")
        except UnicodeDecodeError:
            query_token = ""
        if not _B64TOKEN.fullmatch(query_token):
            raise _auth_error(self, 400, f"malformed {name} query argument", "invalid_request")
        return query_token

    def _call_verifier(self, token: str) -> Any:
        """The ``token_verifier``'s answer: a user, ``None``, or an awaitable of one.

        :raises TypeError: when the verifier is neither callable nor has a
            callable ``verify`` (a 500 for the client, logged by Tornado).
        """
        verifier: Any = resolve(self, "token_verifier", cast("Any", None))
        if verifier is None:
            state = state_for(self.application)
            if not state.resources.get(_WARNED_KEY):
                state.resources[_WARNED_KEY] = True
                log.warning("tornado-kit: no token_verifier is configured, every token is rejected")
            return None
        verify = getattr(verifier, "verify", None)
        if not callable(verify):
            verify = verifier
        if not callable(verify) or isinstance(verifier, type):
            raise wrong_kind(
                setting("token_verifier"),
                "a callable token -> user or an object with a callable verify(token)",
                verifier,
            )
        return verify(token)

    def _authenticate(self) -> Awaitable[None] | None:
        """Check the request; return an awaitable when the check must wait.

        Synchronous as long as it can be: with the default
        :meth:`verify_token` and a synchronous verifier no coroutine is
        created (a measurable share of the per-request cost). An overridden
        ``verify_token`` is always called and awaited.
        """
        exempt = resolve(self, "auth_exempt_methods", DEFAULT_EXEMPT_METHODS)
        method = (self.request.method or "").upper()
        if method in exempt or (
            exempt is not DEFAULT_EXEMPT_METHODS and any(m.upper() == method for m in exempt)
        ):
            return None
        anonymous, scopes = self._verb_markers()
        token = self._bearer_token()
        if token is None:
            if anonymous and not scopes:
                return None
            # RFC 6750 §3.1: no error code when the request lacks credentials.
            raise _auth_error(self, 401, "authentication required")
        if type(self).verify_token is not TokenAuthMixin.verify_token:
            return self._accept_when_verified(self.verify_token(token), scopes)
        result = self._call_verifier(token)
        if _is_pending(result):
            return self._accept_when_verified(result, scopes)
        self._accept(result, scopes)
        return None

    async def _accept_when_verified(self, pending: Awaitable[Any], scopes: tuple[str, ...]) -> None:
        self._accept(await pending, scopes)

    def _accept(self, user: Any, scopes: tuple[str, ...]) -> None:
        if user is None:
            raise _auth_error(self, 401, "the access token is invalid or expired", "invalid_token")
        self.current_user = user
        if scopes:
            _check_scopes(self, scopes)


def _is_pending(result: Any) -> bool:
    """True when a verifier returned an awaitable rather than a user or ``None``."""
    # A dict (the usual user) or None is final: skip the slower ABC check.
    return result is not None and not isinstance(result, dict) and inspect.isawaitable(result)


def _class_verb_markers(
    cls: type[RequestHandler], method_name: str
) -> tuple[bool, tuple[str, ...]]:
    methods = [getattr(cls, method_name, None)]
    if method_name == "get":
        from tornado.websocket import WebSocketHandler

        if issubclass(cls, WebSocketHandler):
            methods.append(cls.open)
    anonymous = False
    scopes: tuple[str, ...] = ()
    for method in methods:
        anonymous = anonymous or bool(getattr(method, _ANONYMOUS_ATTR, False))
        scopes += getattr(method, _SCOPES_ATTR, ())
    return anonymous, tuple(dict.fromkeys(scopes))


# -- verifiers -----------------------------------------------------------------


class StaticTokenVerifier:
    """Accept a fixed set of tokens, compared in constant time.

    Each verifier draws a random 32-byte key at construction and keeps, for
    every token, its keyed BLAKE2b MAC (RFC 7693 §2.5) in a dict; a candidate
    is MAC-ed the same way and looked up. The work done for a candidate
    depends on the secret key and not on how close the candidate is to a
    real token: an attacker who times requests learns about MAC values that
    are pseudo-random to them, so neither a token's prefix nor which entry
    matched leaks, and unlike a plain hash the MACs cannot be used for
    offline guessing. The lookup costs the same for 1 token or 10,000.
    Suited to service accounts and tests; use :class:`SignedTokenVerifier`
    or :class:`JWTVerifier` for end users.

    Example::

        verifier = StaticTokenVerifier({"s3cr3t": {"sub": "ci", "scopes": ["deploy"]}})
        app = Application(routes, token_verifier=verifier)

    :param tokens: maps each token to its user (a mapping of claims).
    :raises TypeError: when *tokens* is not a mapping of ``str`` to mappings.
    :raises ValueError: for an empty token.

    .. versionadded:: 0.1
    """

    def __init__(self, tokens: Mapping[str, User]) -> None:
        # The keyed state is set up once; each MAC starts from a copy of it.
        self._keyed = hashlib.blake2b(key=os.urandom(32), digest_size=32)
        what = argument("StaticTokenVerifier", "tokens")
        check_instance(tokens, Mapping, what, "a mapping of token (str) to user (a mapping)")
        users: dict[bytes, User] = {}
        for token, user in tokens.items():
            check_instance(token, str, f"each token of {what}", "a str")
            check_instance(user, Mapping, f"each user of {what}", "a mapping of claims")
            if not token:
                raise ValueError("StaticTokenVerifier tokens must be non-empty strings")
            users[self._mac(token)] = user
        self._users = users

    def _mac(self, token: str) -> bytes:
        mac = self._keyed.copy()
        mac.update(token.encode("utf-8", "surrogatepass"))
        return mac.digest()

    def verify(self, token: str) -> User | None:
        """Return the user of *token*, or ``None``; never raises for any string."""
        if not isinstance(token, str):
            return None  # type: ignore[unreachable]
        return self._users.get(self._mac(token))

    def __repr__(self) -> str:
        return f"StaticTokenVerifier(<{len(self._users)} tokens>)"


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class SignedTokenVerifier:
    """Issue and check HMAC-SHA256 signed, expiring tokens (no dependency).

    A token is ``tk1.<payload>.<signature>``: the payload is the base64url
    JSON object of your claims plus ``iat`` (issued at) and ``exp``
    (expires), and the signature is HMAC-SHA256 with *secret* over
    ``tk1.<payload>``, compared in constant time. It is signed, not
    encrypted: put no secrets in the claims. :meth:`verify` returns the
    claims of an authentic, unexpired token, and ``None`` for anything else
    (never raises, whatever the string).

    Example::

        signer = SignedTokenVerifier(secret=os.environ["TOKEN_SECRET"], max_age=3600)
        token = signer.issue({"sub": "alice", "scope": "read write"})
        assert signer.verify(token)["sub"] == "alice"
        app = Application(routes, token_verifier=signer)

    :param secret: the HMAC key (at least 16 bytes; 32 random bytes advised).
    :param max_age: lifetime of issued tokens in seconds; a token older than
        this is rejected even if it was issued with a later ``exp``.
    :param clock: returns the current time in seconds (for tests).
    :raises TypeError: for a *secret* that is not ``str`` or ``bytes``, a
        *max_age* that is not a number or a *clock* that is not callable.
    :raises ValueError: for a secret under 16 bytes or a *max_age* not above 0.

    .. versionadded:: 0.1
    """

    PREFIX = "tk1"
    #: Tokens longer than this are rejected without further work.
    MAX_LENGTH = 8192

    def __init__(
        self,
        secret: str | bytes,
        max_age: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        arg = functools.partial(argument, "SignedTokenVerifier")
        check_instance(secret, (str, bytes, bytearray), arg("secret"), "a str or bytes")
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(key) < 16:
            raise ValueError("SignedTokenVerifier secret must be at least 16 bytes")
        self.max_age = check_number(max_age, arg("max_age"), positive=True)
        if not callable(clock):
            raise wrong_kind(arg("clock"), "a callable returning seconds", clock)
        self._key = key
        self._clock = clock

    def _sign(self, signing_input: str) -> str:
        mac = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256)
        return _b64encode(mac.digest())

    def issue(self, claims: Mapping[str, Any], *, max_age: float | None = None) -> str:
        """Return a token carrying *claims*, valid for *max_age* (default: the verifier's).

        ``iat`` and ``exp`` are added; *claims* must be JSON-serialisable
        and may not set them.

        :raises ValueError: when *claims* contains ``iat`` or ``exp`` or
            *max_age* is not positive.
        """
        if "iat" in claims or "exp" in claims:
            raise ValueError("issue() sets 'iat' and 'exp' itself")
        lifetime = self.max_age if max_age is None else max_age
        if not _is_number(lifetime) or lifetime <= 0:
            raise ValueError("max_age must be a positive number of seconds")
        now = self._clock()
        payload = {**claims, "iat": int(now), "exp": now + lifetime}
        signing_input = f"{self.PREFIX}.{_b64encode(_json.dumps(payload))}"
        return f"{signing_input}.{self._sign(signing_input)}"

    def verify(self, token: str) -> User | None:
        """Return the claims of an authentic, unexpired *token*, else ``None``."""
        if not isinstance(token, str) or len(token) > self.MAX_LENGTH:
            return None
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != self.PREFIX:
            return None
        _, payload_b64, signature = parts
        if not (_B64URL.fullmatch(payload_b64) and _B64URL.fullmatch(signature)):
            return None
        expected = self._sign(f"{self.PREFIX}.{payload_b64}")
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
            return None
        # Only authenticated bytes are parsed from here on.
        try:
            raw = base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4))
            claims = _json.loads(raw)
        except (binascii.Error, ValueError):
            return None
        if not isinstance(claims, dict):
            return None
        iat, exp = claims.get("iat"), claims.get("exp")
        if not (_is_number(iat) and _is_number(exp)):
            return None
        now = self._clock()
        if now >= cast("float", exp) or now - cast("float", iat) >= self.max_age:
            return None
        return claims

    def __repr__(self) -> str:
        return f"SignedTokenVerifier(max_age={self.max_age})"


class JWTVerifier:
    """Check JSON Web Tokens with PyJWT (extra ``jwt``).

    :meth:`verify` returns the decoded claims of a token whose signature,
    ``exp``, ``nbf``, ``aud`` and ``iss`` check out, and ``None`` otherwise
    (any PyJWT error, or a string that is not a JWT).

    Example::

        verifier = JWTVerifier(
            public_key_pem,
            algorithms=["RS256"],
            audience="https://api.example.com",
            issuer="https://auth.example.com/",
            leeway=30,
        )
        app = Application(routes, token_verifier=verifier)

    :param key: the HMAC secret or the public key (PEM or a PyJWT key object).
    :param algorithms: accepted ``alg`` values; required, since accepting
        whatever a token claims is the classic JWT hole. ``"none"`` is refused.
    :param audience: expected ``aud`` (a string or several); when set, a
        token without a matching ``aud`` is rejected.
    :param issuer: expected ``iss``.
    :param leeway: clock skew tolerated for ``exp``/``nbf``/``iat`` (seconds or a timedelta).
    :param require: claims that must be present (default ``("exp",)``).
    :raises ImportError: when PyJWT is not installed.
    :raises TypeError: for an argument of the wrong kind, including a *key*
        that no algorithm of *algorithms* can use (an ``int``, ``None``...).
    :raises ValueError: for an empty *algorithms*, ``"none"``, an algorithm
        PyJWT does not offer here (RSA and EC ones need ``cryptography``)
        or a key the algorithm refuses (a PEM public key as an HMAC secret).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        key: Any,
        *,
        algorithms: Sequence[str],
        audience: str | Sequence[str] | None = None,
        issuer: str | None = None,
        leeway: float | datetime.timedelta = 0,
        require: Sequence[str] = ("exp",),
    ) -> None:
        try:
            import jwt
        except ImportError as exc:  # pragma: no cover - the dev environment has PyJWT
            raise ImportError("JWTVerifier needs PyJWT: pip install 'tornado-kit[jwt]'") from exc
        arg = functools.partial(argument, "JWTVerifier")
        self.algorithms = check_str_sequence(algorithms, arg("algorithms"))
        if not self.algorithms:
            raise ValueError("algorithms must be a non-empty list, e.g. ['RS256']")
        if any(alg.lower() == "none" for alg in self.algorithms):
            raise ValueError("the 'none' algorithm accepts unsigned tokens and is refused")
        _check_jwt_key(jwt, key, self.algorithms, arg("key"))
        if audience is not None and not isinstance(audience, str):
            check_str_sequence(audience, arg("audience"))
        if issuer is not None:
            check_instance(issuer, str, arg("issuer"), "a str")
        if not isinstance(leeway, datetime.timedelta):
            check_number(leeway, arg("leeway"))
        self._jwt = jwt
        self._key = key
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.require = check_str_sequence(require, arg("require"))

    def verify(self, token: str) -> User | None:
        """Return the claims of a valid *token*, else ``None``."""
        if not isinstance(token, str):
            return None  # type: ignore[unreachable]
        try:
            claims: dict[str, Any] = self._jwt.decode(
                token,
                self._key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": self.require},
            )
        except (self._jwt.PyJWTError, ValueError, TypeError) as exc:
            log.debug("JWT rejected: %s", type(exc).__name__)
            return None
        return claims

    def __repr__(self) -> str:
        return f"JWTVerifier(algorithms={self.algorithms!r})"


def _check_jwt_key(jwt: Any, key: Any, algorithms: list[str], what: str) -> None:
    """Have PyJWT prepare *key* for every algorithm, so a wrong key fails now, not per token."""
    if isinstance(key, jwt.PyJWK):
        return  # PyJWT takes the algorithm and key from the JWK itself
    for name in algorithms:
        try:
            algorithm = jwt.api_jws.get_algorithm_by_name(name)
        except NotImplementedError:
            raise ValueError(
                f"JWTVerifier() argument 'algorithms': {name!r} is not available"
                " (RSA, EC and EdDSA algorithms need the cryptography package)"
            ) from None
        try:
            algorithm.prepare_key(key)
        except TypeError:
            raise wrong_kind(
                what, f"a key {name} can use (str, bytes or a key object)", key
            ) from None
        except jwt.InvalidKeyError as exc:
            raise ValueError(f"{what} cannot be used with {name}: {exc}") from None
