"""The page and its files, with the same errors and access records as the API.

``StaticFiles`` is Tornado's ``StaticFileHandler`` with ``JSONErrorMixin``
and ``TimingMixin``: a missing file is a 404 problem document with a request
id, a path outside the directory or a directory a 403, a URL that is not
UTF-8 a 400, all logged in the access log. The app installs it for
``/static/`` with the ``static_handler_class`` setting.
"""

from __future__ import annotations

from tornado.web import HTTPError, StaticFileHandler

from tornado_kit import JSONErrorMixin, TimingMixin


class StaticFiles(JSONErrorMixin, TimingMixin, StaticFileHandler):
    """``GET/HEAD /static/<path>``: files of ``static/``, problem+json for every error."""

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        """Tornado's checks, plus: a path the OS refuses to look up is a 404.

        ``os.stat`` raises ``ValueError`` (not ``OSError``, which Tornado turns
        into a 404) for a path with a NUL character (``/static/x%00``), which
        Tornado 6.6 lets through as a 500.
        """
        try:
            return super().validate_absolute_path(root, absolute_path)
        except ValueError:
            raise HTTPError(404) from None


class IndexPage(StaticFiles):
    """``GET /``: the single page, never cached (it is tiny and changes with the app)."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")
