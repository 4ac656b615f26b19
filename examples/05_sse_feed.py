"""A live news feed over Server-Sent Events that survives reconnects.

Run it::

    python examples/05_sse_feed.py --port 8888

Open http://localhost:8888/ and post a story from a shell::

    curl -H 'Content-Type: application/json' -d '{"headline": "hello"}' \
        localhost:8888/stories

Watch the raw stream, then resume from an id you saw::

    curl -N localhost:8888/feed
    curl -N -H "Last-Event-ID: <id>" localhost:8888/feed

What each piece does here:

* ``SSEMixin.stream_topic``: follows the ``news`` topic; with a
  ``Last-Event-ID`` (sent by ``EventSource`` when it reconnects) it first
  replays the stories the client missed, with no gap and no duplicate.
* ``MemoryEventLog``: keeps the last 1000 stories and gives each an id. An id
  it cannot resume from (garbage, or older than what it keeps) starts the
  stream with ``event: reset`` and the whole retained history; the page
  clears its list then.
* ``JSONBodyMixin`` / ``JSONErrorMixin``: the publishing endpoint validates
  its JSON and answers problems as RFC 9457 JSON.
* ``--redis redis://...``: ``RedisBroker`` + ``RedisEventLog``, so every
  process behind a load balancer serves the same feed and a client resumes on
  whichever process it reconnects to.
"""

from __future__ import annotations

import functools
from typing import Any

from tornado.web import Application, RequestHandler

from tornado_kit import (
    APIError,
    EventLog,
    JSONBodyMixin,
    JSONErrorMixin,
    LocalBroker,
    MemoryEventLog,
    SSEMixin,
    serve,
)

PAGE = """<!doctype html>
<meta charset="utf-8"><title>tornado-kit feed</title>
<h1>Live feed</h1>
<ol id="stories"></ol>
<script>
  const list = document.getElementById("stories");
  const source = new EventSource("/feed");
  source.addEventListener("reset", () => { list.replaceChildren(); });
  source.addEventListener("story", (event) => {
    const item = document.createElement("li");
    item.textContent = JSON.parse(event.data).headline;
    item.dataset.id = event.lastEventId;
    list.appendChild(item);
  });
</script>
"""


class PageHandler(RequestHandler):
    def get(self) -> None:
        self.write(PAGE)


class FeedHandler(SSEMixin, RequestHandler):
    """``GET /feed``: the event stream."""

    async def get(self) -> None:
        await self.stream_topic("news", log=self.settings["event_log"])


class StoriesHandler(JSONErrorMixin, JSONBodyMixin, RequestHandler):
    """``POST /stories`` with ``{"headline": "..."}``: publish a story."""

    async def post(self) -> None:
        body = self.get_json_body()  # a dict, or a 400/413/415 problem
        headline = body.get("headline")
        if not isinstance(headline, str) or not headline.strip():
            raise APIError(422, 'send {"headline": "..."}')
        if len(headline) > 300:
            raise APIError(422, "a headline has at most 300 characters")
        log: EventLog = self.settings["event_log"]
        event = await log.append("news", {"headline": headline}, event="story")
        self.set_status(201)
        self.write({"id": event.id})


def make_app(redis_url: str | None = None, **settings: Any) -> Application:
    """The application; with *redis_url* every process sharing that Redis serves one feed.

    (Or pass your own ``broker=`` and ``event_log=``.)
    """
    if redis_url:
        from tornado_kit import RedisBroker, RedisEventLog

        redis = RedisBroker(redis_url)
        settings.update(broker=redis, event_log=RedisEventLog(broker=redis, maxlen=1000))
    if "event_log" not in settings:
        broker = settings.setdefault("broker", LocalBroker())
        settings["event_log"] = MemoryEventLog(broker, maxlen=1000)
    return Application(
        [(r"/", PageHandler), (r"/feed", FeedHandler), (r"/stories", StoriesHandler)],
        **settings,
    )


if __name__ == "__main__":
    from _run import parse_args  # examples/_run.py: --port, --address, logging

    args = parse_args(__doc__, redis="redis:// URL: share the feed between processes")
    # Until SIGTERM or Ctrl-C; then every stream is ended cleanly, and the broker
    # (the Redis connections) is closed: the settings' resources are closed by
    # tornado_kit.shutdown(), which serve() runs.
    serve(
        functools.partial(make_app, args.redis),
        port=args.port,
        address=args.address,
    )
