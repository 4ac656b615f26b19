"""What every route of the reference app builds on: input checks and base handlers.

``BaseHandler`` gives each HTTP route JSON bodies (streamed and bounded, see
``bodies.py``), problem+json errors, timing and the access log;
``APIHandler`` adds the bearer token. The helpers validate client input and
turn it into 400 problems; every integer a client sends goes through
:func:`parse_decimal`, never a bare ``int()``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlencode

from tornado.web import RequestHandler

from examples.reference_app.bodies import BoundedBodyMixin
from examples.reference_app.store import Page, Store
from tornado_kit import APIError, JSONBodyMixin, JSONErrorMixin, TimingMixin, TokenAuthMixin

log = logging.getLogger("examples.reference_app")

#: Topic of the global live feed (chat in every room, user changes, uploads).
FEED_TOPIC = "feed"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,31}")
_ROOM_RE = re.compile(r"[A-Za-z0-9_\-]{1,32}")
# An optional minus, then ASCII digits (int() would also take "+1", " 1",
# "1_000" and other scripts' digits, and raise for more than 4,300 digits).
_DECIMAL_RE = re.compile(r"-?0*([0-9]{1,19})")
MAX_SQLITE_INT = 2**63 - 1
MAX_CHAT_TEXT = 2000
MAX_ITEM_LENGTH = 100


# -- helpers ------------------------------------------------------------


async def append_feed(
    settings: dict[str, Any], event: str, data: dict[str, Any], room: str | None = None
) -> None:
    """Append an event to the global feed (and to *room*'s feed).

    Best effort: the feed reports changes whose source of truth is elsewhere
    (the database, the chat room). When the event log is unreachable (Redis
    down) the event is dropped with a warning instead of failing a request
    whose work is already done.
    """
    event_log = settings["event_log"]
    text = json.dumps(data, separators=(",", ":"))
    try:
        await event_log.append(FEED_TOPIC, text, event=event)
        if room is not None:
            await event_log.append(f"room:{room}", text, event=event)
    except ConnectionError as exc:
        log.warning("feed event %r dropped: %s", event, exc)


async def maybe_await(value: Any) -> None:
    """Await *value* when it is awaitable (the result of a cooperative ``super()`` hook)."""
    if isinstance(value, Awaitable):
        await value


def parse_decimal(raw: str) -> int | None:
    """*raw* as an integer if it is ``-?[0-9]+`` with at most 19 significant digits, else None.

    Every integer the app takes from a client (path ids, query parameters)
    goes through here, never through a bare ``int()``: 19 digits cover
    SQLite's 64-bit integers, and nothing longer is converted.
    """
    match = _DECIMAL_RE.fullmatch(raw)
    if match is None:
        return None
    value = int(match.group(1))
    return -value if raw.startswith("-") else value


def valid_name(value: Any, field_name: str = "name") -> str:
    if not isinstance(value, str):
        raise APIError(400, f"{field_name} must be a string", field=field_name)
    name = value.strip()
    if not _NAME_RE.fullmatch(name):
        raise APIError(
            400,
            f"{field_name} must be 1-32 letters, digits, spaces, '_', '.' or '-',"
            " starting with a letter or digit",
            field=field_name,
        )
    return name


def valid_email(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 254 or value.count("@") != 1:
        raise APIError(400, "email must be null or an address like a@b.example", field="email")
    local, _, domain = value.partition("@")
    if not local or not domain or any(c.isspace() for c in value):
        raise APIError(400, "email must be null or an address like a@b.example", field="email")
    return value


def valid_room(value: str | None) -> str:
    room = "lobby" if value is None else value
    if not _ROOM_RE.fullmatch(room):
        raise APIError(400, "room must be 1-32 letters, digits, '_' or '-'", field="room")
    return room


def reject_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise APIError(400, f"unknown fields: {', '.join(unknown)}", fields=unknown)


def name_taken(name: str) -> APIError:
    return APIError(409, f"a user named {name!r} already exists", name=name)


def user_view(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user["id"],
        "name": user["name"],
        "email": user["email"],
        "created": user["created"],
        "updated": user["updated"],
    }


# -- base handlers ------------------------------------------------------


class ServedByMixin(RequestHandler):
    """Adds ``X-Served-By`` (the ``instance_name`` setting) to every response.

    Set in ``set_default_headers``, so it survives the ``clear()`` of an error
    response and is part of a WebSocket handshake's 101 response.
    """

    def set_default_headers(self) -> None:
        super().set_default_headers()
        name = self.settings.get("instance_name")
        if name:
            self.set_header("X-Served-By", name)


class BaseHandler(
    BoundedBodyMixin, JSONBodyMixin, JSONErrorMixin, TimingMixin, ServedByMixin, RequestHandler
):
    """JSON bodies and errors, timing and the access log for every HTTP route.

    Bodies are streamed and bounded by ``max_json_bytes`` (see ``bodies.py``).
    """

    def get_json_body(self, *, require_object: bool = True) -> Any:
        """The streamed body decoded as JSON (see ``JSONBodyMixin.get_json_body``)."""
        self.request.body = self.request_body()
        return super().get_json_body(require_object=require_object)

    @property
    def store(self) -> Store:
        store: Store = self.settings["store"]
        return store

    async def publish_feed(self, event: str, data: dict[str, Any]) -> None:
        """Append an event to the global live feed (best effort, see :func:`append_feed`)."""
        await append_feed(self.settings, event, data)

    def int_argument(self, name: str, default: int, *, low: int, high: int) -> int:
        """A bounded integer query argument; 400 problem details otherwise."""
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        value = parse_decimal(raw)
        if value is None:
            raise APIError(400, f"{name} must be an integer", parameter=name)
        if not low <= value <= high:
            raise APIError(400, f"{name} must be between {low} and {high}", parameter=name)
        return value

    def write_page(self, page: Page, path: str, extra: dict[str, str] | None = None) -> None:
        """Write a page as ``{"items", "next"}`` with an RFC 8288 ``Link: rel="next"``."""
        next_url = None
        if page.next_after is not None:
            query = dict(extra or {})
            query["limit"] = str(self.int_argument("limit", 20, low=1, high=100))
            query["after"] = str(page.next_after)
            next_url = f"{path}?{urlencode(query)}"
            self.set_header("Link", f'<{next_url}>; rel="next"')
        self.write_json({"items": page.items, "next": next_url})


class APIHandler(TokenAuthMixin, BaseHandler):
    """A token-protected JSON API route."""

    def user_fields(self) -> tuple[str, str | None]:
        """``(name, email)`` from a user JSON body; 400 problem details when invalid."""
        body = self.get_json_body()
        reject_unknown(body, {"name", "email"})
        return valid_name(body.get("name")), valid_email(body.get("email"))

    def user_id_from_path(self, raw: str) -> int:
        """The id of ``/api/users/<id>``; 404 beyond SQLite's integers."""
        value = parse_decimal(raw)
        if value is None or not 0 < value <= MAX_SQLITE_INT:
            raise APIError(404, "no user with that id")
        return value
