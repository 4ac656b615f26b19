"""0.1 names of ``tornado_kit.sse`` that 0.2 spells differently (private)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tornado_kit._sse._message import wire as _wire
from tornado_kit._sse._registry import SSERegistry as Registry
from tornado_kit._sse._registry import registry_for
from tornado_kit._sse._stream import SSEStream as Stream

if TYPE_CHECKING:
    from tornado.web import RequestHandler

__all__ = ["Registry", "Stream", "_registry_for", "_wire"]


def _registry_for(handler: RequestHandler) -> Registry:
    """The registry of the open streams of *handler*'s application."""
    return registry_for(handler.application)
