"""Secret query values kept out of every log record.

One list of secret names (:data:`DEFAULT_SECRET_NAMES`, plus the names an
application or a handler class adds) and one rule for spotting them: a query
argument whose name, percent- and ``+``-decoded the way Tornado decodes it
and compared case-insensitively, is a secret name has its value replaced by
``REDACTED``. The rule is applied in two places:

* where tornado-kit builds a log line itself, to the URI before it is logged:
  :func:`loggable_uri` (``TimingMixin``'s access record, the WebSocket
  runtime's lines) and the public :func:`redact_query` (exported as
  ``tornado_kit.redact_query``);
* to every record of Tornado's own loggers, by :class:`QueryRedactionFilter`:
  the access line of every handler without ``TimingMixin``, the warnings of
  ``log_exception``, the "Uncaught exception" line with its request repr and
  traceback. Tornado builds those lines itself, from ``request.uri``, so the
  rendered text is what can be redacted. The filter is on tornado-kit's own
  loggers too, for the tracebacks of application code they log.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

from tornado_kit._settings import resolve

#: Written instead of a secret query value. Plain letters, so the redacted
#: URI is still a valid RFC 3986 URI ("[" and "]" are not allowed in a query).
REDACTED = "REDACTED"

#: Query argument names whose values never reach a log record (lower case):
#: DESIGN.md's default ``redact_query_arguments`` and 0.1's list. Names from
#: the ``redact_query_arguments`` setting or class attribute and the
#: ``auth_query_argument`` name are added to these, never replace them.
DEFAULT_SECRET_NAMES = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth",
        "authorization",
        "client_secret",
        "code",
        "id_token",
        "key",
        "passwd",
        "password",
        "refresh_token",
        "secret",
        "sig",
        "signature",
        "token",
    }
)

#: The loggers :class:`QueryRedactionFilter` is put on: Tornado's
#: (``tornado.log``: ``access_log``, ``app_log``, ``gen_log``), and
#: tornado-kit's own, whose lines can carry the traceback of an exception
#: raised by application code (an ``on_finish`` override, an executor job, a
#: shutdown callback) and so a URI in its message. Not ``tornado_kit.access``:
#: its records are built redacted, one per request.
FILTERED_LOGGERS = tuple(
    logging.getLogger(name)
    for name in (
        "tornado.access",
        "tornado.application",
        "tornado.general",
        "tornado_kit",
        "tornado_kit.auth",
        "tornado_kit.errors",
        "tornado_kit.executor",
        "tornado_kit.redis",
        "tornado_kit.server",
        "tornado_kit.sse",
        "tornado_kit.timing",
        "tornado_kit.websocket",
    )
)

# A name in rendered text: the run of characters before "=" that holds no
# space, "&", "=" or "?" ("mytoken=" is not "token="). It is read backwards
# from each "=", in the reversed text: str.find and one anchored match per
# "=" instead of a regex trying every position of a long traceback. ASCII:
# "\xa0" is a character Tornado accepts in a request target (obs-text), not
# a space.
_NAME_BACKWARDS = re.compile(r"[^\s&=?]*", re.ASCII)
# The run may start with the quotes and brackets of a repr, a sentence or
# source code ("uri='/p?", "verify(token="): its part after the last of
# those is a candidate name too (the whole run is one for "filter[key]").
_SOFT_DELIMITER = re.compile(r"""[/\\'"()<>\[\]{},;:]""")
# A value runs to the next "&" or space (a request target holds neither
# spaces nor CR/LF, so Tornado's lines end it there)...
_VALUE_END = re.compile(r"[ \r\n&]")
# ...less the closing quotes and brackets of the repr or text around it
# (``uri='/p?token=abc', version=...``): a value made of those only is empty.
_CLOSING = "'\")]}>,"

_EXCEPTION_FORMATTER = logging.Formatter()


def is_secret(name: str, names: Collection[str]) -> bool:
    """True when query argument *name* (as written) is one of *names* (lower case)."""
    return unquote_plus(name, encoding="latin-1").lower() in names


def redact_query_string(query: str, names: Collection[str]) -> str:
    """Return *query* (no ``?``) with the values of the arguments *names* replaced.

    *names* must be lower case. A matching argument becomes
    ``name=REDACTED`` with the name as it was written; an argument with an
    empty value (``token=``, or ``token`` with no ``=``) carries no secret and
    is kept. Everything else is kept byte for byte.
    """
    if not names:
        return query
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        key, _, value = part.partition("=")
        if value and is_secret(key, names):
            parts[i] = f"{key}={REDACTED}"
            changed = True
    return "&".join(parts) if changed else query


def redact_text(text: str, names: Collection[str]) -> str:
    """Return *text* with the value of every ``name=value`` pair of a secret name replaced.

    For rendered log text, where a URI may sit in a sentence, a repr or a
    traceback: a value ends at ``&``, a space or a line end, less closing
    quotes and brackets (see ``_CLOSING``). Every ``name=`` is examined, also
    inside another value, so ``x=token=abc`` hides ``abc``, and a source
    line of a traceback that reads ``verify(token=token)`` shows
    ``verify(token=REDACTED)``: text has no structure to trust, so this errs
    on the side of hiding more than :func:`redact_query_string` would.
    Returns *text* itself when nothing was replaced.
    """
    equals = text.find("=")
    if equals < 0:
        return text
    backwards = text[::-1]
    size = len(text)
    pieces: list[str] = []
    copied = 0
    while equals >= 0:
        start = equals + 1
        # text[equals - 1] is backwards[size - equals]; "*" always matches.
        name = _NAME_BACKWARDS.match(backwards, size - equals)
        run = name.group()[::-1] if name else ""
        if run and (is_secret(run, names) or _is_secret_after_delimiter(run, names)):
            found = _VALUE_END.search(text, start)
            end = size if found is None else found.start()
            while end > start and text[end - 1] in _CLOSING:
                end -= 1
            if end > start:
                pieces += (text[copied:start], REDACTED)
                copied = end
                equals = text.find("=", end)
                continue
        equals = text.find("=", start)
    if not pieces:
        return text
    pieces.append(text[copied:])
    return "".join(pieces)


def _is_secret_after_delimiter(run: str, names: Collection[str]) -> bool:
    parts = _SOFT_DELIMITER.split(run)
    return len(parts) > 1 and is_secret(parts[-1], names)


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


# -- names of an application and of a handler ------------------------------------


def names_of(value: Any, what: str) -> frozenset[str]:
    """The lower-case names in a ``redact_query_arguments`` value (a str is one name).

    :raises TypeError: naming *what* when *value* is not ``None``, a str or
        an iterable of str.
    """
    if value is not None and not isinstance(value, str):
        try:
            items = list(value)
        except TypeError:
            raise TypeError(
                f"{what} must be a collection of str, not {type(value).__name__}"
            ) from None
        if not all(isinstance(item, str) for item in items):
            raise TypeError(f"{what} must be a collection of str, got {items!r}")
    return _lowered(value)


def _lowered(value: Any) -> frozenset[str]:
    # names_of without the checks (for the per-request path, which must not raise).
    if not value:
        return frozenset()
    if isinstance(value, str):
        return frozenset((value.lower(),))
    return frozenset(item.lower() for item in value if item and isinstance(item, str))


def settings_secret_names(settings: Mapping[str, Any]) -> frozenset[str]:
    """Names an application's settings add to the defaults."""
    names = names_of(settings.get("redact_query_arguments"), "redact_query_arguments")
    return names | names_of(settings.get("auth_query_argument"), "auth_query_argument")


def class_secret_names(cls: type) -> frozenset[str]:
    """Names a handler class's ``redact_query_arguments``/``auth_query_argument`` add."""
    names = names_of(getattr(cls, "redact_query_arguments", None), "redact_query_arguments")
    return names | names_of(getattr(cls, "auth_query_argument", None), "auth_query_argument")


def secret_names(handler: Any) -> frozenset[str]:
    """Lower-case names whose values *handler*'s log lines must not show.

    The defaults, plus the ``redact_query_arguments`` setting and class
    attribute and the effective ``auth_query_argument``. With no additions
    this is :data:`DEFAULT_SECRET_NAMES` itself, at the cost of a few
    lookups. Never raises (items that are not str are ignored: the settings
    and class attributes were checked when they were installed).
    """
    auth: Any = resolve(handler, "auth_query_argument", "")
    own = getattr(type(handler), "redact_query_arguments", None)
    configured = handler.settings.get("redact_query_arguments")
    if own is None and configured is None and (not auth or auth.lower() in DEFAULT_SECRET_NAMES):
        return DEFAULT_SECRET_NAMES
    return DEFAULT_SECRET_NAMES.union(_lowered(own), _lowered(configured), _lowered(auth))


def loggable_uri(handler: Any) -> str:
    """``request.path`` and the query with secrets redacted: the URI for a log line."""
    request = handler.request
    if not request.query:
        return str(request.path)
    return f"{request.path}?{redact_query_string(request.query, secret_names(handler))}"


# -- the log filter ----------------------------------------------------------------


class QueryRedactionFilter(logging.Filter):
    """Redact secret query values from every record of the logger it is on.

    The record's rendered message (``record.getMessage()``) and its
    exception text are passed through :func:`redact_text`; when something
    was replaced, ``record.msg`` becomes the redacted text (``args``
    emptied) and the traceback is kept, redacted, in ``record.exc_text``,
    which ``logging.Formatter`` (and ``JSONLinesFormatter``) print instead of
    formatting ``exc_info`` again. A record whose message has no ``=`` and
    that carries no exception is passed untouched, after one rendering.

    A logger's filters see only records created on that very logger, not
    those propagated from its children: :func:`install` puts this filter
    on each of :data:`FILTERED_LOGGERS`.
    """

    def __init__(self, names: Iterable[str] = DEFAULT_SECRET_NAMES) -> None:
        super().__init__()
        #: Lower-case secret names; replaced (never mutated) when names are added,
        #: so a record being filtered on another thread sees one whole set.
        self.names = frozenset(names)
        self._adding = threading.Lock()

    def add(self, names: Iterable[str]) -> None:
        """Redact *names* (lower case) too, from the next record on."""
        with self._adding:  # two threads adding at once: neither set is lost
            self.names = self.names.union(names)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact *record* in place; always keep it."""
        try:
            message = record.getMessage()
        except Exception:
            return True  # a broken record: the handler reports it
        if "=" not in message and not record.exc_info and not record.exc_text:
            return True
        names = self.names
        redacted = redact_text(message, names)
        if redacted is not message:
            record.msg = redacted
            record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXCEPTION_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, names)
        return True


def install(names: Iterable[str] = ()) -> None:
    """Make sure :data:`FILTERED_LOGGERS` redact the defaults and *names* (lower case).

    Idempotent: each logger gets at most one :class:`QueryRedactionFilter`
    (found by type, one instance shared by all), and *names* are added to
    the names it has.

    tornado-kit calls this when it is imported (the defaults), when a
    ``TimingMixin`` or ``TokenAuthMixin`` class is defined (its class
    attributes), and when an application's runtime state is created
    (``_lifecycle.state_for``: the first WebSocket, SSE stream, broker or
    executor, the first ``TimingMixin`` request or ``TokenAuthMixin`` query
    token with another name) or it is served by ``serve()`` or the testing
    plugin (its settings).

    An import-time install is justified: a library that promises a secret
    is in no log line cannot wait for its first handler to run (a static
    file or a plain handler may log first), and it holds no state of its
    own: the names live on the filter object, in logging's registry of
    loggers.
    """
    wanted = frozenset(names)
    filters = [_redaction_filter(logger) for logger in FILTERED_LOGGERS]
    if all(f is not None and wanted <= f.names for f in filters):
        return
    shared = next((f for f in filters if f is not None), None) or QueryRedactionFilter()
    for logger, found in zip(FILTERED_LOGGERS, filters, strict=True):
        if found is None:
            logger.addFilter(shared)
            found = shared
        found.add(wanted)


def install_for_settings(settings: Mapping[str, Any]) -> None:
    """:func:`install` the names an application's settings add."""
    install(settings_secret_names(settings))


def _redaction_filter(logger: logging.Logger) -> QueryRedactionFilter | None:
    for item in logger.filters:
        if isinstance(item, QueryRedactionFilter):
            return item
    return None
