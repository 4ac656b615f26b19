"""Instructions per HTTP request, counted by callgrind: the stack's cost, repeatable.

``wrk`` figures swing by +-20% between identical runs on a shared VM. This
script counts the CPU instructions a server process executes per request
instead, which does not depend on the machine's load. Each run starts one
variant (below) as a server subprocess under ``valgrind --tool=callgrind``,
sends it a warm-up, zeroes the counters (``callgrind_control -z``), sends N
requests, dumps (``callgrind_control -d``) and divides the dump's total
``Ir`` by N. The client is a plain socket in this process, outside valgrind:
one persistent HTTP/1.1 connection, requests strictly one after the other,
every response checked (status 200, the JSON body expected). Before each
request the client waits until the server sleeps in ``epoll_wait``, so the
server always finds its socket empty and takes the same path, and the
counters are zeroed and dumped only when it is idle. Every server runs with
``PYTHONHASHSEED=0``, the same Python and Tornado; orjson is importable only
in the variants marked so (``sys.modules["orjson"] = None`` in the others).
Each variant runs ``--repeat`` times: the spread of its figures shows how
repeatable they are (within 0.4% here, often 0.00%: the same calls run, at
a cost that varies a little with memory layout and the wall clock, e.g.
the JSON formatter's once-a-second ``strftime``). Differences between
variants below ~0.5% of bare are not significant.

Variants (a ~20-byte JSON object ``{"id": 1, "ok": true}`` unless said):

* ``bare``: ``RequestHandler.get`` writing a dict (``self.write(dict)``);
* ``bare+log``: the same with Tornado's own access line written to a file
  (``tornado.access`` at INFO, ``logging.FileHandler``);
* ``naive``: the hand-written stack: bearer auth in ``prepare()`` (header
  parse, dict lookup of a static token, 401 via ``send_error``), a JSON
  ``write_error``, an ``on_finish`` %-format line (method, path, status,
  duration, user) to a file (``logging.FileHandler``);
* ``ours``: ``TokenAuthMixin`` (``StaticTokenVerifier``), ``JSONErrorMixin``,
  ``TimingMixin``, the access record written to a file by a
  ``logging.FileHandler`` with ``JSONLinesFormatter``; ``self.write(dict)``;
* ``ours-write_json``: the same plus ``JSONBodyMixin``, writing with ``write_json``;
* ``json-tornado``, ``json-orjson``, ``json-ours``: a ~1 KB JSON response from
  a bare handler: ``self.write(dict)`` (Tornado's ``json_encode``),
  ``orjson.dumps`` directly, ``JSONBodyMixin.write_json`` (orjson importable
  in the last two).

Run only when named (``--variants a,b``; ``--variants all``): ``ours-orjson``
(``ours-write_json`` with orjson), ``json-ours-stdlib`` (``write_json``
without orjson), and parts, to attribute the cost: ``auth``, ``errors``,
``timing`` (access record to the file), ``timing-nolog``, ``ours-nolog``
and ``naive-nolog`` (their logger not enabled for INFO).

``--functions K`` also prints, for ``ours`` and ``naive``, the top K
functions by exclusive and by inclusive cost per request
(``callgrind_annotate``, ``--inclusive=yes``), then the functions ``ours``
spends more instructions in than ``naive``. A Python built without frame
pointers shows C functions (the interpreter, libc), not Python functions:
compare variants to attribute a cost to a Python-level feature.

Usage::

    .venv/bin/python benchmarks/http_instructions.py [--requests 2000] [--warmup 300]
        [--repeat 2] [--variants bare,naive,ours] [--functions 15] [--jobs 2] [--keep DIR]

Needs valgrind (``apt-get install valgrind``: valgrind, callgrind_control,
callgrind_annotate) and Linux ``/proc``. A run of 2000 requests takes one
to five minutes (valgrind runs the server ~50x slower); ``--jobs 2`` runs
two at once, which changes no figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from _common import (
    LARGE,
    SMALL,
    HTTPResponse,
    callgrind_per_request,
    free_port,
    print_callgrind_functions,
)

TOKEN = "bench-token-0123456789"
PATH = "/bench"
REQUEST = f"GET {PATH} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
LINE_FORMAT = "%(asctime)s %(levelname)s %(message)s"  # Tornado's and the naive stack's lines
ACCESS = "tornado_kit.access"  # written with JSONLinesFormatter, the other loggers with LINE_FORMAT


@dataclass(frozen=True)
class Variant:
    description: str
    #: Builds the class of the one route (in the server, after the orjson switch).
    handler: Callable[[], type]
    payload: dict[str, Any] = field(default_factory=lambda: SMALL)
    orjson: bool = False
    #: Logger written to the log file (None: no log file), and its level.
    log: str | None = None
    log_level: int = logging.INFO
    default: bool = True


def _bare(payload: dict[str, Any]) -> Callable[[], type]:
    def build() -> type:
        from tornado.web import RequestHandler

        class Bare(RequestHandler):
            def get(self) -> None:
                self.write(payload)

        return Bare

    return build


def _naive() -> type:
    from tornado.web import RequestHandler

    tokens = {TOKEN: {"sub": "bench"}}
    log = logging.getLogger("bench.naive")

    class Naive(RequestHandler):
        user: dict[str, Any] | None = None

        def prepare(self) -> None:
            scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
            user = tokens.get(token) if scheme.lower() == "bearer" else None
            if user is None:
                self.send_error(401)
                return
            self.user = user

        def write_error(self, status_code: int, **kwargs: Any) -> None:
            if status_code == 401:
                self.set_header("WWW-Authenticate", 'Bearer realm="api"')
            self.finish({"status": status_code, "title": self._reason})

        def on_finish(self) -> None:
            log.info(
                "%s %s %d %.2fms %s",
                self.request.method,
                self.request.path,
                self.get_status(),
                self.request.request_time() * 1000.0,
                self.user["sub"] if self.user else "-",
            )

        def get(self) -> None:
            self.write(SMALL)

    return Naive


def _mixins(*names: str, write_json: bool = False, payload: Any = SMALL) -> Callable[[], type]:
    def build() -> type:
        from tornado.web import RequestHandler

        import tornado_kit

        def write_json_get(self: Any) -> None:
            self.write_json(payload)

        def write_get(self: Any) -> None:
            self.write(payload)

        bases = tuple(getattr(tornado_kit, name) for name in names)
        get = write_json_get if write_json else write_get
        return type("Handler", (*bases, RequestHandler), {"get": get})

    return build


def _orjson_direct() -> type:
    import orjson
    from tornado.web import RequestHandler

    class Orjson(RequestHandler):
        def get(self) -> None:
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.write(orjson.dumps(LARGE))

    return Orjson


_STACK = ("TokenAuthMixin", "JSONErrorMixin", "TimingMixin")
_WRITE_JSON = _mixins(*_STACK, "JSONBodyMixin", write_json=True)
_BODY_ONLY = _mixins("JSONBodyMixin", write_json=True, payload=LARGE)
VARIANTS: dict[str, Variant] = {
    "bare": Variant("RequestHandler, self.write(dict)", _bare(SMALL)),
    "bare+log": Variant("bare + tornado.access line to a file", _bare(SMALL), log="tornado.access"),
    "naive": Variant("hand-written auth, write_error, line to a file", _naive, log="bench.naive"),
    "ours": Variant(
        "TokenAuth+JSONError+Timing, JSON line to a file", _mixins(*_STACK), log=ACCESS
    ),
    "ours-write_json": Variant("ours + JSONBodyMixin, write_json", _WRITE_JSON, log=ACCESS),
    "json-tornado": Variant("1 KB, bare, self.write(dict)", _bare(LARGE), LARGE),
    "json-orjson": Variant("1 KB, bare, orjson.dumps", _orjson_direct, LARGE, orjson=True),
    "json-ours": Variant("1 KB, bare, write_json (orjson)", _BODY_ONLY, LARGE, orjson=True),
    # -- run only when named --
    "ours-orjson": Variant("ours-write_json, orjson", _WRITE_JSON, orjson=True, log=ACCESS),
    "json-ours-stdlib": Variant("1 KB, bare, write_json (stdlib json)", _BODY_ONLY, LARGE),
    "auth": Variant("TokenAuthMixin only", _mixins("TokenAuthMixin")),
    "errors": Variant("JSONErrorMixin only", _mixins("JSONErrorMixin")),
    "timing": Variant("TimingMixin only, JSON line to a file", _mixins("TimingMixin"), log=ACCESS),
    "timing-nolog": Variant("timing, logger below INFO", _mixins("TimingMixin"), log=ACCESS),
    "ours-nolog": Variant("ours, access logger below INFO", _mixins(*_STACK), log=ACCESS),
    "naive-nolog": Variant("naive, its logger below INFO", _naive, log="bench.naive"),
}
for _name in ("ours-orjson", "json-ours-stdlib", "auth", "errors", "timing"):
    VARIANTS[_name] = replace(VARIANTS[_name], default=False)
for _name in ("timing-nolog", "ours-nolog", "naive-nolog"):
    VARIANTS[_name] = replace(VARIANTS[_name], default=False, log_level=logging.WARNING)


def serve(name: str, port: int, log_file: str) -> None:
    """Run variant *name* on 127.0.0.1:*port* until SIGTERM (in the valgrind child)."""
    variant = VARIANTS[name]
    if not variant.orjson:
        sys.modules["orjson"] = None  # type: ignore[assignment]  # makes import orjson fail
    import asyncio

    from tornado.web import Application

    from tornado_kit import StaticTokenVerifier, _json

    if variant.orjson != _json.HAVE_ORJSON:
        sys.exit(f"{name}: orjson importable is {_json.HAVE_ORJSON}, expected {variant.orjson}")
    if variant.log is not None:
        handler = logging.FileHandler(log_file)
        if variant.log == ACCESS:
            try:
                from tornado_kit import JSONLinesFormatter
            except ImportError:  # before the 0.2 restructure
                from tornado_kit.timing import JSONLinesFormatter
            handler.setFormatter(JSONLinesFormatter())
        else:
            handler.setFormatter(logging.Formatter(LINE_FORMAT))
        logger = logging.getLogger(variant.log)
        logger.addHandler(handler)
        logger.setLevel(variant.log_level)
        logger.propagate = False
    app = Application(
        [(PATH, variant.handler())],
        token_verifier=StaticTokenVerifier({TOKEN: {"sub": "bench"}}),
    )

    async def main() -> None:
        app.listen(port, address="127.0.0.1")
        await asyncio.Event().wait()  # SIGTERM ends the process

    asyncio.run(main())


@dataclass
class Run:
    variant: str
    repeat: int
    per_request: float
    dump: str


def measure(name: str, repeat: int, args: argparse.Namespace, workdir: str) -> Run:
    """One run of variant *name* under callgrind: instructions per request."""
    base = os.path.join(workdir, f"{name}.{repeat}")
    port = free_port()
    variant = VARIANTS[name]
    script = os.path.abspath(sys.modules["__main__"].__file__ or __file__)

    def check(response: HTTPResponse) -> None:
        if response.status != 200 or json.loads(response.body) != variant.payload:
            raise RuntimeError(f"{name}: got {response.status} {response.body[:200]!r}")

    per_request, dump = callgrind_per_request(
        [sys.executable, script, "--serve", name, "--port", str(port), "--log-file", base + ".log"],
        port=port,
        request=REQUEST,
        check=check,
        warmup=args.warmup,
        requests=args.requests,
        out_base=base,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    if variant.log is not None and variant.log_level == logging.INFO:
        with open(base + ".log", encoding="utf-8") as log:
            lines = sum(1 for _ in log)
        if lines != args.warmup + args.requests:  # one line per request, no more
            raise RuntimeError(f"{name}: {lines} log lines for {args.warmup + args.requests}")
    return Run(name, repeat, per_request, dump)


def _versions() -> str:
    import tornado

    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    try:
        import orjson

        orjson_version = orjson.__version__
    except ImportError:
        orjson_version = "not installed"
    return (
        f"{valgrind.stdout.strip()}, Python {platform.python_version()}, Tornado "
        f"{tornado.version}, orjson {orjson_version} (where a variant allows it)"
    )


def print_table(runs: list[Run], repeats: int) -> None:
    by_variant: dict[str, list[float]] = {}
    for run in sorted(runs, key=lambda r: r.repeat):
        by_variant.setdefault(run.variant, []).append(run.per_request)
    mean = {name: sum(v) / len(v) for name, v in by_variant.items()}
    heads = " ".join(f"{'run ' + str(i + 1):>10}" for i in range(repeats))
    print(f"\n{'variant':17} {heads} {'spread':>7} {'x bare':>7} {'x json-tornado':>14}")
    for name, figures in by_variant.items():
        spread = (max(figures) - min(figures)) / min(figures) * 100
        cells = " ".join(f"{f:10,.0f}" for f in figures)
        x_bare = f"{mean[name] / mean['bare']:7.3f}" if "bare" in mean else f"{'-':>7}"
        x_json = "-"
        if name.startswith("json-") and "json-tornado" in mean:
            x_json = f"{mean[name] / mean['json-tornado']:.3f}"
        print(f"{name:17} {cells} {spread:6.2f}% {x_bare} {x_json:>14}")
    print("(instructions per request; spread: (max - min) / min of the runs; ratios of the means)")
    for name in by_variant:
        print(f"  {name:17} {VARIANTS[name].description}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per run")
    parser.add_argument("--warmup", type=int, default=300, help="requests before zeroing")
    parser.add_argument("--repeat", type=int, default=2, help="runs per variant")
    parser.add_argument("--variants", default="", help="comma-separated, or all (default: main)")
    parser.add_argument("--functions", type=int, default=0, metavar="K")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    parser.add_argument("--keep", metavar="DIR", help="keep dumps and logs in DIR")
    parser.add_argument("--serve", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--log-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.log_file)
        return
    tools = ("valgrind", "callgrind_control", "callgrind_annotate")
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        sys.exit(f"{', '.join(missing)} not found: apt-get install valgrind")
    if args.requests < 1 or args.warmup < 0 or args.repeat < 1 or args.jobs < 1:
        sys.exit("--requests, --repeat and --jobs must be >= 1, --warmup >= 0")
    if args.variants == "all":
        names = list(VARIANTS)
    elif args.variants:
        names = [n.strip() for n in args.variants.split(",") if n.strip()]
        unknown = [n for n in names if n not in VARIANTS]
        if unknown:
            sys.exit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    else:
        names = [n for n, v in VARIANTS.items() if v.default]
    try:
        import orjson  # noqa: F401
    except ImportError:
        skipped = [n for n in names if VARIANTS[n].orjson]
        if skipped:
            print(f"skipped (orjson is not installed): {', '.join(skipped)}")
        names = [n for n in names if not VARIANTS[n].orjson]

    workdir = args.keep or tempfile.mkdtemp(prefix="tk-callgrind-")
    os.makedirs(workdir, exist_ok=True)
    print(
        f"callgrind Ir per request: {_versions()}; N={args.requests} requests per run after"
        f" {args.warmup} warm-up, one keep-alive connection, sequential, PYTHONHASHSEED=0"
    )
    try:
        plan = [(name, repeat) for repeat in range(1, args.repeat + 1) for name in names]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(measure, n, r, args, workdir) for n, r in plan]
            runs = []
            for future in futures:
                run = future.result()
                print(f"  {run.variant:17} run {run.repeat}: {run.per_request:12,.0f}", flush=True)
                runs.append(run)
        print_table(runs, args.repeat)
        if args.functions:
            dumps = {run.variant: run.dump for run in runs if run.repeat == 1}
            print_callgrind_functions(dumps, ("ours", "naive"), args.functions, args.requests)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\ndumps and logs kept in {workdir}")


if __name__ == "__main__":
    main()
