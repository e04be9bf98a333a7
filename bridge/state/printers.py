"""Printers: their rows, held in memory as PrinterRecords, with the columns declared once.

`COLUMNS` says which column holds which PrinterRecord field and how its value is stored; the SELECT,
the row mapping, the comparison with another process's writes and the UPDATE of the status columns are
derived from it. A change to a printer's configuration is written at once; the agent's status, settings
and prediction state are marked dirty and written together by the store's flush (about every 50 ms), so
a burst of status messages costs one transaction per flush instead of one per message. Whoever keeps
views of printers (the REST read model, the event stream) listens for changes.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, ValuesView
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import msgspec

from bridge.domain.models import SETTINGS_FIELDS, PrinterRecord, PrintRecord, visible_to
from bridge.domain.status import apply_status_fields
from bridge.state.db import Database
from bridge.state.users import new_token

KEY, CONFIG, STATUS = "key", "config", "status"
_json_object = msgspec.json.Decoder(dict[str, Any])
_json_bytes = msgspec.json.encode


def _same(value: Any) -> Any:
    return value


def _bool_or_none(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _bytes_or(default: bytes | None) -> Callable[[Any], bytes | None]:
    return lambda value: bytes(value) if value else default


@dataclass(frozen=True, slots=True)
class Column:
    name: str  # in the printers table
    field: str  # of PrinterRecord
    part: str  # KEY: set at creation; CONFIG: written at once; STATUS: written by the flush
    load: Callable[[Any], Any] = _same  # column value -> field value
    dump: Callable[[Any], Any] = _same  # field value -> column value


_BOOLS = {"watching_enabled", "tools_off_on_pause", "bed_off_on_pause"}

COLUMNS: tuple[Column, ...] = (
    Column("id", "id", KEY),
    Column("owner_id", "owner_id", KEY),
    Column("created_at", "created_at", KEY),
    Column("dialect", "dialect", KEY),
    Column("name", "name", CONFIG),
    Column("auth_token", "auth_token", CONFIG),
    Column("dialect_config", "dialect_config", CONFIG, lambda v: _json_object.decode(v) if v else {}, _json_bytes),
    *(Column(f, f, CONFIG, bool if f in _BOOLS else _same) for f in SETTINGS_FIELDS),
    Column("archived_at", "archived_at", CONFIG),
    Column("agent_name", "agent_name", STATUS),
    Column("agent_version", "agent_version", STATUS),
    Column("settings", "settings_raw", STATUS, _bytes_or(b"{}")),
    Column("status", "status_raw", STATUS, _bytes_or(None)),
    Column("status_ts", "status_ts", STATUS),
    Column("status_received_at", "status_received_at", STATUS),
    Column("available", "available", STATUS, _bool_or_none),
    Column("prediction", "prediction_raw", STATUS, _bytes_or(b"{}")),
    Column("normalized_p", "normalized_p", STATUS, lambda v: v or 0.0),
)
# Columns of the table that are not a PrinterRecord field.
UNMAPPED = frozenset({"deleted_at", "broker_token"})

_SELECT = f"SELECT {', '.join(c.name for c in COLUMNS)} FROM printers"
_SAVED = [c for c in COLUMNS if c.part != STATUS]  # what another process may change
_SELECT_SAVED = f"SELECT {', '.join(c.name for c in _SAVED)} FROM printers WHERE deleted_at IS NULL ORDER BY id"
_STATUS = [c for c in COLUMNS if c.part == STATUS]
_UPDATE_STATUS = f"UPDATE printers SET {', '.join(f'{c.name} = ?' for c in _STATUS)} WHERE id = ?"
# The status columns' values of a record in one C call: none of them needs a `dump` (checked at import).
_status_values = operator.attrgetter(*(c.field for c in _STATUS), "id")
assert all(c.dump is _same for c in _STATUS)
_BY_FIELD = {c.field: c for c in COLUMNS}


_FIELDS = tuple(c.field for c in COLUMNS)
# Only the columns whose value needs converting are touched per row: loading 10,000 printers through
# every column's `load` made start-up 25% slower (bench/startup.py).
_CONVERTED = tuple((i, c.load) for i, c in enumerate(COLUMNS) if c.load is not _same)


def _from_row(row: tuple[Any, ...]) -> PrinterRecord:
    values = list(row)
    for i, load in _CONVERTED:
        values[i] = load(values[i])
    return PrinterRecord(**dict(zip(_FIELDS, values, strict=True)))


def _record(row: tuple[Any, ...]) -> PrinterRecord:
    rec = _from_row(row)
    if rec.status_raw is not None:
        apply_status_fields(rec, rec.status_raw)
    return rec


class ExternalChanges(NamedTuple):
    added: list[PrinterRecord]
    changed: list[PrinterRecord]
    removed: list[PrinterRecord]


class PrinterListener(Protocol):
    """Told of every change to a printer held here (the REST read model, the event stream's hub)."""

    def printer_changed(self, rec: PrinterRecord) -> None: ...

    def printer_removed(self, rec: PrinterRecord) -> None: ...


class Printers(Mapping[int, PrinterRecord]):
    """The live (not deleted) printers by id, as a read-only mapping, and the writes that change them."""

    def __init__(self, db: Database, clock: Callable[[], float], on_delete: Callable[[int], None]) -> None:
        self.db = db
        self.clock = clock
        self.on_delete = on_delete  # the printer's other state (its pending snapshot) is to be forgotten
        self._records: dict[int, PrinterRecord] = {}
        self._dirty: set[int] = set()
        self._listeners: list[PrinterListener] = []

    # -- the mapping (dict speed: a fleet of thousands is iterated on every list read) -------------------

    def __getitem__(self, printer_id: int) -> PrinterRecord:
        return self._records[printer_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, printer_id: object) -> bool:
        return printer_id in self._records

    def get(self, printer_id: int, default: Any = None) -> Any:
        return self._records.get(printer_id, default)

    def values(self) -> ValuesView[PrinterRecord]:
        return self._records.values()

    def owned(self, owner_id: int, with_archived: bool = False) -> Iterable[PrinterRecord]:
        for rec in self._records.values():
            if visible_to(rec, owner_id, with_archived):
                yield rec

    # -- change notification --------------------------------------------------------------------------

    def listen(self, listener: PrinterListener) -> None:
        self._listeners.append(listener)

    def _changed(self, rec: PrinterRecord) -> None:
        for listener in self._listeners:
            listener.printer_changed(rec)

    def _removed(self, rec: PrinterRecord) -> None:
        for listener in self._listeners:
            listener.printer_removed(rec)

    def touch(self, rec: PrinterRecord, persist: bool = True) -> None:
        """Record that `rec` changed in memory: listeners are told and (persist) its status columns are
        written by the next flush."""
        self._changed(rec)
        if persist:
            self._dirty.add(rec.id)

    # -- loading -----------------------------------------------------------------------------------------

    def load(self, open_prints: Iterable[PrintRecord], with_pic: set[int]) -> None:
        """Every printer that is not deleted, with its current print and whether it has a snapshot."""
        self._records = {}
        for row in self.db.conn.execute(f"{_SELECT} WHERE deleted_at IS NULL ORDER BY id"):
            rec = _record(row)
            rec.has_pic = rec.id in with_pic
            self._records[rec.id] = rec
        for p in open_prints:
            owner = self._records.get(p.printer_id)
            if owner is not None:
                owner.current_print = p

    def reload(self, open_prints_of: Callable[[int], list[PrintRecord]]) -> ExternalChanges:
        """Take in what another process wrote: printers created, changed or deleted. Only the columns that
        are not status are compared; status is ours."""
        seen: set[int] = set()
        added, changed = [], []
        for row in self.db.conn.execute(_SELECT_SAVED):
            printer_id = row[0]
            seen.add(printer_id)
            rec = self._records.get(printer_id)
            if rec is None:
                rec = _record(self.db.conn.execute(f"{_SELECT} WHERE id = ?", (printer_id,)).fetchone())
                opened = open_prints_of(printer_id)
                rec.current_print = opened[0] if opened else None
                self._records[printer_id] = rec
                added.append(rec)
                self._changed(rec)
                continue
            diff = False
            for c, raw in zip(_SAVED, row, strict=True):
                value = c.load(raw)
                if getattr(rec, c.field) != value:
                    setattr(rec, c.field, value)
                    diff = True
            if diff:
                self.touch(rec, persist=False)
                changed.append(rec)
        removed = [self._records.pop(pid) for pid in list(self._records) if pid not in seen]
        for rec in removed:
            self._dirty.discard(rec.id)
            self._removed(rec)
        return ExternalChanges(added, changed, removed)

    # -- writing -----------------------------------------------------------------------------------------

    def create(self, owner_id: int, name: str, fields: dict[str, Any] | None = None) -> PrinterRecord:
        """A new printer with `fields` (settings, archived_at, dialect, dialect_config) over the defaults."""
        rec = PrinterRecord(id=0, owner_id=owner_id, name=name, created_at=self.clock(), auth_token=new_token())
        for key, value in (fields or {}).items():
            setattr(rec, _BY_FIELD[key].field, value)
        saved = [c for c in _SAVED if c.name != "id"]
        with self.db.transaction() as conn:
            cur = conn.execute(
                f"INSERT INTO printers ({', '.join(c.name for c in saved)}) VALUES ({', '.join('?' for _ in saved)})",
                [c.dump(getattr(rec, c.field)) for c in saved],
            )
        rec.id = int(cur.lastrowid or 0)
        self._records[rec.id] = rec
        self._changed(rec)
        return rec

    def update(self, rec: PrinterRecord, changes: dict[str, Any]) -> None:
        if not changes:
            return
        columns = [_BY_FIELD[key] for key in changes]
        with self.db.transaction() as conn:
            conn.execute(
                f"UPDATE printers SET {', '.join(f'{c.name} = ?' for c in columns)} WHERE id = ?",
                [*(c.dump(v) for c, v in zip(columns, changes.values(), strict=True)), rec.id],
            )
        for c, value in zip(columns, changes.values(), strict=True):
            setattr(rec, c.field, value)
        self.touch(rec, persist=False)

    def rotate_token(self, rec: PrinterRecord) -> str:
        token = new_token()
        self.update(rec, {"auth_token": token})
        return token

    def delete(self, rec: PrinterRecord) -> None:
        """Mark deleted; its open print ends and its snapshot goes."""
        now = self.clock()
        with self.db.transaction() as conn:
            conn.execute("UPDATE printers SET deleted_at = ? WHERE id = ?", (now, rec.id))
            conn.execute("UPDATE prints SET ended_at = ? WHERE printer_id = ? AND ended_at IS NULL", (now, rec.id))
            conn.execute("DELETE FROM snapshots WHERE printer_id = ?", (rec.id,))
        self._records.pop(rec.id, None)
        self._dirty.discard(rec.id)
        self.on_delete(rec.id)
        self._removed(rec)

    def mark_stale(self, cutoff: float) -> list[PrinterRecord]:
        """Statuses received before `cutoff` are served as null from now on; returns the printers that
        just went stale."""
        stale = []
        for rec in self._records.values():
            if rec.status_raw is not None and not rec.stale:
                received = rec.status_received_at
                if received is None or received < cutoff:
                    rec.stale = True
                    self.touch(rec, persist=False)
                    stale.append(rec)
        return stale

    # -- the coalesced status writes ---------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def write_pending(self, conn: sqlite3.Connection) -> int:
        dirty = [self._records[i] for i in self._dirty if i in self._records]
        conn.executemany(_UPDATE_STATUS, [_status_values(r) for r in dirty])
        return len(dirty)

    def written(self) -> None:
        self._dirty.clear()
