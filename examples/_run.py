"""The command line shared by the numbered examples (not part of tornado-kit).

``python examples/01_token_auth.py`` puts ``examples/`` first on ``sys.path``,
so an example imports this as ``_run``. It does so under
``if __name__ == "__main__"`` only: the tests import the examples' ``make_app``
without it.
"""

from __future__ import annotations

import argparse
import logging


def parse_args(
    doc: str | None, *, redis: str | None = None, log_level: int = logging.INFO
) -> argparse.Namespace:
    """Parse ``--port`` (default 8888) and ``--address`` (default 127.0.0.1).

    With *redis* (its help text) also ``--redis URL``. Logging is then set up
    at *log_level*. The first paragraph of *doc* (the example's docstring) is
    the ``--help`` description.
    """
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--address", default="127.0.0.1")
    if redis is not None:
        parser.add_argument("--redis", metavar="URL", help=redis)
    args = parser.parse_args()
    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s %(message)s")
    return args
