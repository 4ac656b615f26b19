"""RFC 9457 problem details for every error, and JSON request bodies.

Run it::

    python examples/02_json_errors.py --port 8888

Then::

    curl -i localhost:8888/items/1                       # 404 problem+json
    curl -i -X POST -H 'Content-Type: application/json' \\
         -d '{"name": "lamp"}' localhost:8888/items       # 201
    curl -i -X POST -H 'Content-Type: application/json' -d '{' localhost:8888/items   # 400
    curl -i -X POST -H 'Content-Type: text/plain' -d 'x' localhost:8888/items        # 415
    curl -i -X DELETE localhost:8888/items                 # 405 with Allow
    curl -i localhost:8888/boom                            # 500, nothing leaked
    curl -i localhost:8888/no/such/page                    # 404 from NotFoundHandler
"""

from __future__ import annotations

from typing import Any

from tornado.web import Application, RequestHandler

from tornado_kit import APIError, JSONBodyMixin, JSONErrorMixin, NotFoundHandler, serve


class ItemsHandler(JSONBodyMixin, JSONErrorMixin, RequestHandler):
    def initialize(self, items: dict[int, dict[str, Any]]) -> None:
        self.items = items

    def get(self) -> None:
        self.write_json({"items": list(self.items.values())})

    def post(self) -> None:
        body = self.get_json_body()  # 400 / 413 / 415 as problem+json
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise APIError(422, "'name' must be a non-empty string", field="name")
        item = {"id": len(self.items) + 1, "name": name}
        self.items[item["id"]] = item
        self.set_header("Location", f"/items/{item['id']}")
        self.write_json(item, status=201)


class ItemHandler(JSONBodyMixin, JSONErrorMixin, RequestHandler):
    def initialize(self, items: dict[int, dict[str, Any]]) -> None:
        self.items = items

    def get(self, item_id: str) -> None:
        item = self.items.get(int(item_id))
        if item is None:
            raise APIError(404, f"no item {item_id}", item_id=int(item_id))
        self.write_json(item)


class BoomHandler(JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        raise RuntimeError("database password is hunter2")  # never reaches the client


def make_app(**settings: Any) -> Application:
    items: dict[int, dict[str, Any]] = {}
    return Application(
        [
            (r"/items", ItemsHandler, {"items": items}),
            (r"/items/([0-9]+)", ItemHandler, {"items": items}),
            (r"/boom", BoomHandler),
        ],
        default_handler_class=NotFoundHandler,
        **settings,
    )


if __name__ == "__main__":
    from _run import parse_args  # examples/_run.py: --port, --address, logging

    args = parse_args(__doc__)
    serve(make_app, port=args.port, address=args.address)  # until SIGTERM or Ctrl-C
