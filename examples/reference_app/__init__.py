"""The tornado-kit reference app: every mixin assembled into one service.

Run it with ``python -m examples.reference_app --port 8888`` (or ``make demo``),
or build the application yourself::

    from examples.reference_app import Config, make_app

    config = Config(db_path="demo.db", secret="change-me", self_url="http://127.0.0.1:8888")
    app = make_app(config)
    app.listen(8888, **server_options(config))

See ``docs/reference-app.md`` for the routes and the deployment layouts.
"""

from examples.reference_app.app import Config, close_app, make_app, server_options

__all__ = ["Config", "close_app", "make_app", "server_options"]
