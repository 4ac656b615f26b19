"""Bearer-token authentication (RFC 6750) for handlers and WebSocket handshakes (private).

:class:`TokenAuthMixin` checks the token in ``prepare()``, before any verb
method runs, and answers with the RFC 6750 §3 challenge when it cannot
accept the request (the protocol's rules are in ``_bearer``). The markers
:func:`allow_anonymous` and :func:`require_scopes` say what a verb method
needs. A token is checked by a *verifier* from the ``token_verifier``
setting (or the class attribute of that name): a callable
``token -> user | None``, or an object with such a ``verify`` method, sync
or async (the provided ones are in ``_verifiers``).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from tornado.web import RequestHandler

from tornado_kit._access import AccessHooks
from tornado_kit._apierror import APIErrorHeadersMixin
from tornado_kit._bearer import (
    DEFAULT_QUERY_ARGUMENT,
    SCOPE_TOKEN,
    auth_error,
    check_scopes,
    header_token,
    query_token,
)
from tornado_kit._checks import setting, wrong_kind
from tornado_kit._lifecycle import state_for
from tornado_kit._redact import DEFAULT_SECRET_NAMES, class_secret_names, install
from tornado_kit._settings import resolve
from tornado_kit._verifiers import User

__all__ = [
    "DEFAULT_EXEMPT_METHODS",
    "TokenAuthMixin",
    "allow_anonymous",
    "require_scopes",
]

log = logging.getLogger("tornado_kit.auth")

DEFAULT_EXEMPT_METHODS: frozenset[str] = frozenset({"OPTIONS"})

_ANONYMOUS_ATTR = "_tornado_kit_allow_anonymous"
_SCOPES_ATTR = "_tornado_kit_required_scopes"
# AppState.resource key of the "no token_verifier" warning (once per application).
_WARNED_KEY = "tornado_kit.auth:no_verifier_warned"
# Per-class cache of the verb-method markers, in the class's own __dict__.
_MARKERS_ATTR = "_tk_auth_verb_markers"

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", bound=RequestHandler)


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
        if not isinstance(scope, str) or not SCOPE_TOKEN.fullmatch(scope):
            raise ValueError(f"invalid scope {scope!r} (RFC 6749 §3.3 scope-token)")
    required = tuple(dict.fromkeys(scopes))

    def decorate(method: Callable[Concatenate[H, P], R]) -> Callable[Concatenate[H, P], R]:
        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            async def async_wrapper(self: H, *args: P.args, **kwargs: P.kwargs) -> Any:
                check_scopes(self, required)
                return await cast("Callable[..., Awaitable[Any]]", method)(self, *args, **kwargs)

            wrapper = async_wrapper
        else:

            @functools.wraps(method)
            def sync_wrapper(self: H, *args: P.args, **kwargs: P.kwargs) -> R:
                check_scopes(self, required)
                return method(self, *args, **kwargs)

            wrapper = sync_wrapper
        inner: tuple[str, ...] = getattr(method, _SCOPES_ATTR, ())
        setattr(wrapper, _SCOPES_ATTR, tuple(dict.fromkeys(inner + required)))
        return cast("Callable[Concatenate[H, P], R]", wrapper)

    return decorate


# -- the mixin -----------------------------------------------------------------


class TokenAuthMixin(APIErrorHeadersMixin, AccessHooks):
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
    ``headers``; :class:`~tornado_kit.APIErrorHeadersMixin` (a base of this
    mixin) applies it, so the challenge reaches the client with or without
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
        token = header_token(self)
        if not self.request.query:
            return token  # no query string, no query token
        name = resolve(self, "auth_query_argument", DEFAULT_QUERY_ARGUMENT)
        if name and name.lower() not in DEFAULT_SECRET_NAMES:
            state_for(self.application)  # its creation installs the app's names
        return query_token(self, name, token)

    def _call_verifier(self, token: str) -> Any:
        """The ``token_verifier``'s answer: a user, ``None``, or an awaitable of one.

        :raises TypeError: when the verifier is neither callable nor has a
            callable ``verify`` (a 500 for the client, logged by Tornado).
        """
        verifier: Any = resolve(self, "token_verifier", cast("Any", None))
        if verifier is None:
            state_for(self.application).resource(_WARNED_KEY, _warn_no_verifier)
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
            raise auth_error(self, 401, "authentication required")
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
            raise auth_error(self, 401, "the access token is invalid or expired", "invalid_token")
        self.current_user = user
        if scopes:
            check_scopes(self, scopes)


def _warn_no_verifier() -> bool:
    log.warning("tornado-kit: no token_verifier is configured, every token is rejected")
    return True


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
