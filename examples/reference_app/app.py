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

Only the public ``tornado_kit`` API is used, so the package doubles as a
template: ``app.py`` (this module: configuration and the factory),
``handlers.py`` (the routes), ``base.py`` (input checks and base handlers),
``bodies.py`` (bounded request bodies), ``static.py`` (the page and its
files), ``store.py`` (SQLite), ``images.py`` (thumbnails, in a process pool).

Request bodies are bounded per route (``bodies.py``): the server's
``max_body_size`` is the JSON limit (:func:`server_options`), every JSON route
streams its body and refuses a ``Content-Length`` over ``Config.max_json_bytes``
with 413 before reading it, and the image route raises its own request's
limit to ``Config.max_image_bytes``.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tornado.web import Application

from examples.reference_app.handlers import (
    AGGREGATE_UNCONFIGURED,
    AggregateHandler,
    ChatHandler,
    FeedHandler,
    HealthHandler,
    ImageHandler,
    NotFound,
    OrdersHandler,
    TokenHandler,
    UserHandler,
    UsersHandler,
    upstream_urls,
)
from examples.reference_app.static import IndexPage, StaticFiles
from examples.reference_app.store import Store
from tornado_kit import (
    BoundedExecutor,
    LocalBroker,
    MemoryEventLog,
    MetricsHandler,
    PrometheusMetrics,
    SignedTokenVerifier,
    shutdown,
)

log = logging.getLogger("examples.reference_app")

STATIC_DIR = Path(__file__).with_name("static")


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


# -- factory ------------------------------------------------------------


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
        log.warning("/api/aggregate will answer 503: %s", AGGREGATE_UNCONFIGURED)

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
    """Release what :func:`make_app` opened: the broker, the image pool, the database.

    ``serve()`` runs :func:`tornado_kit.shutdown` (WebSockets, SSE streams,
    then the executor and the broker of the settings) and the process then
    exits; call this when you build the app yourself and keep the process
    (tests do). The database is not a tornado-kit resource: it is closed here.
    """
    await shutdown(app)
    app.settings["store"].close()


__all__ = ["Config", "close_app", "make_app", "server_options"]
