"""tornado-kit: composable, standards-correct mixins for Tornado handlers.

Every public name is importable from this package (``tornado_kit.testing`` is
its own module)::

    from tornado.web import RequestHandler
    from tornado_kit import JSONErrorMixin, TimingMixin, TokenAuthMixin

    class UserHandler(TokenAuthMixin, JSONErrorMixin, TimingMixin, RequestHandler):
        async def get(self, user_id: str) -> None:
            ...

Exceptions::

    tornado.web.HTTPError
     └── APIError            (RFC 9457 problem details that reach the client)
"""

from tornado_kit.broker import Broker, LocalBroker

__version__ = "0.1.0"

__all__ = [
    "Broker",
    "LocalBroker",
]
