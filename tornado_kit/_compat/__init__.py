"""Private internals of Tornado and of the standard library, in one place.

tornado-kit needs a few things that neither Tornado nor the standard library
offers publicly. Each is read or changed only in this package, in a small
typed function whose docstring says which versions it was checked against
and what it does when the internal is missing, so that a release that
changes one breaks one function (and its test in ``tests/test_compat*.py``),
not a feature. ``tests/test_compat_confined.py`` fails when a private name
of Tornado is used anywhere else. One module per area:

``handler``
    ``RequestHandler`` / ``HTTPError`` response state (finished, status,
    headers, output buffer, transforms) and what differs between Tornado
    6.2 and 6.6.
``stream``
    ``IOStream`` write buffers and WebSocket protocol details.
``http1``
    ``HTTP1Connection`` body limits and keep-alive decisions.
``process``
    ``ProcessPoolExecutor`` workers, the forkserver and resource tracker.
"""
