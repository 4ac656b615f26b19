"""Origin parsing and matching for :class:`~tornado_kit.AllowedOriginsMixin` (private).

An origin is ``scheme://host[:port]`` (RFC 6454 §6.1). Both the ``Origin``
header and the ``allowed_origins`` entries are normalised to
``(scheme, host, port)``: lower case, default port filled in.
"""

from __future__ import annotations

import urllib.parse
from types import MappingProxyType

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
