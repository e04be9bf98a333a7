"""The SQLite connection (WAL), its transactions and write errors, and small facts about the bridge.

Every repository of `bridge.state` works over one `Database`; this is the only module that opens SQLite.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from bridge.state.schema import migrate


class StoreError(RuntimeError):
    """The database could not be written (disk full, read-only, locked)."""


class Database:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        migrate(self.db)
        self.last_write_error: str | None = None
        self._data_version = self.data_version()

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._write_failed(exc)
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._write_failed(exc)
        except BaseException:
            self._rollback()
            raise
        self.last_write_error = None

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def _write_failed(self, exc: sqlite3.Error) -> None:
        self.last_write_error = str(exc)
        raise StoreError(f"database write failed: {exc}") from exc

    def check(self) -> bool:
        """True when the database answers and the last write succeeded."""
        try:
            self.conn.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return self.last_write_error is None

    def data_version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def changed_elsewhere(self) -> bool:
        """Whether another process wrote since the last call (SQLite's data_version moved)."""
        version = self.data_version()
        if version == self._data_version:
            return False
        self._data_version = version
        return True

    # -- facts about the bridge -----------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
