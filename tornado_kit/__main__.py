"""Command line: ``python -m tornado_kit serve module:factory --port N``.

Also installed as the ``tornado-kit`` console script::

    tornado-kit serve myapp.web:make_app --port 8000 --processes 0 --xheaders

``module:factory`` names a callable (``module:name`` or ``module:Class.method``)
that returns a :class:`tornado.web.Application`; see :func:`tornado_kit.serve`
for the options and exit statuses. A factory path that cannot be resolved is a
usage error (status 2), reported before anything binds or forks.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

from tornado_kit import __version__
from tornado_kit._draining import DEFAULT_MAX_BODY_SIZE
from tornado_kit._server import serve
from tornado_kit._worker import AppFactory

# Dotted names of word characters ("examples.08_serve" is importable too).
_MODULE_NAME = re.compile(r"\w+(\.\w+)*")


_BIND_ERRORS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


class FactoryPathError(ValueError):
    """``module:factory`` could not be resolved to a callable."""


def load_factory(path: str) -> Callable[[], Any]:
    """Import ``module:attr`` (``attr`` may be dotted) and return the callable.

    Raises :class:`FactoryPathError` with a message fit for the command line.
    """
    module_name, sep, attr_path = path.partition(":")
    if not sep or not module_name.strip() or not attr_path.strip():
        raise FactoryPathError(f"expected module:factory (e.g. myapp.web:make_app), got {path!r}")
    if module_name.startswith("."):
        raise FactoryPathError(f"the module must be an absolute name, not {module_name!r}")
    if not _MODULE_NAME.fullmatch(module_name):
        raise FactoryPathError(f"not a module name: {module_name!r}")
    try:
        # An exception other than ImportError comes from the module's own
        # code: it propagates with its traceback.
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FactoryPathError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise FactoryPathError(
                f"module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(obj):
        raise FactoryPathError(
            f"{path!r} is a {type(obj).__name__}, not a callable returning an Application"
        )
    return cast(Callable[[], Any], obj)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def _processes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of processes: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = one per CPU): {value}")
    return value


_SIZE = re.compile(r"([0-9]+) ?(?:([KMG])(?:iB|B)?|B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def byte_size(text: str) -> int:
    """Parse ``--max-body-size``: bytes, or a number with K, M or G (KiB, MiB, GiB).

    ``"10485760"``, ``"512K"``, ``"2M"``, ``"1G"``; ``"2MiB"`` and ``"2mb"``
    too (always binary units).
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"not a size: {text!r} (bytes, or a number with K, M or G, e.g. 10M)"
        )
    return int(match[1]) * _SIZE_UNITS[(match[2] or "").upper()]


def build_parser() -> argparse.ArgumentParser:
    """The ``tornado-kit`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="tornado-kit",
        description="tornado-kit command line tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "serve",
        help="serve an Application in one or more processes with graceful shutdown",
        description=(
            "Serve the Application returned by FACTORY (module:callable) until SIGTERM or "
            "SIGINT; a second signal exits at once."
        ),
    )
    run.add_argument("factory", metavar="FACTORY", help="module:callable returning the app")
    run.add_argument("--port", type=_port, required=True, help="TCP port (0: any free port)")
    run.add_argument("--address", default="", help="address to bind (default: all interfaces)")
    run.add_argument(
        "--processes",
        type=_processes,
        default=1,
        help="number of processes: 1 (default) serves without forking, 0 is one per CPU",
    )
    run.add_argument(
        "--shutdown-timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="time given to in-flight requests after SIGTERM (default 10)",
    )
    run.add_argument(
        "--max-body-size",
        type=byte_size,
        default=DEFAULT_MAX_BODY_SIZE,
        metavar="SIZE",
        help="largest request body accepted, in bytes or with K/M/G (KiB/MiB/GiB); default 10M",
    )
    run.add_argument(
        "--reuse-port",
        action="store_true",
        help="each process binds its own SO_REUSEPORT socket",
    )
    run.add_argument(
        "--xheaders",
        action="store_true",
        help="trust X-Real-IP / X-Forwarded-For / X-Forwarded-Proto (behind a proxy)",
    )
    run.add_argument(
        "--loop",
        choices=("asyncio", "uvloop", "auto"),
        default="asyncio",
        help="event loop implementation (uvloop needs the 'fast' extra)",
    )
    run.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="logging level (default info)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tornado_kit`` and the ``tornado-kit`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Like `python -m`, let FACTORY name a module in the current directory
    # when started through the console script.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        factory = load_factory(args.factory)
    except FactoryPathError as exc:
        parser.error(str(exc))  # exits with status 2
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )
    try:
        serve(
            cast(AppFactory, factory),
            port=args.port,
            address=args.address,
            processes=args.processes,
            shutdown_timeout=args.shutdown_timeout,
            reuse_port=args.reuse_port,
            xheaders=args.xheaders,
            max_body_size=args.max_body_size,
            loop=args.loop,
        )
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except socket.gaierror as exc:  # --address is no host name or address we can resolve
        print(f"tornado-kit serve: error: cannot resolve {args.address!r}: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # loop="uvloop" without the extra
        print(f"tornado-kit serve: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in _BIND_ERRORS:
            print(f"tornado-kit serve: error: cannot bind port {args.port}: {exc}", file=sys.stderr)
        else:  # raised by the factory (processes=1)
            logging.getLogger("tornado_kit.server").exception(
                "tornado-kit serve: the app factory %s failed", args.factory
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
