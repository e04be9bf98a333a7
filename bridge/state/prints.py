"""Print jobs: opened when an agent reports a new print, saved as they change, closed when they end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bridge.domain.models import PrinterRecord, PrintRecord
from bridge.state.db import Database

_COLUMNS = PrintRecord.__struct_fields__
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM prints"
_UPDATE = "UPDATE prints SET {} WHERE id = ?".format(", ".join(f"{c} = ?" for c in _COLUMNS if c != "id"))


def _record(row: tuple[Any, ...]) -> PrintRecord:
    return PrintRecord(**dict(zip(_COLUMNS, row, strict=True)))


class Prints:
    def __init__(self, db: Database, clock: Callable[[], float], changed: Callable[[PrinterRecord], None]) -> None:
        """`changed(printer)`: the printer's current print changed (its views are out of date)."""
        self.db = db
        self.clock = clock
        self.changed = changed

    def open(self, rec: PrinterRecord, ts: float, filename: str | None) -> PrintRecord:
        now = self.clock()
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO prints (printer_id, ts, filename, started_at) VALUES (?, ?, ?, ?)",
                (rec.id, ts, filename, now),
            )
        p = PrintRecord(id=int(cur.lastrowid or 0), printer_id=rec.id, ts=ts, filename=filename, started_at=now)
        rec.current_print = p
        self.changed(rec)
        return p

    def save(self, rec: PrinterRecord, p: PrintRecord) -> None:
        """Write every column of `p`; if it has ended, it stops being the printer's current print."""
        values = [getattr(p, c) for c in _COLUMNS if c != "id"]
        with self.db.transaction() as conn:
            conn.execute(_UPDATE, [*values, p.id])
        if p.ended_at is not None and rec.current_print is p:
            rec.current_print = None
        self.changed(rec)

    def closed(self, printer_id: int, ts: float) -> bool:
        row = self.db.conn.execute(
            "SELECT 1 FROM prints WHERE printer_id = ? AND ts = ? AND ended_at IS NOT NULL LIMIT 1",
            (printer_id, ts),
        ).fetchone()
        return row is not None

    def of(self, printer_id: int) -> list[PrintRecord]:
        """Every print of a printer, oldest first."""
        return [_record(r) for r in self.db.conn.execute(f"{_SELECT} WHERE printer_id = ? ORDER BY id", (printer_id,))]

    def open_prints(self, printer_id: int | None = None) -> list[PrintRecord]:
        sql = f"{_SELECT} WHERE ended_at IS NULL"
        args: tuple[int, ...] = ()
        if printer_id is not None:
            sql, args = sql + " AND printer_id = ?", (printer_id,)
        return [_record(r) for r in self.db.conn.execute(sql, args)]
