"""The base every tornado-kit WebSocket mixin derives from (private).

:class:`TrackedWebSocket` holds what the mixins share, so that it holds for
any combination of them, in any order:

* registration: the handler is in the application's connection registry
  while it is open (the shutdown hook closes it with 1001) and forgotten
  however it ends;
* the handshake: every refusal is an RFC 9457 problem document
  (``_handshake.py`` checks the request before Tornado);
* bounded writes: ``max_pending_bytes`` bounds what the connection may
  leave unsent, for every write (:meth:`TrackedWebSocket.write_message`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

import tornado.escape
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol

from tornado_kit import _json
from tornado_kit._access import add_access_field
from tornado_kit._apierror import APIErrorHeadersMixin
from tornado_kit._compat.stream import write_prebuilt
from tornado_kit._errors import APIError, JSONErrorMixin, build_problem, write_problem
from tornado_kit._lifecycle import state_for
from tornado_kit._settings import resolve
from tornado_kit._ws._frames import (
    CLOSE_TRY_AGAIN_LATER,
    DEFAULT_MAX_PENDING_BYTES,
    QUEUED_WRITE_COST,
    backlog,
    fast_path_buffer,
    retrieve,
    server_frame,
)
from tornado_kit._ws._handshake import handshake_refusal, tornado_origin_refusal
from tornado_kit._ws._rooms import STATE_KEY, WSState, ws_state

__all__ = ["TrackedWebSocket"]

log = logging.getLogger("tornado_kit.websocket")


class TrackedWebSocket(APIErrorHeadersMixin, WebSocketHandler):
    """What every tornado-kit WebSocket mixin shares.

    * The handler is in the app's connection registry while it is open.
    * Every refused handshake is an RFC 9457 problem document (rendered by
      ``JSONErrorMixin`` when the class has it, else by the same builder).
    * ``max_pending_bytes`` bounds every write (:meth:`write_message`).

    Hooks that users do not normally override are used (``get``,
    ``on_connection_close``, ``on_finish``), so a subclass's ``open`` and
    ``on_close`` need not call ``super()``.
    """

    #: Most bytes a connection may leave unsent before it is closed with 1013
    #: (class attribute, else the setting of the same name, else 1 MiB).
    max_pending_bytes: int | None = None

    def get(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, None]:
        # Not a coroutine itself: returning the parent's coroutine adds no
        # frame per open connection.
        state = state_for(self.application)
        if state.shutting_down:
            raise APIError(503, "server shutting down")
        refusal = handshake_refusal(self, self._tk_origin_refusal)
        if refusal is not None:
            raise refusal  # before registration: a refusal leaves nothing behind
        ws_state(self.application)
        state.connections.add(self)
        self._tk_register()
        return super().get(*args, **kwargs)

    def _tk_origin_refusal(self) -> APIError | None:
        """The handshake's origin check: Tornado's rule through ``check_origin``."""
        return tornado_origin_refusal(self, self.check_origin)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Render the refused handshake as ``application/problem+json`` (runs from ``send_error``).

        ``JSONErrorMixin`` renders it when the class has it (so its
        ``build_problem`` override applies); otherwise the same builder does.
        """
        if isinstance(self, JSONErrorMixin):
            super().write_error(status_code, **kwargs)
            return
        build = functools.partial(build_problem, self)
        write_problem(self, status_code, kwargs.get("exc_info"), build)

    def write_message(
        self, message: bytes | str | dict[str, Any], binary: bool = False
    ) -> asyncio.Future[None]:
        """Send *message*, as ``WebSocketHandler.write_message``, within ``max_pending_bytes``.

        When what the connection has not yet sent plus this message would
        exceed ``max_pending_bytes`` (class attribute, else setting, else
        1 MiB), nothing is queued: the connection is closed with 1013 "Try
        Again Later" (RFC 6455 §7.4.1) and ``WebSocketClosedError`` is
        raised, as it is for every later write. Each queued message counts
        its bytes plus about 1.5 KiB, what Tornado keeps for it until it is
        sent. A ``str`` holding a lone surrogate raises ``ValueError`` before
        anything is written.
        """
        proto = self._tk_protocol()
        if isinstance(message, dict):
            message = tornado.escape.json_encode(message)
        if isinstance(message, str):
            message = _json.encode_utf8(message, "the WebSocket message")
        self._tk_make_room(proto, len(message) + QUEUED_WRITE_COST)
        return super().write_message(message, binary=binary)

    def _tk_protocol(self) -> WebSocketProtocol:
        proto = self.ws_connection
        if proto is None or proto.is_closing():
            raise WebSocketClosedError()
        return proto

    def _tk_make_room(self, proto: WebSocketProtocol, size: int) -> None:
        """Close with 1013 and raise ``WebSocketClosedError`` unless *size* more bytes fit."""
        limit = int(resolve(self, "max_pending_bytes", DEFAULT_MAX_PENDING_BYTES))
        if backlog(proto.stream) + size <= limit:
            return
        log.warning(
            "closing WebSocket %s: more than %d bytes would be unsent (client not reading)",
            self.request.path,
            limit,
        )
        # RFC 6455 §7.4.1: 1013, try again later (the server is overloaded).
        self.close(CLOSE_TRY_AGAIN_LATER, "client too slow")
        raise WebSocketClosedError()

    def _tk_send_text(self, payload: bytes) -> None:
        """Send UTF-8 *payload* as a text frame within ``max_pending_bytes``; never raises.

        Without compression the frame goes to the socket as a pre-built
        frame, with no future or task (a flood of error replies costs its
        bytes and nothing more); otherwise through :meth:`write_message`.
        Nothing happens on a closed or closing connection.
        """
        try:
            proto = self._tk_protocol()
            stream, buffer = proto.stream, fast_path_buffer(proto)
            if stream is None or buffer is None:
                self.write_message(payload).add_done_callback(retrieve)
                return
            frame = server_frame(0x1, payload)
            self._tk_make_room(proto, len(frame))
        except (WebSocketClosedError, StreamClosedError):
            return
        error = write_prebuilt(stream, buffer, frame)
        if error is not None:
            stream.close(exc_info=error)

    def _tk_register(self) -> None:
        """Called from the handshake: mixins hook per-connection setup here."""

    def on_connection_close(self) -> None:
        if self.get_status() == 101 and self.close_code is not None:
            # Before super(): TimingMixin may emit the access record there.
            add_access_field(self, "ws_close_code", self.close_code)
        try:
            super().on_connection_close()
        finally:
            self._tk_cleanup()

    def on_finish(self) -> None:
        super().on_finish()
        if self.get_status() != 101:
            # The handshake was refused (or failed): no connection to track.
            self._tk_cleanup()

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        super().log_exception(typ, value, tb)
        if self.get_status() == 101:
            # Tornado logs an exception from open()/on_message() and aborts the
            # connection; after a failed open() it never calls on_close(), so
            # make sure the registries forget the connection.
            IOLoop.current().add_callback(self._tk_reap)

    def _tk_reap(self) -> None:
        proto = self.ws_connection
        stream = proto.stream if proto is not None else None
        if stream is None or stream.closed():
            self._tk_cleanup()

    def _tk_cleanup(self) -> None:
        ws: WSState | None = state_for(self.application).resources.get(STATE_KEY)
        if ws is None or not ws.unregister(self):
            return
        if self.get_status() == 101:
            # TimingMixin (when present) logs the connection when it ends.
            self._tk_end_access()
