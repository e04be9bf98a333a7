"""The history of commands sent to printers, with their outcomes.

A command's row is written at once, before it is published; its outcome is written by the store's next
flush: two transactions per action cost more than the MQTT round trip (bench/actions.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import msgspec

from bridge.domain.views import to_iso
from bridge.state.db import Database, StoreError

_INSERT = (
    "INSERT INTO commands (cmd_id, printer_id, print_id, cmd, args, initiator, sent_at, outcome, error, latency_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_FINISH = "UPDATE commands SET outcome = ?, error = ?, latency_ms = ? WHERE cmd_id = ?"


class CommandRow(msgspec.Struct, omit_defaults=False):
    cmd_id: str
    cmd: str
    args: msgspec.Raw
    initiator: str
    print_id: int | None
    sent_at: str  # ISO 8601 UTC with Z
    outcome: str | None
    error: str | None
    latency_ms: float | None


class CommandLog:
    def __init__(self, db: Database, flush: Callable[[], object]) -> None:
        """`flush()`: write everything pending (the store's), before reading the history."""
        self.db = db
        self.flush = flush
        # cmd_id -> INSERT parameters of rows the database refused; outcomes of written rows
        self._rows: dict[str, list[Any]] = {}
        self._outcomes: list[tuple[str | None, str | None, float | None, str]] = []

    def add(
        self,
        cmd_id: str,
        printer_id: int,
        print_id: int | None,
        cmd: str,
        args: dict[str, Any],
        initiator: str,
        sent_at: float,
        outcome: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record a command at once, before it is published: a crash then leaves the row (its outcome
        becomes `timeout` at the next start) rather than no trace of a command the printer may have
        obeyed. When the database cannot be written, the row waits for the next successful flush."""
        row = [cmd_id, printer_id, print_id, cmd, msgspec.json.encode(args).decode(), initiator, sent_at]
        row += [None if outcome is None else str(outcome), error, None]
        try:
            with self.db.transaction() as conn:
                conn.execute(_INSERT, row)
        except StoreError:
            self._rows[cmd_id] = row
            raise

    def finish(self, cmd_id: str, outcome: str, error: str | None, latency_ms: float | None) -> None:
        """Record a command's outcome; written by the next flush (coalesced)."""
        row = self._rows.get(cmd_id)
        if row is not None:
            row[7:10] = [str(outcome), error, latency_ms]
        else:
            self._outcomes.append((str(outcome), error, latency_ms, cmd_id))

    @property
    def pending(self) -> int:
        return len(self._rows) + len(self._outcomes)

    def write_pending(self, conn: sqlite3.Connection) -> int:
        """Inside the store's flush transaction; `written()` once it committed."""
        conn.executemany(_INSERT, list(self._rows.values()))
        conn.executemany(_FINISH, self._outcomes)
        return self.pending

    def written(self) -> None:
        self._rows = {}
        self._outcomes = []

    def fail_unfinished(self, error: str) -> int:
        """Commands left without an outcome by a crash: they were never answered in time."""
        self.flush()
        with self.db.transaction() as conn:
            cur = conn.execute("UPDATE commands SET outcome = 'timeout', error = ? WHERE outcome IS NULL", (error,))
        return cur.rowcount

    def recent(self, printer_id: int, limit: int) -> list[CommandRow]:
        """The printer's commands, newest first."""
        self.flush()
        rows = self.db.conn.execute(
            "SELECT cmd_id, cmd, args, initiator, print_id, sent_at, outcome, error, latency_ms FROM commands "
            "WHERE printer_id = ? ORDER BY sent_at DESC, rowid DESC LIMIT ?",
            (printer_id, limit),
        )
        return [
            CommandRow(r[0], r[1], msgspec.Raw(r[2].encode()), r[3], r[4], to_iso(r[5]) or "", r[6], r[7], r[8])
            for r in rows
        ]
