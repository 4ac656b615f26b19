"""SQLite storage for the reference app: users and orders.

One connection per process, opened by the application factory (after any
``fork()``), in WAL mode so that readers in several processes never block each
other or a writer.

The queries run **on the event loop**, not in a thread: every statement here is
an indexed point lookup, a keyset page of at most 100 rows or a single-row
write, which SQLite answers in tens of microseconds from the page cache (see
``docs/reference-app.md`` for figures). A thread hop would cost more than the
query. ``busy_timeout`` bounds the rare wait for another process's write lock;
an app with slow queries should run them with ``ExecutorMixin`` on a thread
``BoundedExecutor`` instead.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    name     TEXT NOT NULL UNIQUE,
    email    TEXT,
    created  REAL NOT NULL,
    updated  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id  INTEGER NOT NULL,
    item     TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    created  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_user ON orders (user_id, id);
"""


class Conflict(Exception):
    """A write would break a uniqueness rule (e.g. a user name already taken)."""


@dataclass(frozen=True)
class Page:
    """One page of a keyset-paginated listing."""

    items: list[dict[str, Any]]
    next_after: int | None


class Store:
    """Users and orders in one SQLite database file (WAL mode)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        # isolation_level=None: autocommit; each statement is its own
        # transaction unless we open one explicitly.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout = 5000")
        # Several processes may open a new file at the same moment. Switching
        # it to WAL and creating the schema need exclusive locks, and SQLite
        # reports "database is locked" at once (without its busy handler)
        # when two connections race for them: retry for a few seconds.
        for attempt in range(50):
            try:
                self._initialise()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    self._db.close()
                    raise
                time.sleep(0.01 + 0.002 * attempt)

    def _initialise(self) -> None:
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal" and self.path != ":memory:":
            raise RuntimeError(f"SQLite refused WAL mode for {self.path!r} (got {mode!r})")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)

    @property
    def journal_mode(self) -> str:
        """The database's journal mode (``"wal"``)."""
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._db.close()

    # -- users ---------------------------------------------------------

    def list_users(self, *, limit: int, after: int = 0) -> Page:
        """Users with ``id > after``, by id, at most *limit* of them."""
        rows = self._db.execute(
            "SELECT id, name, email, created, updated FROM users WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit + 1),
        ).fetchall()
        items = [dict(r) for r in rows[:limit]]
        next_after = items[-1]["id"] if len(rows) > limit else None
        return Page(items, next_after)

    def get_user(self, user_id: int) -> dict[str, Any] | None:
        """The user with *user_id*, or ``None``."""
        row = self._db.execute(
            "SELECT id, name, email, created, updated FROM users WHERE id = ?", (user_id,)
        ).fetchone()
        return dict(row) if row is not None else None

    def get_user_by_name(self, name: str) -> dict[str, Any] | None:
        """The user called *name*, or ``None``."""
        row = self._db.execute(
            "SELECT id, name, email, created, updated FROM users WHERE name = ?", (name,)
        ).fetchone()
        return dict(row) if row is not None else None

    def create_user(self, name: str, email: str | None) -> dict[str, Any]:
        """Insert a user; :class:`Conflict` when *name* is taken."""
        now = time.time()
        try:
            cur = self._db.execute(
                "INSERT INTO users (name, email, created, updated) VALUES (?, ?, ?, ?)",
                (name, email, now, now),
            )
        except sqlite3.IntegrityError:
            raise Conflict(name) from None
        return {"id": cur.lastrowid, "name": name, "email": email, "created": now, "updated": now}

    def get_or_create_user(self, name: str) -> tuple[dict[str, Any], bool]:
        """The user called *name*, created when absent; ``(user, created)``."""
        user = self.get_user_by_name(name)
        if user is not None:
            return user, False
        try:
            return self.create_user(name, None), True
        except Conflict:
            # Another process created it between our two statements.
            user = self.get_user_by_name(name)
            if user is None:  # deleted again in between: vanishingly rare
                raise
            return user, False

    def update_user(self, user_id: int, name: str, email: str | None) -> dict[str, Any] | None:
        """Replace a user's fields; ``None`` when absent, :class:`Conflict` on a taken name."""
        now = time.time()
        try:
            cur = self._db.execute(
                "UPDATE users SET name = ?, email = ?, updated = ? WHERE id = ?",
                (name, email, now, user_id),
            )
        except sqlite3.IntegrityError:
            raise Conflict(name) from None
        if cur.rowcount == 0:
            return None
        return self.get_user(user_id)

    def delete_user(self, user_id: int) -> bool:
        """Delete a user and their orders; ``False`` when absent."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM orders WHERE user_id = ?", (user_id,))
            cur = self._db.execute("DELETE FROM users WHERE id = ?", (user_id,))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return cur.rowcount > 0

    # -- orders --------------------------------------------------------

    def list_orders(self, *, limit: int, after: int = 0, user_id: int | None = None) -> Page:
        """Orders with ``id > after`` (of *user_id* when given), by id."""
        if user_id is None:
            rows = self._db.execute(
                "SELECT id, user_id, item, quantity, created FROM orders"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit + 1),
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT id, user_id, item, quantity, created FROM orders"
                " WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?",
                (user_id, after, limit + 1),
            ).fetchall()
        items = [dict(r) for r in rows[:limit]]
        next_after = items[-1]["id"] if len(rows) > limit else None
        return Page(items, next_after)

    def create_order(self, user_id: int, item: str, quantity: int) -> dict[str, Any]:
        """Insert an order for *user_id*."""
        now = time.time()
        cur = self._db.execute(
            "INSERT INTO orders (user_id, item, quantity, created) VALUES (?, ?, ?, ?)",
            (user_id, item, quantity, now),
        )
        return {
            "id": cur.lastrowid,
            "user_id": user_id,
            "item": item,
            "quantity": quantity,
            "created": now,
        }

    def create_orders(self, rows: Iterable[tuple[int, str, int]]) -> None:
        """Insert several ``(user_id, item, quantity)`` orders in one transaction."""
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO orders (user_id, item, quantity, created) VALUES (?, ?, ?, ?)",
                [(u, i, q, now) for u, i, q in rows],
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
