"""BoundedExecutor and ExecutorMixin, through a real server on real sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import multiprocessing.context
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

from tests import _jobs
from tests._example_process import run_example
from tests._servers import eventually as wait_until
from tests._servers import free_port, wait_for_port
from tornado_kit import (
    BoundedExecutor,
    ExecutorFull,
    ExecutorMixin,
    ExecutorShutdown,
    JSONErrorMixin,
    PrometheusMetrics,
    TimingMixin,
    executor_for,
)
from tornado_kit._access import access_fields
from tornado_kit._lifecycle import shutdown, state_for

SECRET = _jobs.SECRET


class _Recorded(ExecutorMixin, RequestHandler):
    """Keeps each request's access fields so tests can read them."""

    def on_finish(self) -> None:
        self.settings["access_log"].append((self.request.path, dict(access_fields(self))))


class SquareHandler(_Recorded):
    async def get(self, n: str) -> None:
        self.write({"result": await self.run_in_executor(_jobs.square, int(n))})


class BoomHandler(_Recorded):
    async def get(self) -> None:
        await self.run_in_executor(_jobs.boom)


class SleepHandler(_Recorded):
    async def get(self) -> None:
        seconds = float(self.get_argument("s"))
        job = _jobs.sleep_then_fail if self.get_argument("fail", "") else _jobs.sleep_then
        self.write({"result": await self.run_in_executor(job, seconds)})


class HoldHandler(_Recorded):
    async def get(self) -> None:
        self.write({"result": await self.run_in_executor(_jobs.wait_for, self.settings["release"])})


class AppendHandler(_Recorded):
    async def get(self) -> None:
        await self.run_in_executor(_jobs.append_to, self.settings["appended"], "ran")


class ContextHandler(_Recorded):
    async def get(self) -> None:
        _jobs.REQUEST_VAR.set(self.request.headers["X-Who"])
        self.write({"seen": await self.run_in_executor(_jobs.read_request_var)})


class HealthHandler(RequestHandler):
    def get(self) -> None:
        self.write("ok")


def make_app(**settings: Any) -> Application:
    """An app whose handlers offload to ``settings["executor"]`` (or the default)."""
    process_pool = settings.pop("process_executor", None)
    handlers: list[Any] = [
        (r"/square/(\d+)", SquareHandler),
        (r"/boom", BoomHandler),
        (r"/sleep", SleepHandler),
        (r"/hold", HoldHandler),
        (r"/ctx", ContextHandler),
        (r"/append", AppendHandler),
        (r"/healthz", HealthHandler),
    ]
    if process_pool is not None:

        class ProcessHandler(_Recorded):
            executor = process_pool

            async def get(self, what: str) -> None:
                if what == "pid":
                    self.write({"pid": await self.run_in_executor(_jobs.worker_pid)})
                elif what == "die":
                    await self.run_in_executor(_jobs.die)
                elif what == "runaway":
                    await self.run_in_executor(_jobs.sleep_then, 60)
                elif what == "bound":
                    await self.run_in_executor(self.compute)
                elif what == "boundmsg":
                    try:
                        await self.run_in_executor(self.compute)
                    except TypeError as exc:
                        self.write(
                            {"error": str(exc), "submitted": process_pool.stats()["submitted"]}
                        )

            def compute(self) -> int:
                return 42

        handlers.append((r"/process/(\w+)", ProcessHandler))
    settings.setdefault("release", threading.Event())
    settings.setdefault("access_log", [])
    settings.setdefault("appended", [])
    return Application(handlers, **settings)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a worker thread blocked


@pytest.fixture
def small() -> BoundedExecutor:
    return BoundedExecutor(max_workers=1, max_pending=1, name="small")


@pytest.fixture
def app(small: BoundedExecutor, release: threading.Event) -> Application:
    return make_app(executor=small, release=release)


async def get(client: AsyncHTTPClient, url: str, **kw: Any) -> HTTPResponse:
    return await client.fetch(url, raise_error=False, **kw)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# -- BoundedExecutor on its own ------------------------------------------------


def test_max_pending_counts_waiting_jobs_and_rejects_the_next() -> None:
    pool = BoundedExecutor(max_workers=1, max_pending=1, name="unit", retry_after=7)
    gate = threading.Event()
    try:
        first = pool.submit(_jobs.wait_for, gate)
        second = pool.submit(_jobs.wait_for, gate)
        stats = pool.stats()
        assert (stats["running"], stats["queued"], stats["rejected"]) == (1, 1, 0)
        with pytest.raises(ExecutorFull) as excinfo:
            pool.submit(_jobs.square, 2)
        assert excinfo.value.retry_after == 7
        assert pool.rejected == 1
        gate.set()
        assert first.result(10) == second.result(10) == "released"
        stats = pool.stats()
        assert (stats["running"], stats["queued"], stats["completed"]) == (0, 0, 2)
        assert pool.submit(_jobs.square, 3).result(10) == 9  # room again
    finally:
        gate.set()
        pool.shutdown()


def test_max_pending_zero_admits_only_one_job_per_worker() -> None:
    pool = BoundedExecutor(max_workers=2, max_pending=0)
    gate = threading.Event()
    try:
        jobs = [pool.submit(_jobs.wait_for, gate) for _ in range(2)]
        with pytest.raises(ExecutorFull):
            pool.submit(_jobs.square, 1)
        gate.set()
        assert [j.result(10) for j in jobs] == ["released", "released"]
    finally:
        gate.set()
        pool.shutdown()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workers=st.integers(1, 3),
    pending=st.integers(0, 3),
    submissions=st.integers(0, 10),
)
def test_admission_is_exactly_workers_plus_pending(
    workers: int, pending: int, submissions: int
) -> None:
    pool = BoundedExecutor(max_workers=workers, max_pending=pending)
    gate = threading.Event()
    accepted = []
    rejected = 0
    try:
        for _ in range(submissions):
            try:
                accepted.append(pool.submit(_jobs.wait_for, gate))
            except ExecutorFull:
                rejected += 1
        assert len(accepted) == min(submissions, workers + pending)
        assert rejected == pool.rejected == submissions - len(accepted)
        assert pool.running + pool.queued == len(accepted)
        assert pool.queued <= pending
    finally:
        gate.set()
        pool.shutdown()
    assert all(f.result() == "released" for f in accepted)
    assert pool.stats()["completed"] == len(accepted)


def test_pool_is_created_lazily_on_first_submit() -> None:
    def pool_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("tornado-kit-lazy")]

    thread_pool = BoundedExecutor(name="lazy")
    process_pool = BoundedExecutor(kind="process", name="lazyproc")
    assert not thread_pool.stats()["started"]
    assert not process_pool.stats()["started"]
    assert pool_threads() == []
    try:
        assert thread_pool.submit(_jobs.square, 4).result(10) == 16
        assert thread_pool.stats()["started"]
        assert pool_threads() != []
    finally:
        thread_pool.shutdown()
        process_pool.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "fiber"}, "kind"),
        ({"max_workers": 0}, "max_workers"),
        ({"max_pending": -1}, "max_pending"),
        ({"retry_after": -1}, "retry_after"),
    ],
)
def test_invalid_configuration_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BoundedExecutor(**kwargs)


def test_unpicklable_process_jobs_raise_type_error_before_queuing() -> None:
    pool = BoundedExecutor(kind="process", max_workers=1)

    def local_function() -> int:
        return 1

    try:
        with pytest.raises(TypeError, match=r"cannot be pickled.*module-level function"):
            pool.submit(lambda: 1)
        with pytest.raises(TypeError, match=r"local_function.*cannot be pickled"):
            pool.submit(local_function)
        with pytest.raises(TypeError, match=r"argument 0 .*wait_for cannot be pickled \(Event"):
            pool.submit(_jobs.wait_for, threading.Event())
        with pytest.raises(TypeError, match=r"argument timeout= .*cannot be pickled"):
            pool.submit(_jobs.sleep_then, 0, timeout=threading.Lock())
        stats = pool.stats()
        assert (stats["submitted"], stats["started"]) == (0, False)
    finally:
        pool.shutdown()


async def test_a_plain_pool_in_the_executor_setting_is_a_clear_type_error(
    release: threading.Event, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)  # what Tornado's @run_on_executor convention uses
    app = make_app(executor=pool, release=release)
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    try:
        response = await get(http_client, f"http://127.0.0.1:{port}/square/2")
        assert response.code == 500
        assert "needs a BoundedExecutor" in caplog.text
        assert "not ThreadPoolExecutor" in caplog.text
        with pytest.raises(TypeError, match=r"needs a BoundedExecutor .* not ThreadPoolExecutor"):
            executor_for(app)
    finally:
        server.stop()
        await server.close_all_connections()
        pool.shutdown()


@pytest.mark.parametrize("context", ["spawn", multiprocessing.get_context("spawn")])
def test_start_method_can_be_chosen_by_name_or_context(
    context: str | multiprocessing.context.BaseContext,
) -> None:
    pool = BoundedExecutor(kind="process", max_workers=1, mp_context=context, name="spawned")
    try:
        assert pool.submit(_jobs.square, 7).result(60) == 49
        assert repr(pool).startswith("<BoundedExecutor 'spawned' process workers=1")
    finally:
        pool.shutdown()


async def test_closing_an_unused_executor_creates_nothing() -> None:
    pool = BoundedExecutor(kind="process")
    await pool.aclose()
    assert pool.stats()["started"] is False
    with pytest.raises(ExecutorShutdown):
        pool.submit(_jobs.square, 1)


def test_submit_after_shutdown_is_refused() -> None:
    pool = BoundedExecutor(max_workers=1)
    assert pool.submit(_jobs.square, 5).result(10) == 25
    pool.shutdown()
    pool.shutdown()  # harmless twice
    with pytest.raises(ExecutorShutdown):
        pool.submit(_jobs.square, 5)


# -- ExecutorMixin through a real server ---------------------------------------


async def test_result_comes_back_and_access_fields_are_recorded(
    base_url: str, http_client: AsyncHTTPClient, app: Application
) -> None:
    response = await get(http_client, base_url + "/square/12")
    assert response.code == 200
    assert response.body == b'{"result": 144}'
    assert app.settings["access_log"] == [
        ("/square/12", {"executor_queue": 0, "executor_rejected": False})
    ]


async def test_job_that_raises_gives_500_without_leaking(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        response = await get(http_client, base_url + "/boom")
    assert response.code == 500
    assert SECRET.encode() not in response.body
    assert b"ValueError" not in response.body
    # the exception itself, unchanged, is in the server log, where it belongs
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert any(isinstance(e, ValueError) and SECRET in str(e) for e in logged)


async def test_job_that_hangs_gives_504_and_its_result_is_discarded_and_logged(
    app: Application,
    base_url: str,
    http_client: AsyncHTTPClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app.settings["executor_timeout"] = 0.1
    with caplog.at_level(logging.INFO, logger="tornado_kit.executor"):
        response = await get(http_client, base_url + "/sleep?s=0.4")
        assert response.code == 504
        await wait_until(lambda: "result discarded" in caplog.text)
    assert "never retrieved" not in caplog.text


async def test_job_that_fails_after_its_504_is_logged_not_lost(
    app: Application,
    base_url: str,
    http_client: AsyncHTTPClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app.settings["executor_timeout"] = 0.1
    with caplog.at_level(logging.INFO):
        response = await get(http_client, base_url + "/sleep?s=0.3&fail=1")
        assert response.code == 504
        await wait_until(lambda: "failed after its caller stopped waiting" in caplog.text)
    assert "late failure" in caplog.text
    assert "never retrieved" not in caplog.text


class PatientHandler(SleepHandler):
    executor_timeout = 5.0


class TestClassAttributeWins:
    @pytest.fixture
    def app(self, small: BoundedExecutor, release: threading.Event) -> Application:
        app = make_app(executor=small, release=release, executor_timeout=0.05)
        app.add_handlers(r".*", [(r"/patient", PatientHandler)])
        return app

    async def test_class_attribute_timeout_wins_over_the_setting(
        self, base_url: str, http_client: AsyncHTTPClient
    ) -> None:
        assert (await get(http_client, base_url + "/sleep?s=0.2")).code == 504
        assert (await get(http_client, base_url + "/patient?s=0.2")).code == 200


async def test_executor_class_attribute_wins_over_the_setting_and_is_shut_down(
    app: Application, small: BoundedExecutor, base_url: str, http_client: AsyncHTTPClient
) -> None:
    own = BoundedExecutor(max_workers=1, name="own")

    class OwnPoolHandler(SquareHandler):
        executor = own

    app.add_handlers(r".*", [(r"/own/(\d+)", OwnPoolHandler)])
    response = await get(http_client, base_url + "/own/3")
    assert response.body == b'{"result": 9}'
    assert (own.stats()["completed"], small.stats()["completed"]) == (1, 0)
    await shutdown(app, timeout=5)
    assert own.stats()["closed"]


async def test_a_queued_job_is_cancelled_when_its_request_times_out(
    app: Application,
    small: BoundedExecutor,
    release: threading.Event,
    base_url: str,
    http_client: AsyncHTTPClient,
) -> None:
    holder = asyncio.ensure_future(get(http_client, base_url + "/hold"))
    await wait_until(lambda: small.running == 1)
    app.settings["executor_timeout"] = 0.1
    response = await get(http_client, base_url + "/append")  # waits behind /hold
    assert response.code == 504
    assert small.queued == 0  # cancelled at once: its place in the queue is free
    release.set()
    assert (await holder).code == 200
    await wait_until(lambda: small.stats()["completed"] == 2)
    assert app.settings["appended"] == []  # the queued job never ran


async def test_flood_gets_503_with_retry_after_while_healthz_answers(
    app: Application,
    small: BoundedExecutor,
    release: threading.Event,
    base_url: str,
    http_client: AsyncHTTPClient,
) -> None:
    running = asyncio.ensure_future(get(http_client, base_url + "/hold"))
    await wait_until(lambda: small.running == 1)
    waiting = asyncio.ensure_future(get(http_client, base_url + "/hold"))
    await wait_until(lambda: small.queued == 1)

    rejected = await get(http_client, base_url + "/hold")
    assert rejected.code == 503
    assert rejected.headers["Retry-After"] == "1"
    assert small.rejected == 1

    health = await get(http_client, base_url + "/healthz")  # the loop is not blocked
    assert (health.code, health.body) == (200, b"ok")

    release.set()
    assert [(await running).code, (await waiting).code] == [200, 200]
    fields = {path: f for path, f in app.settings["access_log"] if f["executor_rejected"]}
    assert fields == {"/hold": {"executor_queue": 1, "executor_rejected": True}}


async def test_contextvars_reach_thread_workers(
    base_url: str, http_client: AsyncHTTPClient
) -> None:
    responses = await asyncio.gather(
        get(http_client, base_url + "/ctx", headers={"X-Who": "alice"}),
        get(http_client, base_url + "/ctx", headers={"X-Who": "bob"}),
    )
    assert [r.body for r in responses] == [b'{"seen": "alice"}', b'{"seen": "bob"}']


async def test_default_executor_is_shared_per_app_and_shut_down_at_stop(
    release: threading.Event, http_client: AsyncHTTPClient
) -> None:
    app = make_app(release=release)  # no "executor" setting: the shared default
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    url = f"http://127.0.0.1:{port}"
    try:
        for n in range(3):
            assert (await get(http_client, f"{url}/square/{n}")).code == 200
        default = executor_for(app)
        assert default is executor_for(app)
        assert default.name == "default"
        assert default.stats()["completed"] == 3
        assert len(state_for(app)._callbacks) == 1  # registered once per app

        slow = asyncio.ensure_future(get(http_client, url + "/sleep?s=0.2"))
        await wait_until(lambda: default.running == 1)
        server.stop()
        await shutdown(app, timeout=5)
        # the in-flight request got its result before the pool went away
        assert (await slow).body == b'{"result": "done"}'
        assert default.stats()["closed"]
        with pytest.raises(ExecutorShutdown):
            default.submit(_jobs.square, 1)
        await wait_until(
            lambda: (
                not [t for t in threading.enumerate() if t.name.startswith("tornado-kit-default")]
            )
        )
    finally:
        server.stop()
        await server.close_all_connections()


async def test_executor_for_used_outside_a_handler_is_shut_down_with_its_app() -> None:
    first, second = Application(), Application()
    default = executor_for(first)
    assert executor_for(second) is not default  # one default per application
    assert default.stats()["started"] is False  # no pool before the first job
    assert await default.run(_jobs.square, 3) == 9
    own = BoundedExecutor(max_workers=1, name="own")
    third = Application(executor=own)
    assert executor_for(third) is own
    assert await own.run(_jobs.square, 4) == 16
    for app in (first, second, third):
        await shutdown(app, timeout=5)
    assert default.stats()["closed"]
    assert own.stats()["closed"]
    assert executor_for(second).stats()["closed"]
    with pytest.raises(ExecutorShutdown):
        default.submit(_jobs.square, 1)


async def test_requests_after_shutdown_get_503(
    app: Application, small: BoundedExecutor, base_url: str, http_client: AsyncHTTPClient
) -> None:
    assert (await get(http_client, base_url + "/square/2")).code == 200
    await shutdown(app, timeout=5)  # what serve() does on SIGTERM, before draining
    response = await get(http_client, base_url + "/square/2")
    assert response.code == 503
    assert response.headers["Retry-After"] == "1"


# -- process pools ---------------------------------------------------------------


@pytest.fixture
def process_app(release: threading.Event) -> Application:
    return make_app(
        release=release,
        process_executor=BoundedExecutor(max_workers=1, max_pending=2, kind="process"),
    )


async def test_process_pool_runs_module_level_functions_and_stops_with_the_server(
    process_app: Application, http_client: AsyncHTTPClient
) -> None:
    sock, port = bind_unused_port()
    server = HTTPServer(process_app)
    server.add_sockets([sock])
    url = f"http://127.0.0.1:{port}"
    try:
        response = await get(http_client, url + "/process/pid")
        assert response.code == 200
        pid = int(response.body.decode().split(":")[1].strip(" }"))
        assert pid != os.getpid()

        # a bound handler method cannot travel to another process: 500, not queued
        assert (await get(http_client, url + "/process/bound")).code == 500
        body = json.loads((await get(http_client, url + "/process/boundmsg")).body)
        assert "ProcessHandler.compute is a bound method of a request handler" in body["error"]
        assert body["submitted"] == 1  # only the /pid job ever reached the pool

        # a worker that dies breaks the pool; its request fails, the next one works
        assert (await get(http_client, url + "/process/die")).code == 500
        response = await get(http_client, url + "/process/pid")
        assert response.code == 200
        pid = int(response.body.decode().split(":")[1].strip(" }"))

        server.stop()
        await shutdown(process_app, timeout=5)
        await wait_until(lambda: _gone(pid))
    finally:
        server.stop()
        await server.close_all_connections()


async def test_a_runaway_process_job_is_terminated_when_shutdown_times_out(
    process_app: Application, http_client: AsyncHTTPClient
) -> None:
    sock, port = bind_unused_port()
    server = HTTPServer(process_app)
    server.add_sockets([sock])
    url = f"http://127.0.0.1:{port}"
    try:
        # no timeout yet: starting the worker process may take a while on a busy machine
        response = await get(http_client, url + "/process/pid")
        worker = int(json.loads(response.body)["pid"])
        process_app.settings["executor_timeout"] = 0.2
        assert (await get(http_client, url + "/process/runaway")).code == 504  # still running
        server.stop()
        await shutdown(process_app, timeout=0.3)  # gives up on the 60 s job
        await wait_until(lambda: _gone(worker))
    finally:
        server.stop()
        await server.close_all_connections()


# -- with JSONErrorMixin, TimingMixin and PrometheusMetrics ------------------------


class FullStackExecutorFirst(ExecutorMixin, JSONErrorMixin, TimingMixin, RequestHandler):
    async def get(self, what: str) -> None:
        if what == "boom":
            await self.run_in_executor(_jobs.boom)
        elif what == "hold":
            await self.run_in_executor(_jobs.wait_for, self.settings["release"])
        else:
            await self.run_in_executor(_jobs.sleep_then, float(what))
        self.write({"ok": True})


class FullStackExecutorLast(JSONErrorMixin, TimingMixin, ExecutorMixin, RequestHandler):
    get = FullStackExecutorFirst.get


def sample(metrics: PrometheusMetrics, name: str) -> float | None:
    value = metrics.registry.get_sample_value(name, {"executor": "small"})
    return None if value is None else float(value)


class TestFullStack:
    @pytest.fixture(params=[FullStackExecutorFirst, FullStackExecutorLast])
    def app(
        self, request: pytest.FixtureRequest, small: BoundedExecutor, release: threading.Event
    ) -> Application:
        return Application(
            [(r"/job/([\w.]+)", request.param)],
            executor=small,
            executor_timeout=0.1,
            release=release,
            metrics=PrometheusMetrics(),
        )

    async def test_errors_are_problem_details_with_access_record_and_metrics(
        self,
        app: Application,
        base_url: str,
        small: BoundedExecutor,
        release: threading.Event,
        http_client: AsyncHTTPClient,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        metrics: PrometheusMetrics = app.settings["metrics"]
        with caplog.at_level(logging.INFO, logger="tornado_kit.access"):
            boom = await get(http_client, base_url + "/job/boom")
            assert boom.code == 500
            assert boom.headers["Content-Type"].startswith("application/problem+json")
            assert json.loads(boom.body)["detail"] == "internal server error"
            assert SECRET not in boom.body.decode()

            slow = await get(http_client, base_url + "/job/0.3")
            assert slow.code == 504
            assert json.loads(slow.body)["status"] == 504

            await wait_until(lambda: small.running == 0)
            holders = [asyncio.ensure_future(get(http_client, base_url + "/job/hold"))]
            await wait_until(lambda: small.running == 1)
            holders.append(asyncio.ensure_future(get(http_client, base_url + "/job/hold")))
            await wait_until(lambda: small.queued == 1)
            assert sample(metrics, "tornado_executor_queue_depth") == 1.0

            full = await get(http_client, base_url + "/job/hold")
            assert full.code == 503
            assert full.headers["Retry-After"] == "1"
            assert full.headers["X-Request-ID"]
            assert json.loads(full.body)["status"] == 503
            assert sample(metrics, "tornado_executor_rejected_total") == 1.0

            release.set()
            assert [(await h).code for h in holders] == [200, 200]
        assert sample(metrics, "tornado_executor_queue_depth") == 0.0

        records = [r.access for r in caplog.records if hasattr(r, "access")]
        by_status = {rec["status"]: rec for rec in records}
        assert by_status[503]["executor_rejected"] is True
        assert by_status[503]["executor_queue"] == 1
        assert by_status[500]["executor_rejected"] is False
        assert [rec["executor_queue"] for rec in records if rec["status"] == 200] == [0, 0]


# -- examples/06_executor.py runs on its own ----------------------------------------


@pytest.fixture
def example_06() -> Iterator[str]:
    yield from run_example("06_executor.py")


async def test_example_06_runs_on_its_own(example_06: str, http_client: AsyncHTTPClient) -> None:
    response = await get(http_client, example_06 + "/checksum?rounds=1000")
    assert response.code == 200
    assert json.loads(response.body)["rounds"] == 1000
    assert (await get(http_client, example_06 + "/checksum?rounds=x")).code == 400

    flood = await asyncio.gather(
        *(get(http_client, example_06 + "/checksum?rounds=2000000") for _ in range(10)),
        get(http_client, example_06 + "/healthz"),
    )
    codes = [r.code for r in flood[:-1]]
    assert flood[-1].code == 200
    assert 503 in codes
    assert set(codes) <= {200, 503, 504}
    assert all(r.headers["Retry-After"] == "1" for r in flood[:-1] if r.code == 503)
    stats = json.loads((await get(http_client, example_06 + "/stats")).body)
    assert stats["rejected"] == codes.count(503)


# -- through serve(): SIGTERM lets the job finish, then the pool is released --------


async def test_sigterm_under_serve_finishes_the_job_then_stops_the_workers(
    http_client: AsyncHTTPClient,
) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "tornado_kit", "serve", "tests._jobs:make_serve_app"]
    proc = subprocess.Popen(
        [*argv, "--port", str(port), "--address", "127.0.0.1", "--shutdown-timeout", "10"],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_for_port, port, 30.0)
        url = f"http://127.0.0.1:{port}"
        worker = json.loads((await get(http_client, url + "/pid")).body)["pid"]
        slow = asyncio.ensure_future(get(http_client, url + "/slow"))
        for _ in range(500):  # until the job is running in the worker
            if json.loads((await get(http_client, url + "/stats")).body)["running"] == 1:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the job never started")
        proc.send_signal(signal.SIGTERM)
        response = await slow
        assert (response.code, response.body) == (200, b'{"result": "done"}')
        returncode = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
        assert returncode == 0
        await wait_until(lambda: _gone(worker))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
