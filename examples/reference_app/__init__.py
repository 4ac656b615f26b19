"""The tornado-kit reference app: every mixin assembled into one service.

Run it with ``python -m examples.reference_app --port 8888`` (or ``make demo``),
or build the application yourself::

    from examples.reference_app import Config, make_app

    app = make_app(Config(db_path="demo.db", secret="change-me"))
    app.listen(8888)

See ``docs/reference-app.md`` for the routes and the deployment layouts.
"""

from examples.reference_app.app import Config, close_app, make_app

__all__ = ["Config", "close_app", "make_app"]
