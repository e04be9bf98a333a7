"""The latest snapshot (JPEG) of each printer; written by the store's flush, served before that."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from bridge.domain.models import PrinterRecord
from bridge.state.db import Database


class Snapshots:
    def __init__(self, db: Database, clock: Callable[[], float], changed: Callable[[PrinterRecord], None]) -> None:
        self.db = db
        self.clock = clock
        self.changed = changed  # the printer's views changed (it has a picture now)
        self._pending: dict[int, tuple[bytes, float]] = {}

    def put(self, rec: PrinterRecord, jpeg: bytes) -> None:
        self._pending[rec.id] = (jpeg, self.clock())
        if not rec.has_pic:
            rec.has_pic = True
            self.changed(rec)

    def latest(self, printer_id: int) -> bytes | None:
        pending = self._pending.get(printer_id)
        if pending is not None:
            return pending[0]
        row = self.db.conn.execute("SELECT jpeg FROM snapshots WHERE printer_id = ?", (printer_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def printer_ids(self) -> set[int]:
        return {int(r[0]) for r in self.db.conn.execute("SELECT printer_id FROM snapshots")}

    def forget(self, printer_id: int) -> None:
        self._pending.pop(printer_id, None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def write_pending(self, conn: sqlite3.Connection) -> int:
        conn.executemany(
            "INSERT INTO snapshots (printer_id, jpeg, received_at) VALUES (?, ?, ?) "
            "ON CONFLICT(printer_id) DO UPDATE SET jpeg = excluded.jpeg, received_at = excluded.received_at",
            [(pid, jpeg, at) for pid, (jpeg, at) in self._pending.items()],
        )
        return len(self._pending)

    def written(self) -> None:
        self._pending = {}
