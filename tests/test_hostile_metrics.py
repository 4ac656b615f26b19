"""Hostile clients against the metrics: no client-chosen value becomes a label.

An attack run sent 2,000 requests with random methods to an unknown path and
grew ``/metrics`` from 77 KB to 4 MB: every method was a new series. A method
outside RFC 9110's and PATCH is now labelled ``"other"``, and a status
outside 100-599 too (``set_status`` accepts any integer since Tornado 5).
"""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application

from tornado_kit import MetricsHandler, NotFoundHandler, PrometheusMetrics, TimingMixin

STANDARD = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
# RFC 9110 §5.6.2: token = 1*tchar
TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
SERIES = "tk_http_request_duration_seconds_count"


class Missing(TimingMixin, NotFoundHandler):
    """404 for every path and every method, observed into the metrics."""


@pytest.fixture
def metrics() -> PrometheusMetrics:
    return PrometheusMetrics(namespace="tk")


@pytest.fixture
def app(metrics: PrometheusMetrics) -> Application:
    return Application(
        [("/metrics", MetricsHandler)], default_handler_class=Missing, metrics=metrics
    )


def series(text: str) -> dict[tuple[str, str, str], float]:
    """``(handler, method, status) -> count`` of the request histogram."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == SERIES:
                labels = sample.labels
                found[(labels["handler"], labels["method"], labels["status"])] = sample.value
    return found


def random_method(rng: random.Random) -> str:
    return "".join(rng.choice(TCHAR) for _ in range(rng.randint(1, 24)))


async def test_random_methods_do_not_grow_the_metrics(
    base_url: str, http_client: AsyncHTTPClient
) -> None:
    async def send(method: str) -> None:
        response = await http_client.fetch(
            f"{base_url}/no/such/path",
            method=method,
            allow_nonstandard_methods=True,
            body=b"" if method in ("POST", "PUT", "PATCH") else None,
            raise_error=False,
        )
        assert response.code == 404, (method, response.code)

    async def scrape() -> str:
        return (await http_client.fetch(base_url + "/metrics")).body.decode()

    for method in STANDARD:
        await send(method)
    rng = random.Random(20261203)
    for _ in range(200):
        await send(random_method(rng))
    early = await scrape()
    for _ in range(1800):
        await send(random_method(rng))
    late = await scrape()

    found = series(late)
    assert {method for _, method, _ in found} <= {*STANDARD, "other"}
    # Each standard method keeps its own label; the 2,000 random ones share one.
    assert found[("Missing", "other", "404")] >= 2000 - len(STANDARD)
    for method in STANDARD:
        assert found[("Missing", method, "404")] >= 1
    assert len(found) == len(STANDARD) + 1
    # After 200 random methods the exposition has every line it will ever have:
    # 1,800 more add no series, only bigger counts.
    assert series(early).keys() == found.keys()
    assert len(late.splitlines()) == len(early.splitlines())
    print(f"/metrics: {len(early)} bytes after 209 requests, {len(late)} after 2009")


def test_lowercase_and_unknown_methods_are_other() -> None:
    metrics = PrometheusMetrics(namespace="tk")
    for method in ("get", "Get", "PROPFIND", "BREW", "", "G\u00c9T"):
        metrics.observe_request("H", method, 200, 0.01)
    metrics.observe_request("H", "GET", 200, 0.01)
    body, _ = metrics.exposition()
    assert series(body.decode()) == {("H", "other", "200"): 6, ("H", "GET", "200"): 1}


@settings(max_examples=300, deadline=None)
@given(statuses=st.lists(st.integers(min_value=-(10**30), max_value=10**30), max_size=30))
def test_any_status_is_a_three_digit_label_or_other(statuses: list[int]) -> None:
    metrics = PrometheusMetrics(namespace="tk")
    for status in statuses:
        metrics.observe_request("H", "GET", status, 0.01)
    labels = {status for _, _, status in series(metrics.exposition()[0].decode())}
    assert labels <= {str(code) for code in range(100, 600)} | {"other"}
    expected = {str(s) if 100 <= s <= 599 else "other" for s in statuses}
    assert labels == expected
