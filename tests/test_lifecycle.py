"""Per-application state and the phased shutdown hook (tornado_kit._lifecycle)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from tornado.web import Application

from tornado_kit._lifecycle import (
    PHASE_CONNECTIONS,
    PHASE_RESOURCES,
    shutdown,
    state_for,
)


def test_state_is_per_application_and_created_once() -> None:
    a, b = Application(), Application()
    assert state_for(a) is state_for(a)
    assert state_for(a) is not state_for(b)
    state_for(a).resources["x"] = 1
    assert "x" not in state_for(b).resources
    assert not state_for(a).shutting_down


async def test_phases_run_in_order_and_callbacks_run_once() -> None:
    app = Application()
    state = state_for(app)
    calls: list[str] = []

    async def resources() -> None:
        calls.append("resources")

    async def connections() -> None:
        await asyncio.sleep(0.01)
        calls.append("connections-async")

    # Registered out of order: the phase decides, then registration order.
    state.on_shutdown(resources, PHASE_RESOURCES)
    state.on_shutdown(lambda: calls.append("connections-sync"), PHASE_CONNECTIONS)
    state.on_shutdown(connections, PHASE_CONNECTIONS)
    await shutdown(app, timeout=5)
    assert calls == ["connections-sync", "connections-async", "resources"]
    assert state.shutting_down
    await shutdown(app, timeout=5)  # nothing left to run
    assert len(calls) == 3


async def test_callbacks_of_one_phase_run_concurrently() -> None:
    app = Application()
    started: list[int] = []
    gate = asyncio.Event()

    async def waits_for_the_other(n: int) -> None:
        started.append(n)
        if len(started) == 2:
            gate.set()
        await gate.wait()

    state_for(app).on_shutdown(lambda: waits_for_the_other(0), PHASE_CONNECTIONS)
    state_for(app).on_shutdown(lambda: waits_for_the_other(1), PHASE_CONNECTIONS)
    await asyncio.wait_for(shutdown(app, timeout=5), 10)
    assert sorted(started) == [0, 1]


async def test_max_phase_leaves_later_phases_for_a_second_call() -> None:
    app = Application()
    calls: list[int] = []
    state = state_for(app)
    state.on_shutdown(lambda: calls.append(PHASE_RESOURCES), PHASE_RESOURCES)
    state.on_shutdown(lambda: calls.append(PHASE_CONNECTIONS), PHASE_CONNECTIONS)
    await shutdown(app, timeout=5, max_phase=PHASE_CONNECTIONS)
    assert calls == [PHASE_CONNECTIONS]
    assert state.shutting_down  # new long-lived handlers are refused from now on
    await shutdown(app, timeout=5)
    assert calls == [PHASE_CONNECTIONS, PHASE_RESOURCES]


async def test_failing_callbacks_are_logged_and_do_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Application()
    calls: list[str] = []

    def sync_failure() -> None:
        raise RuntimeError("sync boom")

    async def async_failure() -> None:
        raise RuntimeError("async boom")

    state = state_for(app)
    state.on_shutdown(sync_failure, PHASE_CONNECTIONS)
    state.on_shutdown(async_failure, PHASE_CONNECTIONS)
    state.on_shutdown(lambda: calls.append("same phase"), PHASE_CONNECTIONS)
    state.on_shutdown(lambda: calls.append("next phase"), PHASE_RESOURCES)
    with caplog.at_level(logging.ERROR, logger="tornado_kit"):
        await shutdown(app, timeout=5)
    assert calls == ["same phase", "next phase"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2
    messages = {str(r.exc_info[1]) for r in errors if r.exc_info}
    assert messages == {"sync boom", "async boom"}


async def test_slow_callback_is_cancelled_after_the_timeout_and_cleans_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Application()
    events: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            events.append("slow cleaned up")

    state = state_for(app)
    state.on_shutdown(slow, PHASE_CONNECTIONS)
    state.on_shutdown(lambda: events.append("next phase"), PHASE_RESOURCES)
    with caplog.at_level(logging.WARNING, logger="tornado_kit"):
        await asyncio.wait_for(shutdown(app, timeout=0.1), 10)
    # The cancelled callback finished its cleanup before the next phase ran.
    assert events == ["slow cleaned up", "next phase"]
    assert any("did not finish in time" in r.getMessage() for r in caplog.records)


async def test_shutdown_of_an_app_without_state_marks_it() -> None:
    app = Application()
    await shutdown(app)
    assert state_for(app).shutting_down
