"""Each print's failure-score history: one (time, normalized_p) point per detection frame counted,
written by the store's flush (the dashboard's chart)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from bridge.state.db import Database


class Scores:
    def __init__(self, db: Database, flush: Callable[[], object]) -> None:
        self.db = db
        self.flush = flush  # the store's, before reading
        self._pending: list[tuple[int, float, float]] = []

    def add(self, print_id: int, t: float, p: float) -> None:
        self._pending.append((print_id, t, p))

    def of(self, print_id: int) -> list[tuple[float, float]]:
        """Every point of a print, oldest first."""
        self.flush()
        rows = self.db.conn.execute("SELECT t, p FROM print_scores WHERE print_id = ? ORDER BY t, rowid", (print_id,))
        return [(float(t), float(p)) for t, p in rows]

    @property
    def pending(self) -> int:
        return len(self._pending)

    def write_pending(self, conn: sqlite3.Connection) -> int:
        conn.executemany("INSERT INTO print_scores (print_id, t, p) VALUES (?, ?, ?)", self._pending)
        return len(self._pending)

    def written(self) -> None:
        self._pending = []
