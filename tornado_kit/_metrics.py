"""Prometheus metrics for requests and executors (extra ``prometheus``).

``prometheus_client`` is imported when :class:`PrometheusMetrics` is built,
not when this module is imported, so the package works without it.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from tornado.web import HTTPError, RequestHandler

from tornado_kit._checks import argument, check_instance, wrong_kind
from tornado_kit._errors import JSONErrorMixin

__all__ = ["DEFAULT_BUCKETS", "MetricsHandler", "PrometheusMetrics"]

#: Histogram buckets in seconds: 1 ms to 10 s.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: RFC 9110 §9 methods plus PATCH (RFC 5789): the only ``method`` label values
#: besides ``"other"``. Method names are case-sensitive (RFC 9110 §9.1).
_STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)

#: Every status label: the three-digit codes (RFC 9110 §15), else ``"other"``.
_STATUS_LABELS = {code: str(code) for code in range(100, 600)}


def _prometheus() -> ModuleType:
    try:
        return importlib.import_module("prometheus_client")
    except ImportError as exc:
        raise ImportError(
            "PrometheusMetrics needs prometheus-client: pip install 'tornado-kit[prometheus]'"
        ) from exc


class PrometheusMetrics:
    """Request and executor metrics in a ``prometheus_client`` registry.

    Put one in the application settings; :class:`~tornado_kit.TimingMixin`
    observes every request into it and :class:`MetricsHandler` serves it::

        metrics = PrometheusMetrics()
        app = Application(
            [(r"/metrics", MetricsHandler), (r"/users/(.*)", UserHandler)],
            metrics=metrics,
        )

    Metrics (``tornado`` is the default *namespace*):

    * ``tornado_http_request_duration_seconds`` histogram, labels
      ``handler`` (class name), ``method``, ``status``. A WebSocket
      connection is observed when it closes, with status 101 and the
      connection's length. No client-chosen text becomes a label: a method
      outside the RFC 9110 ones and PATCH is ``"other"``, and so is a status
      outside 100-599, so the number of series stays bounded whatever
      clients send.
    * ``tornado_executor_queue_depth`` gauge, label ``executor``.
    * ``tornado_executor_rejected_total`` counter, label ``executor``.

    :param registry: a ``prometheus_client.CollectorRegistry``; by default a
        new one owned by this object (pass ``prometheus_client.REGISTRY`` to
        use the global one, together with the process metrics).
    :param namespace: metric name prefix.
    :param buckets: histogram buckets, in seconds.
    :raises ImportError: when prometheus-client is not installed.
    :raises TypeError: for a *registry* that is not a ``CollectorRegistry``,
        a non-``str`` *namespace* or *buckets* that are not numbers.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        registry: Any = None,
        namespace: str = "tornado",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        prometheus = _prometheus()
        arg = functools.partial(argument, "PrometheusMetrics")
        if registry is None:
            registry = prometheus.CollectorRegistry()
        self.registry: Any = check_instance(
            registry, prometheus.CollectorRegistry, arg("registry"), "a CollectorRegistry"
        )
        check_instance(namespace, str, arg("namespace"), "a str")
        expected = "a sequence of numbers (seconds)"
        if isinstance(buckets, (str, bytes)) or not isinstance(buckets, Sequence):
            raise wrong_kind(arg("buckets"), expected, buckets)
        for bound in buckets:
            if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                raise wrong_kind(arg("buckets"), expected, bound)
        self.request_duration: Any = prometheus.Histogram(
            "http_request_duration_seconds",
            "Time to serve an HTTP request (a WebSocket: the connection's length).",
            ["handler", "method", "status"],
            namespace=namespace,
            buckets=tuple(buckets),
            registry=self.registry,
        )
        self.executor_queue_depth: Any = prometheus.Gauge(
            "executor_queue_depth",
            "Jobs waiting for an executor worker.",
            ["executor"],
            namespace=namespace,
            registry=self.registry,
        )
        self.executor_rejected: Any = prometheus.Counter(
            "executor_rejected",
            "Jobs refused because the executor queue was full.",
            ["executor"],
            namespace=namespace,
            registry=self.registry,
        )

    def observe_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        """Record one request of *seconds* (called by ``TimingMixin``).

        *method* and *status* come from the client or the handler: a method
        outside the RFC 9110 ones and PATCH, and a status outside 100-599 are
        labelled ``"other"``.
        """
        self.request_duration.labels(
            handler,
            method if method in _STANDARD_METHODS else "other",
            _STATUS_LABELS.get(status, "other"),
        ).observe(seconds)

    def set_executor_queue_depth(self, executor: str, depth: int) -> None:
        """Set the number of jobs waiting in *executor* (called by ``ExecutorMixin``)."""
        self.executor_queue_depth.labels(executor).set(depth)

    def inc_executor_rejected(self, executor: str) -> None:
        """Count one job *executor* refused (called by ``ExecutorMixin``)."""
        self.executor_rejected.labels(executor).inc()

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """Return ``(body, content_type)`` in the format *accept* asks for.

        Plain text exposition format by default; OpenMetrics when the
        ``Accept`` header asks for ``application/openmetrics-text``.
        """
        exposition = importlib.import_module("prometheus_client.exposition")
        encoder, content_type = exposition.choose_encoder(accept or "")
        body: bytes = encoder(self.registry)
        return body, str(content_type)


class MetricsHandler(JSONErrorMixin, RequestHandler):
    """Serve the metrics of the ``metrics`` setting for Prometheus to scrape.

    ::

        app = Application([(r"/metrics", MetricsHandler)], metrics=PrometheusMetrics())

    The ``Content-Type`` is the one prometheus-client gives for the format
    negotiated from ``Accept`` (text exposition format by default). Without a
    ``metrics`` setting every request is a 500 (a configuration error, logged
    with the reason). Protect the route (network policy, or combine with
    ``TokenAuthMixin``) if the metrics are not public.

    .. versionadded:: 0.1
    """

    #: The :class:`PrometheusMetrics` to serve (defaults to the ``metrics`` setting).
    metrics: PrometheusMetrics | None = None

    def get(self) -> None:
        """Write the current metrics."""
        metrics = self.metrics or self.settings.get("metrics")
        if not isinstance(metrics, PrometheusMetrics):
            raise HTTPError(500, "MetricsHandler needs a PrometheusMetrics in settings['metrics']")
        body, content_type = metrics.exposition(self.request.headers.get("Accept"))
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)
