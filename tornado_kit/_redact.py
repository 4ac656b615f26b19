"""Query-string redaction shared by the auth and timing modules.

One implementation serves Tornado's own log lines (``TokenAuthMixin`` swaps
``request.uri`` for a redacted copy while they are written) and
``TimingMixin``'s access record, so both show a secret the same way.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import unquote_plus

#: Written instead of a secret query value. Plain letters, so the redacted
#: URI is still a valid RFC 3986 URI ("[" and "]" are not allowed in a query).
REDACTED = "REDACTED"


def redact_query(uri: str, names: Collection[str]) -> str:
    """Return *uri* with the values of the query arguments *names* replaced.

    Names are compared case-insensitively after percent- and ``+``-decoding,
    the way Tornado decodes them (so ``access%5Ftoken=...`` and
    ``ACCESS_TOKEN=...`` are redacted too). *names* must be lower case. A
    matching argument becomes ``name=REDACTED`` with the name as it was
    written; an argument with an empty value (``token=``, or ``token`` with no
    ``=``) carries no secret and is kept. Everything else is kept byte for
    byte, except a fragment after a redacted value (a request URI has none).
    """
    path, sep, query = uri.partition("?")
    if not sep or not names:
        return uri
    return f"{path}?{redact_query_string(query, names)}"


def redact_query_string(query: str, names: Collection[str]) -> str:
    """Like :func:`redact_query` for a query string without the ``?``."""
    if not names:
        return query
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        key, _, value = part.partition("=")
        if value and unquote_plus(key, encoding="latin-1").lower() in names:
            parts[i] = f"{key}={REDACTED}"
            changed = True
    return "&".join(parts) if changed else query
