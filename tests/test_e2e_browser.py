"""The reference app's page in a real headless Chromium (Debian's /usr/bin/chromium).

Two users in two browser contexts (two separate sessions) sign in, chat with
each other over the WebSocket, watch the live feed (EventSource) update, and
one uploads an image and sees its thumbnail. Assertions are on the DOM;
screenshots are saved under the test's tmp dir for a human to look at.

Playwright's async API runs on the test's own event loop, next to the server
(the plugin's ``base_url``): the sync API would block that loop.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image
from tornado.web import Application

from examples.reference_app import close_app, make_app
from tests._refapp import app_config

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed"),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None, reason="playwright is not installed"
    ),
]

TIMEOUT_MS = 20_000


@pytest_asyncio.fixture
async def app(tmp_path: Path) -> AsyncIterator[Application]:
    application = make_app(app_config(tmp_path))
    try:
        yield application
    finally:
        await close_app(application)


async def sign_in(page: Any, base_url: str, name: str) -> None:
    from playwright.async_api import expect

    await page.goto(base_url + "/")
    await page.fill("#name", name)
    await page.click("#signin")
    await expect(page.locator("#whoami")).to_have_text(f"Signed in as {name}")
    # Both long-lived connections are up (the page marks them on <body>).
    await expect(page.locator("body")).to_have_attribute("data-ws", "open")
    await expect(page.locator("body")).to_have_attribute("data-feed", "open")


async def say(page: Any, text: str) -> None:
    await page.fill("#chat-input", text)
    await page.click("#send")


async def test_two_users_chat_feed_and_thumbnail(base_url: str, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=TIMEOUT_MS)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (320, 200), (30, 120, 200)).save(photo)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            alice_ctx = await browser.new_context()
            bob_ctx = await browser.new_context()
            alice = await alice_ctx.new_page()
            bob = await bob_ctx.new_page()
            errors: list[str] = []
            for page in (alice, bob):
                page.on("pageerror", lambda exc: errors.append(str(exc)))

            await sign_in(alice, base_url, "alice")
            await sign_in(bob, base_url, "bob")

            # Bob's sign-in created his user: Alice's feed says so and her
            # user list refreshes from it.
            await expect(alice.locator("#feed .feed-user").first).to_have_text("user bob created")
            await expect(alice.locator("#users li")).to_have_text(["alice", "bob"])
            await expect(bob.locator("#users li")).to_have_text(["alice", "bob"])

            # Chat: each sees the other's message (and their own, echoed with its id).
            await say(alice, "hello bob")
            await expect(bob.locator("#messages .message .text")).to_have_text(["hello bob"])
            await expect(bob.locator("#messages .message .from")).to_have_text(["alice"])
            await say(bob, "hi alice <b>not bold</b>")
            await expect(alice.locator("#messages .message .text")).to_have_text(
                ["hello bob", "hi alice <b>not bold</b>"]
            )
            # Text is shown as text, never parsed as HTML.
            assert await alice.locator("#messages b").count() == 0
            await expect(alice.locator("#messages .message.mine .text")).to_have_text(["hello bob"])
            ids = await alice.locator("#messages .message").evaluate_all(
                "items => items.map(li => li.dataset.id)"
            )
            assert len(ids) == 2
            assert all(ids)
            assert len(set(ids)) == 2

            # The live feed shows the chat, newest first, in both sessions.
            for page in (alice, bob):
                await expect(page.locator("#feed .feed-chat")).to_have_text(
                    ["bob in #lobby: hi alice <b>not bold</b>", "alice in #lobby: hello bob"]
                )

            # Upload an image: the thumbnail appears, and the feed reports it.
            await alice.set_input_files("#image-file", str(photo))
            thumbnail = alice.locator("#thumbnail")
            await expect(thumbnail).to_be_visible()
            await expect(alice.locator("#image-info")).to_contain_text("320x200 PNG")
            await alice.wait_for_function(
                "() => document.getElementById('thumbnail').complete"
                " && document.getElementById('thumbnail').naturalWidth > 0"
            )
            size = await thumbnail.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert size == [128, 80]
            await expect(bob.locator("#feed .feed-image")).to_have_text(
                ["alice uploaded a 320x200 PNG"]
            )

            # A room of one's own: Bob moves to another room and stops
            # receiving lobby chat.
            await bob.fill("#room", "garden")
            await bob.click("#join")
            await expect(bob.locator("body")).to_have_attribute("data-ws", "open")
            await say(bob, "anyone in the garden?")
            await expect(bob.locator("#messages .message .text")).to_have_text(
                ["anyone in the garden?"]
            )
            await say(alice, "lobby only")
            await expect(alice.locator("#messages .message .text").last).to_have_text("lobby only")
            await expect(bob.locator("#feed .feed-chat").first).to_have_text(
                "alice in #lobby: lobby only"
            )
            await expect(bob.locator("#messages .message .text")).to_have_text(
                ["anyone in the garden?"]
            )

            await alice.screenshot(path=str(tmp_path / "alice.png"), full_page=True)
            await bob.screenshot(path=str(tmp_path / "bob.png"), full_page=True)
            assert (tmp_path / "alice.png").stat().st_size > 0
            assert errors == []

            await alice_ctx.close()
            await bob_ctx.close()
        finally:
            await browser.close()
