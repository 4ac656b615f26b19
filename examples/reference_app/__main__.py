"""Command line: ``python -m examples.reference_app --port 8888 [options]``.

Embedded defaults (what ``make demo`` runs): SQLite file ``./reference_app.db``
in WAL mode, an in-process ``LocalBroker`` and ``MemoryEventLog``, one process.
``--redis-url`` switches to ``RedisBroker`` + ``RedisEventLog`` so that several
processes (``--processes N`` or separate instances behind nginx) share chat
rooms and the live feed.

Every process behind one load balancer must verify the others' tokens: give
them the same secret in the ``REFERENCE_APP_SECRET`` environment variable
(or ``--secret``). Without one, a random secret is made at start-up, shared by
the children of ``--processes`` but not by separate instances.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import logging
import os
import secrets
import sys

from examples.reference_app.app import Config, make_app, server_options
from tornado_kit import serve

log = logging.getLogger("examples.reference_app")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.reference_app",
        description="tornado-kit reference app: users API, chat, live feed, images.",
    )
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--address", default="", help="bind address (default: all)")
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes; 0 = one per CPU (default 1)"
    )
    parser.add_argument("--redis-url", default=None, help="e.g. redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--db",
        default=os.environ.get("REFERENCE_APP_DB", "reference_app.db"),
        help="SQLite file, WAL mode (env REFERENCE_APP_DB; default ./reference_app.db)",
    )
    parser.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="origin allowed to open the chat WebSocket (repeatable; '*.' patterns allowed)",
    )
    parser.add_argument("--secret", default=None, help="token secret (env REFERENCE_APP_SECRET)")
    parser.add_argument(
        "--shutdown-timeout", type=float, default=10.0, help="seconds to drain on SIGTERM"
    )
    parser.add_argument(
        "--xheaders", action="store_true", help="trust X-Forwarded-* / X-Real-IP (behind nginx)"
    )
    parser.add_argument(
        "--instance-name", default=None, help="sent as X-Served-By on every response"
    )
    parser.add_argument("--heartbeat-interval", type=float, default=None)
    parser.add_argument("--image-workers", type=int, default=2)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def local_url(address: str, port: int) -> str:
    """The URL at which this server reaches itself when bound to *address*:*port*.

    The aggregator's upstreams: from the bound address, never from a
    request's ``Host`` header. A wildcard address is reached on loopback.
    """
    host = address or "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}"  # a host name, e.g. localhost
    if ip.is_unspecified:
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    return f"http://[{ip}]:{port}" if ip.version == 6 else f"http://{ip}:{port}"


def main(argv: list[str] | None = None) -> int:
    """Run the reference app until SIGTERM / SIGINT."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(process)d %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    secret = args.secret or os.environ.get("REFERENCE_APP_SECRET", "")
    if not secret:
        # Made before serve() forks, so every child of --processes shares it.
        secret = secrets.token_urlsafe(32)
        log.warning(
            "no REFERENCE_APP_SECRET set: using a random token secret; tokens will not"
            " survive a restart or work across separately started instances"
        )
    config = Config(
        db_path=args.db,
        redis_url=args.redis_url,
        allowed_origins=args.allowed_origin,
        secret=secret,
        self_url=local_url(args.address, args.port),
        heartbeat_interval=args.heartbeat_interval,
        image_workers=args.image_workers,
        instance_name=args.instance_name,
    )
    log.info("reference app on http://localhost:%d/ (db %s)", args.port, args.db)
    serve(
        functools.partial(make_app, config),
        port=args.port,
        address=args.address,
        processes=args.processes,
        shutdown_timeout=args.shutdown_timeout,
        xheaders=args.xheaders,
        http_server_options=server_options(config),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
