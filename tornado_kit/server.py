"""Deprecated since 0.2: the 0.1 import path ``tornado_kit.server``.

Import public names from :mod:`tornado_kit` instead
(``from tornado_kit import ...``). Attribute access here still works and
warns with a :class:`DeprecationWarning`; this module is removed in 0.3.
"""

from tornado_kit._deprecated import moved

__getattr__, __dir__ = moved(__name__, ("tornado_kit._server", "tornado_kit._worker"))
