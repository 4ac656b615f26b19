"""AllowedOriginsMixin and origin parsing (private).

An origin is ``scheme://host[:port]`` (RFC 6454 §6.1). Both the ``Origin``
header and the ``allowed_origins`` entries are normalised to
``(scheme, host, port)``: lower case, default port filled in.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Collection
from types import MappingProxyType

from tornado_kit._errors import APIError
from tornado_kit._settings import resolve
from tornado_kit._ws._base import TrackedWebSocket
from tornado_kit._ws._handshake import CROSS_ORIGIN_DETAIL

__all__ = ["AllowedOriginsMixin", "parse_origin", "parse_pattern", "same_host"]

DEFAULT_PORTS = MappingProxyType({"http": 80, "https": 443, "ws": 80, "wss": 443})
HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")


def split_origin(value: str) -> tuple[str, str, int] | None:
    """``scheme://host[:port]`` -> (scheme, host, port), lower-case, default port filled."""
    if not value.isascii() or any(c.isspace() or ord(c) < 0x20 for c in value):
        return None
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS or not rest:
        return None
    if any(c in rest for c in "/?#@\\"):
        return None  # RFC 6454 §6.1: an origin has no path, query or userinfo
    try:
        parts = urllib.parse.urlsplit(f"{scheme}://{rest}")
        port = parts.port
        host = parts.hostname
    except ValueError:
        return None
    if not host:
        return None
    if rest.endswith(":"):
        return None
    if host.startswith("[") or ":" in host:
        ip = host.strip("[]")
        if not all(c in "0123456789abcdef:." for c in ip):
            return None
        host = f"[{ip}]"
    elif not set(host) <= HOST_CHARS or ".." in host or host.startswith("."):
        return None
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def parse_origin(origin: str) -> tuple[str, str, int] | None:
    """Normalised (scheme, host, port) of an ``Origin`` header, ``None`` if malformed."""
    return split_origin(origin.strip())


def parse_pattern(pattern: str) -> tuple[str, str, int, bool]:
    """(scheme, host, port, wildcard) of an ``allowed_origins`` entry."""
    if pattern == "*":
        return "*", "", 0, False
    wildcard = "://*." in pattern
    text = pattern.replace("://*.", "://", 1) if wildcard else pattern
    scheme, sep, rest = text.partition("://")
    if sep and not rest.isascii():
        try:
            host, colon, port = rest.partition(":")
            rest = host.encode("idna").decode("ascii") + colon + port
        except UnicodeError:
            pass
    parsed = split_origin(f"{scheme}{sep}{rest}")
    if parsed is None or "*" in text:
        raise ValueError(
            f"invalid allowed_origins entry {pattern!r}: use 'https://host[:port]' "
            "or 'https://*.domain'"
        )
    return parsed[0], parsed[1], parsed[2], wildcard


def same_host(origin: str, host_header: str) -> bool:
    """Tornado's rule: the origin's host[:port] equals the ``Host`` header.

    Call it only for an *origin* that :func:`parse_origin` accepted (so
    ``urlsplit`` cannot fail on it).
    """
    netloc = urllib.parse.urlsplit(origin).netloc.lower()
    return bool(netloc) and netloc == host_header.lower()


class AllowedOriginsMixin(TrackedWebSocket):
    """Accept WebSocket handshakes only from listed origins.

    ``allowed_origins`` (class attribute or application setting) holds exact
    origins (``"https://app.example.com"``) and wildcard patterns
    (``"https://*.example.com"``: any depth of subdomain, not the bare
    domain). Origins are compared after normalising case and default ports
    (``:80`` for http, ``:443`` for https); the scheme must match. ``"*"``
    allows every well-formed origin. Tornado's same-host rule still applies
    (an ``Origin`` equal to the ``Host`` is accepted), and a request without
    an ``Origin`` header (a non-browser client) is accepted, as in Tornado.

    A refused or malformed ``Origin`` gets a 403 problem document at the
    handshake (with or without :class:`~tornado_kit.JSONErrorMixin`), never
    a 500. ``"null"`` (an opaque
    origin) is never accepted by a pattern. Without ``allowed_origins``,
    Tornado's rule applies unchanged.

    Example::

        class Live(AllowedOriginsMixin, WebSocketHandler):
            allowed_origins = ["https://example.com", "https://*.example.com"]

    .. versionadded:: 0.1
    """

    allowed_origins: Collection[str] | None = None

    def _tk_origin_rules(self) -> list[tuple[str, str, int, bool]] | None:
        patterns: Collection[str] | None = resolve(self, "allowed_origins", None)
        if patterns is None:
            return None
        if isinstance(patterns, str):
            patterns = [patterns]
        return [parse_pattern(p) for p in patterns]

    def _tk_origin_refusal(self) -> APIError | None:
        rules = self._tk_origin_rules()
        origin = self.request.headers.get("Origin")
        if rules is not None and origin is not None and not self._tk_origin_ok(origin, rules):
            return APIError(403, CROSS_ORIGIN_DETAIL)
        # Then Tornado's rule, which calls check_origin (below) and guards
        # against an Origin it cannot parse.
        return super()._tk_origin_refusal()

    def check_origin(self, origin: str) -> bool:
        """Return whether *origin* may open a WebSocket (runs at the handshake)."""
        rules = self._tk_origin_rules()
        if rules is None:
            try:
                return super().check_origin(origin)
            except ValueError:  # Tornado 6.5 parses the origin unguarded
                return False
        return self._tk_origin_ok(origin, rules)

    def _tk_origin_ok(self, origin: str, rules: list[tuple[str, str, int, bool]]) -> bool:
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        scheme, host, port = parsed
        if same_host(origin, self.request.headers.get("Host", "")):
            return True
        for r_scheme, r_host, r_port, wildcard in rules:
            if r_scheme == "*":
                return True
            if r_scheme != scheme or r_port != port:
                continue
            if wildcard:
                if host.endswith("." + r_host):
                    return True
            elif host == r_host:
                return True
        return False
