"""The routes of the reference app (see ``docs/reference-app.md``).

Each handler is a few lines on top of :mod:`examples.reference_app.base` and
the tornado-kit mixins; :func:`~examples.reference_app.app.make_app` puts
them in the routing table.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

from tornado.httpclient import HTTPRequest
from tornado.web import RequestHandler
from tornado.websocket import WebSocketHandler

from examples.reference_app.base import (
    FEED_TOPIC,
    MAX_CHAT_TEXT,
    MAX_ITEM_LENGTH,
    MAX_SQLITE_INT,
    APIHandler,
    BaseHandler,
    ServedByMixin,
    append_feed,
    log,
    maybe_await,
    name_taken,
    reject_unknown,
    user_view,
    valid_name,
    valid_room,
)
from examples.reference_app.images import NotAnImage, make_thumbnail
from examples.reference_app.store import Conflict, Page
from tornado_kit import (
    AllowedOriginsMixin,
    APIError,
    BroadcastMixin,
    ExecutorMixin,
    HeartbeatMixin,
    JSONErrorMixin,
    JSONMessageMixin,
    NotFoundHandler,
    SignedTokenVerifier,
    SSEMixin,
    TimingMixin,
    TokenAuthMixin,
    fetch_all,
)

AGGREGATE_UNCONFIGURED = (
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


class TokenHandler(BaseHandler):
    """``POST /api/token``: demo sign-in; the user is created on first sign-in."""

    async def post(self) -> None:
        body = self.get_json_body()
        reject_unknown(body, {"name"})
        name = valid_name(body.get("name"))
        with self.timed("db"):
            user, created = self.store.get_or_create_user(name)
        if created:
            await self.publish_feed("user", {"action": "created", "user": user_view(user)})
        verifier: SignedTokenVerifier = self.settings["token_verifier"]
        token = verifier.issue({"sub": user["name"], "uid": user["id"]})
        self.set_status(201 if created else 200)
        self.write_json({"token": token, "user": user_view(user)})


class UsersHandler(APIHandler):
    """``GET /api/users`` (paginated), ``POST /api/users``."""

    async def get(self) -> None:
        limit = self.int_argument("limit", 20, low=1, high=100)
        after = self.int_argument("after", 0, low=0, high=MAX_SQLITE_INT)
        with self.timed("db"):
            page = self.store.list_users(limit=limit, after=after)
        self.write_page(Page([user_view(u) for u in page.items], page.next_after), "/api/users")

    async def post(self) -> None:
        name, email = self.user_fields()
        try:
            with self.timed("db"):
                user = self.store.create_user(name, email)
        except Conflict:
            raise name_taken(name) from None
        await self.publish_feed("user", {"action": "created", "user": user_view(user)})
        self.set_status(201)
        self.set_header("Location", f"/api/users/{user['id']}")
        self.write_json(user_view(user))


class UserHandler(APIHandler):
    """``GET/PUT/DELETE /api/users/<id>``."""

    async def get(self, raw_id: str) -> None:
        user_id = self.user_id_from_path(raw_id)
        with self.timed("db"):
            user = self.store.get_user(user_id)
        if user is None:
            raise APIError(404, f"no user with id {user_id}")
        self.write_json(user_view(user))

    async def put(self, raw_id: str) -> None:
        user_id = self.user_id_from_path(raw_id)
        name, email = self.user_fields()
        try:
            with self.timed("db"):
                user = self.store.update_user(user_id, name, email)
        except Conflict:
            raise name_taken(name) from None
        if user is None:
            raise APIError(404, f"no user with id {user_id}")
        await self.publish_feed("user", {"action": "updated", "user": user_view(user)})
        self.write_json(user_view(user))

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
        after = self.int_argument("after", 0, low=0, high=MAX_SQLITE_INT)
        user_id: int | None = None
        extra: dict[str, str] = {}
        if self.get_query_argument("user_id", None) is not None:
            user_id = self.int_argument("user_id", 0, low=1, high=MAX_SQLITE_INT)
            extra["user_id"] = str(user_id)
        with self.timed("db"):
            page = self.store.list_orders(limit=limit, after=after, user_id=user_id)
        self.write_page(page, "/api/orders", extra)

    async def post(self) -> None:
        body = self.get_json_body()
        reject_unknown(body, {"item", "quantity"})
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
            raise APIError(503, AGGREGATE_UNCONFIGURED)
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
        await maybe_await(super().prepare())
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
        await maybe_await(super().prepare())
        if self._finished:
            return
        self.room = valid_room(self.get_query_argument("room", None))

    async def open(self) -> None:
        await maybe_await(super().open())
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
        await maybe_await(self.write_message({"error": {"status": status, "detail": detail}}))


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
        topic = FEED_TOPIC if room is None else f"room:{valid_room(room)}"
        await self.stream_topic(topic, log=self.settings["event_log"])


class NotFound(TimingMixin, ServedByMixin, NotFoundHandler):
    """404 problem+json for unmatched routes, with a request id and an access record."""
