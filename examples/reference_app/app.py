"""The reference app: every tornado-kit mixin assembled into one service.

Routes (see ``docs/reference-app.md``)::

    GET  /                      the single page (static/index.html)
    POST /api/token             {"name": ...} -> {"token": ..., "user": {...}}
    GET  /api/users             paginated list (?limit=1..100&after=<id>)
    POST /api/users             create {"name", "email"?}
    GET/PUT/DELETE /api/users/<id>
    GET  /api/orders            paginated list (?user_id=&limit=&after=)
    POST /api/orders            {"item", "quantity"} for the signed-in user
    GET  /api/aggregate         users + orders fetched concurrently with fetch_all
    GET  /ws?room=..            chat over WebSocket (token in ?access_token=)
    GET  /events[?room=..]      SSE live feed with Last-Event-ID resume
    POST /api/images            raw image body -> PNG thumbnail (process pool)
    GET  /healthz, /metrics     liveness, Prometheus text

Only the public ``tornado_kit`` API is used, so this file doubles as a template.

Request bodies are bounded per route (``bodies.py``): the server's
``max_body_size`` is the JSON limit (:func:`server_options`), every JSON route
streams its body and refuses a ``Content-Length`` over ``Config.max_json_bytes``
with 413 before reading it, and the image route raises its own request's
limit to ``Config.max_image_bytes``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from tornado.httpclient import HTTPRequest
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

from examples.reference_app.bodies import BoundedBodyMixin
from examples.reference_app.images import NotAnImage, make_thumbnail
from examples.reference_app.static import IndexPage, StaticFiles
from examples.reference_app.store import Conflict, Page, Store
from tornado_kit import (
    AllowedOriginsMixin,
    APIError,
    BoundedExecutor,
    BroadcastMixin,
    ExecutorMixin,
    HeartbeatMixin,
    JSONBodyMixin,
    JSONErrorMixin,
    JSONMessageMixin,
    LocalBroker,
    MemoryEventLog,
    MetricsHandler,
    NotFoundHandler,
    PrometheusMetrics,
    SignedTokenVerifier,
    SSEMixin,
    TimingMixin,
    TokenAuthMixin,
    fetch_all,
)

log = logging.getLogger("examples.reference_app")

STATIC_DIR = Path(__file__).with_name("static")

#: Topic of the global live feed (chat in every room, user changes, uploads).
FEED_TOPIC = "feed"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,31}")
_ROOM_RE = re.compile(r"[A-Za-z0-9_\-]{1,32}")
# An optional minus, then ASCII digits (int() would also take "+1", " 1",
# "1_000" and other scripts' digits, and raise for more than 4,300 digits).
_DECIMAL_RE = re.compile(r"-?0*([0-9]{1,19})")
_MAX_SQLITE_INT = 2**63 - 1
MAX_CHAT_TEXT = 2000
MAX_ITEM_LENGTH = 100


@dataclass
class Config:
    """Everything the application factory needs; ``__main__`` fills it from the command line."""

    #: SQLite database file (created, WAL mode).
    db_path: str = "reference_app.db"
    #: Redis URL: switches to RedisBroker + RedisEventLog (processes share rooms and feeds).
    redis_url: str | None = None
    #: Origins allowed to open the chat WebSocket (empty: Tornado's same-host rule).
    allowed_origins: list[str] = field(default_factory=list)
    #: HMAC secret of the demo tokens; every process behind one load balancer needs the same.
    secret: str = ""
    token_max_age: float = 24 * 3600
    #: Base URL the aggregator uses to reach this service, e.g. ``http://127.0.0.1:8888``
    #: (``__main__`` sets it from ``--address`` / ``--port``). Never taken from a
    #: request: with neither it nor ``users_url`` / ``orders_url`` the aggregator
    #: answers 503.
    self_url: str | None = None
    users_url: str | None = None
    orders_url: str | None = None
    aggregate_timeout: float = 5.0
    #: Largest JSON request body, in bytes (413 above); also the server's ``max_body_size``.
    max_json_bytes: int = 1024 * 1024
    #: Largest accepted image upload, in bytes (413 above).
    max_image_bytes: int = 5 * 1024 * 1024
    thumbnail_size: int = 128
    #: Worker processes and waiting-job bound of the image pool (503 beyond it).
    image_workers: int = 2
    image_max_pending: int = 16
    image_executor_kind: Literal["thread", "process"] = "process"
    #: Events kept per feed topic for Last-Event-ID resume.
    feed_maxlen: int = 1000
    heartbeat_interval: float | None = None
    heartbeat_timeout: float | None = None
    sse_keepalive_interval: float | None = None
    #: When set, every response carries ``X-Served-By: <instance_name>`` (which backend answered).
    instance_name: str | None = None
    debug: bool = False
    #: Extra Application settings (tests use it for short intervals).
    extra_settings: dict[str, Any] = field(default_factory=dict)


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


async def _maybe_await(value: Any) -> None:
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


def _valid_name(value: Any, field_name: str = "name") -> str:
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


def _valid_email(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 254 or value.count("@") != 1:
        raise APIError(400, "email must be null or an address like a@b.example", field="email")
    local, _, domain = value.partition("@")
    if not local or not domain or any(c.isspace() for c in value):
        raise APIError(400, "email must be null or an address like a@b.example", field="email")
    return value


def _valid_room(value: str | None) -> str:
    room = "lobby" if value is None else value
    if not _ROOM_RE.fullmatch(room):
        raise APIError(400, "room must be 1-32 letters, digits, '_' or '-'", field="room")
    return room


def _reject_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise APIError(400, f"unknown fields: {', '.join(unknown)}", fields=unknown)


def _name_taken(name: str) -> APIError:
    return APIError(409, f"a user named {name!r} already exists", name=name)


def _user_view(user: dict[str, Any]) -> dict[str, Any]:
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
        _reject_unknown(body, {"name", "email"})
        return _valid_name(body.get("name")), _valid_email(body.get("email"))

    def user_id_from_path(self, raw: str) -> int:
        """The id of ``/api/users/<id>``; 404 beyond SQLite's integers."""
        value = parse_decimal(raw)
        if value is None or not 0 < value <= _MAX_SQLITE_INT:
            raise APIError(404, "no user with that id")
        return value


# -- routes -------------------------------------------------------------


class TokenHandler(BaseHandler):
    """``POST /api/token``: demo sign-in; the user is created on first sign-in."""

    async def post(self) -> None:
        body = self.get_json_body()
        _reject_unknown(body, {"name"})
        name = _valid_name(body.get("name"))
        with self.timed("db"):
            user, created = self.store.get_or_create_user(name)
        if created:
            await self.publish_feed("user", {"action": "created", "user": _user_view(user)})
        verifier: SignedTokenVerifier = self.settings["token_verifier"]
        token = verifier.issue({"sub": user["name"], "uid": user["id"]})
        self.set_status(201 if created else 200)
        self.write_json({"token": token, "user": _user_view(user)})


class UsersHandler(APIHandler):
    """``GET /api/users`` (paginated), ``POST /api/users``."""

    async def get(self) -> None:
        limit = self.int_argument("limit", 20, low=1, high=100)
        after = self.int_argument("after", 0, low=0, high=_MAX_SQLITE_INT)
        with self.timed("db"):
            page = self.store.list_users(limit=limit, after=after)
        self.write_page(Page([_user_view(u) for u in page.items], page.next_after), "/api/users")

    async def post(self) -> None:
        name, email = self.user_fields()
        try:
            with self.timed("db"):
                user = self.store.create_user(name, email)
        except Conflict:
            raise _name_taken(name) from None
        await self.publish_feed("user", {"action": "created", "user": _user_view(user)})
        self.set_status(201)
        self.set_header("Location", f"/api/users/{user['id']}")
        self.write_json(_user_view(user))


class UserHandler(APIHandler):
    """``GET/PUT/DELETE /api/users/<id>``."""

    async def get(self, raw_id: str) -> None:
        user_id = self.user_id_from_path(raw_id)
        with self.timed("db"):
            user = self.store.get_user(user_id)
        if user is None:
            raise APIError(404, f"no user with id {user_id}")
        self.write_json(_user_view(user))

    async def put(self, raw_id: str) -> None:
        user_id = self.user_id_from_path(raw_id)
        name, email = self.user_fields()
        try:
            with self.timed("db"):
                user = self.store.update_user(user_id, name, email)
        except Conflict:
            raise _name_taken(name) from None
        if user is None:
            raise APIError(404, f"no user with id {user_id}")
        await self.publish_feed("user", {"action": "updated", "user": _user_view(user)})
        self.write_json(_user_view(user))

    async def delete(self, raw_id: str) -> None:
        user_id = self.user_id_from_path(raw_id)
        with self.timed("db"):
            deleted = self.store.delete_user(user_id)
        if not deleted:
            raise APIError(404, f"no user with id {user_id}")
        await self.publish_feed("user", {"action": "deleted", "user": {"id": user_id}})
        self.set_status(204)


class OrdersHandler(APIHandler):
    """``GET /api/orders`` (paginated, ``?user_id=``), ``POST /api/orders``."""

    async def get(self) -> None:
        limit = self.int_argument("limit", 20, low=1, high=100)
        after = self.int_argument("after", 0, low=0, high=_MAX_SQLITE_INT)
        user_id: int | None = None
        extra: dict[str, str] = {}
        if self.get_query_argument("user_id", None) is not None:
            user_id = self.int_argument("user_id", 0, low=1, high=_MAX_SQLITE_INT)
            extra["user_id"] = str(user_id)
        with self.timed("db"):
            page = self.store.list_orders(limit=limit, after=after, user_id=user_id)
        self.write_page(page, "/api/orders", extra)

    async def post(self) -> None:
        body = self.get_json_body()
        _reject_unknown(body, {"item", "quantity"})
        item = body.get("item")
        if not isinstance(item, str) or not item.strip() or len(item) > MAX_ITEM_LENGTH:
            raise APIError(400, f"item must be a string of 1-{MAX_ITEM_LENGTH} characters")
        quantity = body.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 999:
            raise APIError(400, "quantity must be an integer from 1 to 999")
        uid = self.current_user.get("uid")
        with self.timed("db"):
            user = self.store.get_user(uid) if isinstance(uid, int) else None
            if user is None:
                raise APIError(409, "the signed-in user no longer exists; sign in again")
            order = self.store.create_order(uid, item.strip(), quantity)
        self.set_status(201)
        self.write_json(order)


class AggregateHandler(APIHandler):
    """``GET /api/aggregate``: users and orders fetched concurrently (fan-out).

    Each upstream's outcome is reported; a failed upstream gives ``null`` data
    and ``"partial": true``, never a failed response. Only when every upstream
    failed is the answer a 502.

    The upstream URLs come from the configuration only: ``users_url`` and
    ``orders_url``, else ``self_url`` + the route (``__main__`` sets
    ``self_url`` from the address and port it binds). They are never built
    from the request's ``Host`` header: that would let a client send the
    caller's bearer token to any host it names (server-side request
    forgery). An app built without them (``make_app(Config())``) cannot know
    where it listens, so this route answers 503 with a problem document
    saying what to configure, and ``make_app`` logs the same once.
    """

    async def get(self) -> None:
        urls = upstream_urls(self.settings)
        if urls is None:
            raise APIError(503, _AGGREGATE_UNCONFIGURED)
        token = self._forwarded_token()
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": self.request_id}
        timeout = self.settings["aggregate_timeout"]
        requests = {
            name: HTTPRequest(url, headers=headers, request_timeout=timeout)
            for name, url in urls.items()
        }
        with self.timed("upstreams"):
            results = await fetch_all(requests, timeout=timeout)
        body: dict[str, Any] = {"partial": False, "upstreams": {}}
        for name, result in results.items():
            body["upstreams"][name] = {
                "ok": result.ok,
                "status": result.status,
                "error": None if result.ok else str(result.error or f"HTTP {result.status}"),
                "elapsed_ms": round(result.elapsed * 1000, 2),
            }
            body[name] = result.json if result.ok else None
            if not result.ok:
                body["partial"] = True
        if not any(r.ok for r in results.values()):
            raise APIError(502, "every upstream failed", upstreams=body["upstreams"])
        self.write_json(body)

    def _forwarded_token(self) -> str:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return self.get_query_argument("access_token", "") or ""


class ImageHandler(TokenAuthMixin, ExecutorMixin, BaseHandler):
    """``POST /api/images``: raw image body -> PNG thumbnail made in the process pool.

    The body limit is ``max_image_bytes``, above the server's ``max_body_size``:
    :class:`~examples.reference_app.bodies.BoundedBodyMixin` raises this
    request's limit on its connection, and refuses a ``Content-Length`` over
    it with 413 before the body is read.
    """

    body_limit_setting = "max_image_bytes"

    async def prepare(self) -> None:
        await _maybe_await(super().prepare())
        content_type = self.request.headers.get("Content-Type", "")
        if not content_type.lower().startswith("image/"):
            raise APIError(415, "send the raw image bytes with an image/* Content-Type")

    async def post(self) -> None:
        data = self.request_body()
        self.discard_body()
        if not data:
            raise APIError(415, "the body is empty, not an image")
        try:
            with self.timed("thumbnail"):
                thumb = await self.run_in_executor(
                    make_thumbnail, data, self.settings["thumbnail_size"]
                )
        except NotAnImage as exc:
            raise APIError(415, str(exc)) from None
        png = thumb["png"]
        result = {
            "processed": True,
            "size": len(data),
            "width": thumb["width"],
            "height": thumb["height"],
            "format": thumb["format"],
            "original": {"width": thumb["original_width"], "height": thumb["original_height"]},
            "thumbnail": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
        }
        await self.publish_feed(
            "image",
            {
                "from": self.current_user.get("sub"),
                "format": thumb["format"],
                "width": thumb["original_width"],
                "height": thumb["original_height"],
                "size": len(data),
            },
        )
        self.write_json(result)


class HealthHandler(BaseHandler):
    """``GET /healthz``: liveness (no auth, no database round trip)."""

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.write_json({"status": "ok"})


class ChatHandler(
    TokenAuthMixin,
    AllowedOriginsMixin,
    HeartbeatMixin,
    JSONMessageMixin,
    BroadcastMixin,
    JSONErrorMixin,
    TimingMixin,
    ServedByMixin,
    WebSocketHandler,
):
    """``GET /ws?room=..&access_token=..``: chat in a room.

    In: ``{"text": "..."}``. Out, to every member of the room (sender
    included, so that each client shows the message with its id):
    ``{"id", "room", "from", "text", "ts"}``. The message also goes to the
    live feed.
    """

    room: str

    async def prepare(self) -> None:
        await _maybe_await(super().prepare())
        if self._finished:
            return
        self.room = _valid_room(self.get_query_argument("room", None))

    async def open(self) -> None:
        await _maybe_await(super().open())
        # Tornado delivers no message before open() returns: waiting for the
        # room's broker subscription here means the client's first message
        # (and its echo) cannot be lost.
        try:
            await self.join(self.room)
        except ConnectionError:
            log.warning("chat room %r unavailable: broker unreachable", self.room)
            self.close(1011, "chat is unavailable right now")

    async def on_json(self, data: Any) -> None:
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_CHAT_TEXT:
            await self.send_error_message(
                400, f'send {{"text": ...}} with 1-{MAX_CHAT_TEXT} characters'
            )
            return
        message = {
            "id": secrets.token_hex(8),
            "room": self.room,
            "from": self.current_user.get("sub"),
            "text": text,
            "ts": time.time(),
        }
        try:
            await self.broadcast(self.room, message, exclude_self=False)
        except ConnectionError:
            # The broker (Redis) is unreachable: the message reached nobody.
            log.warning("chat message from %s not sent: broker unavailable", message["from"])
            await self.send_error_message(503, "chat is unavailable right now; try again")
            return
        await append_feed(self.settings, "chat", message, room=self.room)

    async def send_error_message(self, status: int, detail: str) -> None:
        """Tell this client about a bad or failed message; the connection stays open."""
        await _maybe_await(self.write_message({"error": {"status": status, "detail": detail}}))


class FeedHandler(
    TokenAuthMixin, JSONErrorMixin, TimingMixin, SSEMixin, ServedByMixin, RequestHandler
):
    """``GET /events[?room=..]``: the live feed over Server-Sent Events.

    Without ``room``: chat from every room, user changes and uploads. With
    ``room``: that room's chat only. Reconnecting clients send
    ``Last-Event-ID`` (EventSource does it by itself) and get what they missed.
    """

    async def get(self) -> None:
        room = self.get_query_argument("room", None)
        topic = FEED_TOPIC if room is None else f"room:{_valid_room(room)}"
        await self.stream_topic(topic, log=self.settings["event_log"])


class NotFound(TimingMixin, ServedByMixin, NotFoundHandler):
    """404 problem+json for unmatched routes, with a request id and an access record."""


# -- factory ------------------------------------------------------------

_AGGREGATE_UNCONFIGURED = (
    "the aggregator does not know where its upstreams are: set Config.self_url"
    " (the URL this server listens on) or Config.users_url and Config.orders_url"
)


def upstream_urls(settings: dict[str, Any]) -> dict[str, str] | None:
    """The aggregator's upstream URLs, from configuration only; ``None`` when incomplete."""
    base = settings["self_url"]
    users = settings["users_url"] or (base and f"{base}/api/users?limit=10")
    orders = settings["orders_url"] or (base and f"{base}/api/orders?limit=10")
    if not (users and orders):
        return None
    return {"users": users, "orders": orders}


def server_options(config: Config) -> dict[str, Any]:
    """``HTTPServer`` options for an app built from *config* (``serve(http_server_options=)``).

    ``max_body_size`` is the JSON limit: no request buffers more, routed or
    not; the image route raises its own request's limit (see ``bodies.py``).
    """
    return {"max_body_size": config.max_json_bytes}


def make_app(config: Config | None = None) -> Application:
    """Build the application: store, broker, event log, executor, metrics, routes.

    Call it inside the serving process (``serve()`` does, after any fork):
    it opens the database and creates the broker and the process pool.
    """
    config = config or Config()
    secret = config.secret or secrets.token_urlsafe(32)
    store = Store(config.db_path)

    if config.redis_url:
        from tornado_kit import RedisBroker, RedisEventLog

        broker: Any = RedisBroker(config.redis_url)
        event_log: Any = RedisEventLog(broker=broker, maxlen=config.feed_maxlen)
    else:
        broker = LocalBroker()
        event_log = MemoryEventLog(broker=broker, maxlen=config.feed_maxlen)

    settings: dict[str, Any] = {
        "token_verifier": SignedTokenVerifier(secret, max_age=config.token_max_age),
        "broker": broker,
        "executor": BoundedExecutor(
            max_workers=config.image_workers,
            max_pending=config.image_max_pending,
            kind=config.image_executor_kind,
        ),
        "metrics": PrometheusMetrics(),
        "default_handler_class": NotFound,
        "static_path": str(STATIC_DIR),
        "static_handler_class": StaticFiles,
        "store": store,
        "event_log": event_log,
        "self_url": config.self_url,
        "users_url": config.users_url,
        "orders_url": config.orders_url,
        "aggregate_timeout": config.aggregate_timeout,
        "max_json_bytes": config.max_json_bytes,
        "json_body_max_bytes": config.max_json_bytes,
        "max_image_bytes": config.max_image_bytes,
        "thumbnail_size": config.thumbnail_size,
        "instance_name": config.instance_name,
        "debug": config.debug,
    }
    if config.allowed_origins:
        settings["allowed_origins"] = list(config.allowed_origins)
    for key in ("heartbeat_interval", "heartbeat_timeout", "sse_keepalive_interval"):
        value = getattr(config, key)
        if value is not None:
            settings[key] = value
    settings.update(config.extra_settings)
    if upstream_urls(settings) is None:
        log.warning("/api/aggregate will answer 503: %s", _AGGREGATE_UNCONFIGURED)

    routes: list[Any] = [
        (r"/()", IndexPage, {"path": str(STATIC_DIR), "default_filename": "index.html"}),
        (r"/api/token", TokenHandler),
        (r"/api/users", UsersHandler),
        (r"/api/users/(\d+)", UserHandler),
        (r"/api/orders", OrdersHandler),
        (r"/api/aggregate", AggregateHandler),
        (r"/api/images", ImageHandler),
        (r"/ws", ChatHandler),
        (r"/events", FeedHandler),
        (r"/healthz", HealthHandler),
        (r"/metrics", MetricsHandler),
    ]
    return Application(routes, **settings)


async def close_app(app: Application) -> None:
    """Release what :func:`make_app` opened: the broker and the database.

    ``serve()`` runs tornado-kit's own shutdown (WebSockets, SSE streams, the
    executor) and the process then exits; call this when you build the app
    yourself and keep the process (tests do).
    """
    await app.settings["broker"].close()
    app.settings["store"].close()


__all__ = ["Config", "close_app", "make_app", "server_options"]
