"""PrometheusMetrics and MetricsHandler through a real server."""

from __future__ import annotations

import builtins
import importlib
import logging
from typing import Any

import prometheus_client
import pytest
from prometheus_client.exposition import choose_encoder
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application, RequestHandler

from tornado_kit import JSONErrorMixin, MetricsHandler, PrometheusMetrics, TimingMixin
from tornado_kit._metrics import DEFAULT_BUCKETS


class Ok(TimingMixin, RequestHandler):
    def get(self) -> None:
        self.write("ok")


class Broken(JSONErrorMixin, TimingMixin, RequestHandler):
    def get(self) -> None:
        raise RuntimeError("x")


@pytest.fixture
def metrics() -> PrometheusMetrics:
    return PrometheusMetrics(namespace="test")


@pytest.fixture
def app(metrics: PrometheusMetrics) -> Application:
    return Application(
        [("/ok", Ok), ("/broken", Broken), ("/metrics", MetricsHandler)], metrics=metrics
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    result = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


async def test_requests_are_observed_and_served(
    base_url: str, http_client: AsyncHTTPClient
) -> None:
    for _ in range(3):
        await http_client.fetch(base_url + "/ok")
    await http_client.fetch(base_url + "/broken", raise_error=False)
    response = await http_client.fetch(base_url + "/metrics")
    # the text exposition format, with the content type prometheus_client gives
    assert response.headers["Content-Type"] == choose_encoder("")[1]
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    values = samples(response.body.decode())
    ok = (("handler", "Ok"), ("method", "GET"), ("status", "200"))
    broken = (("handler", "Broken"), ("method", "GET"), ("status", "500"))
    assert values[("test_http_request_duration_seconds_count", ok)] == 3
    assert values[("test_http_request_duration_seconds_count", broken)] == 1
    assert values[("test_http_request_duration_seconds_sum", ok)] > 0
    # MetricsHandler itself has no TimingMixin, so it is not observed
    assert not any(dict(labels).get("handler") == "MetricsHandler" for _, labels in values)


async def test_openmetrics_is_negotiated(base_url: str, http_client: AsyncHTTPClient) -> None:
    response = await http_client.fetch(
        base_url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.body.rstrip().endswith(b"# EOF")


async def test_executor_metrics(
    metrics: PrometheusMetrics, base_url: str, http_client: AsyncHTTPClient
) -> None:
    metrics.set_executor_queue_depth("images", 4)
    metrics.set_executor_queue_depth("images", 2)
    metrics.inc_executor_rejected("images")
    metrics.inc_executor_rejected("images")
    values = samples((await http_client.fetch(base_url + "/metrics")).body.decode())
    assert values[("test_executor_queue_depth", (("executor", "images"),))] == 2
    assert values[("test_executor_rejected_total", (("executor", "images"),))] == 2


async def test_observed_even_when_access_log_is_off(
    metrics: PrometheusMetrics,
    base_url: str,
    http_client: AsyncHTTPClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="tornado_kit.access")
    await http_client.fetch(base_url + "/ok")
    values = samples((await http_client.fetch(base_url + "/metrics")).body.decode())
    ok = (("handler", "Ok"), ("method", "GET"), ("status", "200"))
    assert values[("test_http_request_duration_seconds_count", ok)] == 1


async def test_metrics_handler_without_setting_is_a_logged_500(
    http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port

    sock, port = bind_unused_port()
    server = HTTPServer(Application([("/metrics", MetricsHandler)]))
    server.add_sockets([sock])
    try:
        response = await http_client.fetch(f"http://127.0.0.1:{port}/metrics", raise_error=False)
    finally:
        server.stop()
        await server.close_all_connections()
    assert response.code == 500
    assert response.headers["Content-Type"] == "application/problem+json"
    assert b"PrometheusMetrics" not in response.body
    assert "settings['metrics']" in caplog.text


def test_instances_have_private_registries() -> None:
    first = PrometheusMetrics()
    second = PrometheusMetrics()  # no "duplicated timeseries" error
    first.observe_request("H", "GET", 200, 0.01)
    assert first.registry is not second.registry
    assert (
        first.registry.get_sample_value(
            "tornado_http_request_duration_seconds_count",
            {"handler": "H", "method": "GET", "status": "200"},
        )
        == 1
    )
    assert (
        second.registry.get_sample_value(
            "tornado_http_request_duration_seconds_count",
            {"handler": "H", "method": "GET", "status": "200"},
        )
        is None
    )


def test_custom_registry_and_buckets() -> None:
    registry = prometheus_client.CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry, namespace="svc", buckets=(0.1, 1.0))
    metrics.observe_request("H", "POST", 201, 0.5)
    labels = {"handler": "H", "method": "POST", "status": "201"}
    assert (
        registry.get_sample_value(
            "svc_http_request_duration_seconds_bucket", {**labels, "le": "0.1"}
        )
        == 0
    )
    assert (
        registry.get_sample_value(
            "svc_http_request_duration_seconds_bucket", {**labels, "le": "1.0"}
        )
        == 1
    )
    assert DEFAULT_BUCKETS[0] == 0.001


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("prometheus_client"):
            raise ImportError("No module named 'prometheus_client'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(importlib, "import_module", lambda name: fake_import(name))
    with pytest.raises(ImportError, match=r"tornado-kit\[prometheus\]"):
        PrometheusMetrics()
