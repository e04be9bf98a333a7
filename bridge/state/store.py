"""The state store: SQLite (WAL) on one connection, with the printers held in memory.

This is the only module that talks to SQLite. Printers are loaded once and kept in memory; a change to a
printer's configuration or prints is written at once, while the agent's status, settings and the
prediction state are marked dirty and written together by `flush()` (the app calls it every ~50 ms), so
a burst of status messages costs one transaction per flush instead of one per message. Each printer's
REST JSON is encoded once per change and reused by every read until the next change.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import sqlite_utils

from bridge.domain.models import PRINTER_DEFAULTS, PrinterRecord, PrintRecord
from bridge.domain.status import apply_status_fields
from bridge.domain.views import encode_printer, to_iso
from bridge.state.schema import migrate

Clock = Callable[[], float]
LIST_CACHE_MAX_BYTES = 2 * 1024 * 1024


class StoreError(RuntimeError):
    """The database could not be written (disk full, read-only, locked)."""


class UserExists(ValueError):
    pass


def new_token() -> str:
    return secrets.token_urlsafe(24)  # 192 bits


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_PRINTER_CONFIG_COLUMNS = (
    "id",
    "owner_id",
    "name",
    "created_at",
    "auth_token",
    "dialect",
    *PRINTER_DEFAULTS,
    "archived_at",
)
_SELECT_PRINTERS = (
    "SELECT id, owner_id, name, created_at, auth_token, dialect, dialect_config, action_on_failure, watching_enabled, "
    "tools_off_on_pause, bed_off_on_pause, retract_on_pause, lift_z_on_pause, detective_sensitivity, "
    "min_timelapse_secs_on_finish, min_timelapse_secs_on_cancel, archived_at, agent_name, agent_version, "
    "settings, status, status_ts, status_received_at, available, prediction, normalized_p FROM printers"
)
_INSERT_COMMAND_SQL = (
    "INSERT INTO commands (cmd_id, printer_id, print_id, cmd, args, initiator, sent_at, outcome, error, latency_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_config_decoder = msgspec.json.Decoder(dict[str, Any])
_BOOL_COLUMNS = {"watching_enabled", "tools_off_on_pause", "bed_off_on_pause"}
_PRINT_COLUMNS = tuple(f for f in PrintRecord.__struct_fields__)
_PRINT_UPDATE_SQL = "UPDATE prints SET {} WHERE id = ?".format(
    ", ".join(f"{c} = ?" for c in _PRINT_COLUMNS if c != "id")
)


def _column_value(value: Any) -> Any:
    """A printer field as its column holds it: a dialect's settings object is stored as JSON."""
    return msgspec.json.encode(value) if isinstance(value, dict) else value


class ExternalChanges(NamedTuple):
    added: list[PrinterRecord]
    changed: list[PrinterRecord]
    removed: list[PrinterRecord]


class CommandRow(msgspec.Struct, omit_defaults=False):
    cmd_id: str
    cmd: str
    args: msgspec.Raw
    initiator: str
    print_id: int | None
    sent_at: str  # ISO 8601 UTC with Z (SPEC 4.1)
    outcome: str | None
    error: str | None
    latency_ms: float | None


class Store:
    def __init__(self, path: Path, clock: Clock = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        migrate(self.db)
        self.printers: dict[int, PrinterRecord] = {}
        self._encoded: dict[int, bytes] = {}
        # Each owner's list JSON, (owner_id, with_archived) -> bytes; dropped whenever any printer changes.
        self._lists: dict[tuple[int, bool], bytes] = {}
        # API token -> user id, for tokens that were valid; cleared when tokens change here or when another
        # process (the CLI) writes to the database (seen by `reload_if_changed`, every second).
        self._token_users: dict[str, int] = {}
        self._dirty: set[int] = set()
        self._pending_snapshots: dict[int, tuple[bytes, float]] = {}
        # The command history is written by `flush()` too: two transactions per action cost more than
        # the MQTT round trip (bench/actions.py). cmd_id -> INSERT parameters; outcomes of written rows.
        self._pending_commands: dict[str, list[Any]] = {}
        self._pending_outcomes: list[tuple[str, str | None, float | None, str]] = []
        self.last_write_error: str | None = None

    def close(self) -> None:
        try:
            self.flush()
        finally:
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

    # -- users -------------------------------------------------------------------------------------

    def add_user(self, username: str) -> tuple[int, str]:
        token = new_token()
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                raise UserExists(username)
            cur = conn.execute(
                "INSERT INTO users (username, token_hash, created_at) VALUES (?, ?, ?)",
                (username, hash_token(token), self.clock()),
            )
        return int(cur.lastrowid or 0), token

    def rotate_user_token(self, username: str) -> str | None:
        token = new_token()
        with self.transaction() as conn:
            cur = conn.execute("UPDATE users SET token_hash = ? WHERE username = ?", (hash_token(token), username))
        self._token_users.clear()
        return token if cur.rowcount else None

    def user_id(self, username: str) -> int | None:
        row = self.conn.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
        return None if row is None else int(row[0])

    def user_for_token(self, token: str) -> int | None:
        user_id = self._token_users.get(token)
        if user_id is not None:
            return user_id
        row = self.conn.execute("SELECT id FROM users WHERE token_hash = ?", (hash_token(token),)).fetchone()
        if row is None:
            return None
        if len(self._token_users) >= 1024:
            self._token_users.clear()
        user_id = self._token_users[token] = int(row[0])
        return user_id

    def user_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM users").fetchone()[0])

    # -- printers: loading ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load every printer that is not deleted, with its current print."""
        self.printers = {}
        self._encoded = {}
        self._lists = {}
        for row in self.conn.execute(f"{_SELECT_PRINTERS} WHERE deleted_at IS NULL ORDER BY id"):
            rec = self._record_from_row(row)
            self.printers[rec.id] = rec
        for p in self._open_prints():
            owner = self.printers.get(p.printer_id)
            if owner is not None:
                owner.current_print = p
        for (printer_id,) in self.conn.execute("SELECT printer_id FROM snapshots"):
            if printer_id in self.printers:
                self.printers[printer_id].has_pic = True
        self._data_version = self._read_data_version()

    def _record_from_row(self, row: tuple[Any, ...]) -> PrinterRecord:
        (pid, owner, name, created, token, dialect, dialect_config, aof, watching, tools_off, bed_off, retract,
         lift, sens, fin, can, archived, agent_name, agent_version, settings, status, status_ts, received,
         available, prediction, normalized_p) = row  # fmt: skip
        rec = PrinterRecord(
            id=pid,
            owner_id=owner,
            name=name,
            created_at=created,
            auth_token=token,
            dialect=dialect,
            dialect_config=_config_decoder.decode(dialect_config) if dialect_config else {},
            action_on_failure=aof,
            watching_enabled=bool(watching),
            tools_off_on_pause=bool(tools_off),
            bed_off_on_pause=bool(bed_off),
            retract_on_pause=retract,
            lift_z_on_pause=lift,
            detective_sensitivity=sens,
            min_timelapse_secs_on_finish=fin,
            min_timelapse_secs_on_cancel=can,
            archived_at=archived,
            agent_name=agent_name,
            agent_version=agent_version,
            settings_raw=bytes(settings) if settings else b"{}",
            status_raw=bytes(status) if status else None,
            status_ts=status_ts,
            status_received_at=received,
            available=None if available is None else bool(available),
            prediction_raw=bytes(prediction) if prediction else b"{}",
            normalized_p=normalized_p or 0.0,
        )
        if rec.status_raw is not None:
            apply_status_fields(rec, rec.status_raw)
        return rec

    def _open_prints(self, printer_id: int | None = None) -> list[PrintRecord]:
        sql = f"SELECT {', '.join(_PRINT_COLUMNS)} FROM prints WHERE ended_at IS NULL"
        args: tuple[Any, ...] = ()
        if printer_id is not None:
            sql += " AND printer_id = ?"
            args = (printer_id,)
        return [PrintRecord(**dict(zip(_PRINT_COLUMNS, row, strict=True))) for row in self.conn.execute(sql, args)]

    def _read_data_version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def reload_if_changed(self) -> ExternalChanges | None:
        """Pick up what another process (the CLI) wrote: printers created, changed or deleted.

        None when no other process wrote since the last call. Only configuration columns are compared;
        status is ours.
        """
        version = self._read_data_version()
        if version == self._data_version:
            return None
        self._data_version = version
        self._lists.clear()
        self._token_users.clear()
        cols = ", ".join(_PRINTER_CONFIG_COLUMNS)
        seen: set[int] = set()
        added, changed = [], []
        for row in self.conn.execute(f"SELECT {cols}, deleted_at FROM printers ORDER BY id"):
            values = dict(zip(_PRINTER_CONFIG_COLUMNS, row[:-1], strict=True))
            if row[-1] is not None:
                continue
            pid = values["id"]
            seen.add(pid)
            existing = self.printers.get(pid)
            if existing is None:
                full = self.conn.execute(f"{_SELECT_PRINTERS} WHERE id = ?", (pid,)).fetchone()
                rec = self._record_from_row(full)
                opened = self._open_prints(pid)
                rec.current_print = opened[0] if opened else None
                self.printers[pid] = rec
                added.append(rec)
                continue
            rec = existing
            diff = False
            for key, value in values.items():
                if key in _BOOL_COLUMNS:
                    value = bool(value)
                if getattr(rec, key) != value:
                    setattr(rec, key, value)
                    diff = True
            if diff:
                self.touch(rec, persist=False)
                changed.append(rec)
        removed = [self.printers.pop(pid) for pid in list(self.printers) if pid not in seen]
        for rec in removed:
            self._encoded.pop(rec.id, None)
            self._dirty.discard(rec.id)
        return ExternalChanges(added, changed, removed)

    # -- printers: reading -----------------------------------------------------------------------------

    def get(self, printer_id: int) -> PrinterRecord | None:
        return self.printers.get(printer_id)

    def owned(self, owner_id: int, with_archived: bool = False) -> Iterable[PrinterRecord]:
        for rec in self.printers.values():
            if rec.owner_id == owner_id and (with_archived or rec.archived_at is None):
                yield rec

    def printer_json(self, rec: PrinterRecord) -> bytes:
        data = self._encoded.get(rec.id)
        if data is None:
            data = self._encoded[rec.id] = encode_printer(rec)
        return data

    def printers_json(self, records: Iterable[PrinterRecord]) -> bytes:
        # one join, one copy: `b"[" + b",".join(...) + b"]"` copied a 50-printer list three times
        parts = [b"["]
        for r in records:
            parts.append(self.printer_json(r))
            parts.append(b",")
        parts[-1] = b"]" if len(parts) > 1 else b"[]"
        return b"".join(parts)

    def owned_json(self, owner_id: int, with_archived: bool = False) -> list[bytes]:
        """The JSON list of `owned(owner_id, with_archived)` in chunks: one chunk, kept until any printer
        changes, when it is at most LIST_CACHE_MAX_BYTES; else chunks of about that size, built per call
        (a fleet of thousands is neither cached twice nor joined into one buffer of many MiB, which glibc
        then keeps: bench/memory.py)."""
        key = (owner_id, with_archived)
        cached = self._lists.get(key)
        if cached is not None:
            return [cached]
        chunks: list[bytes] = []
        parts: list[bytes] = [b"["]
        size = 0
        for rec in self.owned(owner_id, with_archived):
            data = self.printer_json(rec)
            parts.append(data)
            parts.append(b",")
            size += len(data) + 1
            if size >= LIST_CACHE_MAX_BYTES:
                chunks.append(b"".join(parts))
                parts, size = [], 0
        if parts and parts[-1] == b",":
            parts[-1] = b"]"
        elif chunks:  # the last printer ended the previous chunk: replace its comma
            chunks[-1] = chunks[-1][:-1] + b"]"
        else:
            parts.append(b"]")
        if parts:
            chunks.append(b"".join(parts))
        if len(chunks) == 1:
            self._lists[key] = chunks[0]
        return chunks

    # -- printers: writing -----------------------------------------------------------------------------

    def mark_stale(self, cutoff: float) -> list[PrinterRecord]:
        """Statuses received before `cutoff` are served as null from now on; returns the printers that
        just went stale."""
        stale = []
        for rec in self.printers.values():
            if rec.status_raw is not None and not rec.stale:
                received = rec.status_received_at
                if received is None or received < cutoff:
                    rec.stale = True
                    self.touch(rec, persist=False)
                    stale.append(rec)
        return stale

    def touch(self, rec: PrinterRecord, persist: bool = True) -> None:
        """Record that `rec` changed in memory: its JSON is re-encoded and (persist) its status columns
        are written by the next flush."""
        self._encoded.pop(rec.id, None)
        self._lists.clear()
        if persist:
            self._dirty.add(rec.id)

    def create_printer(self, owner_id: int, name: str, fields: dict[str, Any] | None = None) -> PrinterRecord:
        values = {**PRINTER_DEFAULTS, **(fields or {})}
        now = self.clock()
        token = new_token()
        with self.transaction() as conn:
            cols = ["owner_id", "name", "created_at", "auth_token", *values, "archived_at"]
            params = [owner_id, name, now, token, *map(_column_value, values.values()), values.get("archived_at")]
            if "archived_at" in values:
                cols.pop()
                params.pop()
            cur = conn.execute(
                f"INSERT INTO printers ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})", params
            )
        rec = PrinterRecord(
            id=int(cur.lastrowid or 0), owner_id=owner_id, name=name, created_at=now, auth_token=token, **values
        )
        self.printers[rec.id] = rec
        self._lists.clear()
        self._data_version = self._read_data_version()
        return rec

    def update_printer(self, rec: PrinterRecord, changes: dict[str, Any]) -> None:
        if not changes:
            return
        with self.transaction() as conn:
            conn.execute(
                f"UPDATE printers SET {', '.join(f'{k} = ?' for k in changes)} WHERE id = ?",
                [*map(_column_value, changes.values()), rec.id],
            )
        for key, value in changes.items():
            setattr(rec, key, value)
        self.touch(rec, persist=False)

    def rotate_printer_token(self, rec: PrinterRecord) -> str:
        token = new_token()
        self.update_printer(rec, {"auth_token": token})
        return token

    def delete_printer(self, rec: PrinterRecord) -> None:
        now = self.clock()
        with self.transaction() as conn:
            conn.execute("UPDATE printers SET deleted_at = ? WHERE id = ?", (now, rec.id))
            conn.execute("UPDATE prints SET ended_at = ? WHERE printer_id = ? AND ended_at IS NULL", (now, rec.id))
            conn.execute("DELETE FROM snapshots WHERE printer_id = ?", (rec.id,))
        self.printers.pop(rec.id, None)
        self._encoded.pop(rec.id, None)
        self._lists.clear()
        self._dirty.discard(rec.id)
        self._pending_snapshots.pop(rec.id, None)

    def broker_token(self, printer_id: int) -> str | None:
        row = self.conn.execute("SELECT broker_token FROM printers WHERE id = ?", (printer_id,)).fetchone()
        return None if row is None else row[0]

    def broker_tokens(self) -> dict[int, str | None]:
        return {int(r[0]): r[1] for r in self.conn.execute("SELECT id, broker_token FROM printers")}

    def set_broker_token(self, printer_id: int, token: str | None) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE printers SET broker_token = ? WHERE id = ?", (token, printer_id))

    def deleted_printer_ids(self) -> list[int]:
        """Printers deleted or archived whose broker account may still exist."""
        rows = self.conn.execute(
            "SELECT id FROM printers WHERE (deleted_at IS NOT NULL OR archived_at IS NOT NULL) "
            "AND broker_token IS NOT NULL"
        )
        return [int(r[0]) for r in rows]

    # -- the coalesced writes ---------------------------------------------------------------------------

    def flush(self) -> int:
        """Write the status columns of every dirty printer, pending snapshots and the command history in
        one transaction."""
        if not self.pending_writes:
            return 0
        commands, outcomes = list(self._pending_commands.values()), self._pending_outcomes
        dirty = [self.printers[i] for i in self._dirty if i in self.printers]
        snapshots = self._pending_snapshots
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE printers SET agent_name = ?, agent_version = ?, settings = ?, status = ?, status_ts = ?, "
                "status_received_at = ?, available = ?, prediction = ?, normalized_p = ? WHERE id = ?",
                [
                    (
                        r.agent_name,
                        r.agent_version,
                        r.settings_raw,
                        r.status_raw,
                        r.status_ts,
                        r.status_received_at,
                        None if r.available is None else int(r.available),
                        r.prediction_raw,
                        r.normalized_p,
                        r.id,
                    )
                    for r in dirty
                ],
            )
            conn.executemany(
                "INSERT INTO snapshots (printer_id, jpeg, received_at) VALUES (?, ?, ?) "
                "ON CONFLICT(printer_id) DO UPDATE SET jpeg = excluded.jpeg, received_at = excluded.received_at",
                [(pid, jpeg, at) for pid, (jpeg, at) in snapshots.items()],
            )
            conn.executemany(_INSERT_COMMAND_SQL, commands)
            conn.executemany("UPDATE commands SET outcome = ?, error = ?, latency_ms = ? WHERE cmd_id = ?", outcomes)
        self._dirty.clear()
        self._pending_snapshots = {}
        self._pending_commands = {}
        self._pending_outcomes = []
        return len(dirty) + len(snapshots) + len(commands) + len(outcomes)

    @property
    def pending_writes(self) -> int:
        return (
            len(self._dirty) + len(self._pending_snapshots) + len(self._pending_commands) + len(self._pending_outcomes)
        )

    # -- snapshots ----------------------------------------------------------------------------------------

    def put_snapshot(self, rec: PrinterRecord, jpeg: bytes) -> None:
        self._pending_snapshots[rec.id] = (jpeg, self.clock())
        if not rec.has_pic:
            rec.has_pic = True
            self.touch(rec, persist=False)

    def snapshot(self, printer_id: int) -> bytes | None:
        pending = self._pending_snapshots.get(printer_id)
        if pending is not None:
            return pending[0]
        row = self.conn.execute("SELECT jpeg FROM snapshots WHERE printer_id = ?", (printer_id,)).fetchone()
        return None if row is None else bytes(row[0])

    # -- prints ------------------------------------------------------------------------------------------

    def open_print(self, rec: PrinterRecord, ts: float, filename: str | None) -> PrintRecord:
        now = self.clock()
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO prints (printer_id, ts, filename, started_at) VALUES (?, ?, ?, ?)",
                (rec.id, ts, filename, now),
            )
        p = PrintRecord(id=int(cur.lastrowid or 0), printer_id=rec.id, ts=ts, filename=filename, started_at=now)
        rec.current_print = p
        self.touch(rec, persist=False)
        return p

    def save_print(self, rec: PrinterRecord, p: PrintRecord) -> None:
        """Write every column of `p`; if it has ended, it stops being the printer's current print."""
        values = [getattr(p, c) for c in _PRINT_COLUMNS if c != "id"]
        with self.transaction() as conn:
            conn.execute(_PRINT_UPDATE_SQL, [*values, p.id])
        if p.ended_at is not None and rec.current_print is p:
            rec.current_print = None
        self.touch(rec, persist=False)

    def print_closed(self, printer_id: int, ts: float) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM prints WHERE printer_id = ? AND ts = ? AND ended_at IS NOT NULL LIMIT 1",
            (printer_id, ts),
        ).fetchone()
        return row is not None

    def prints(self, printer_id: int) -> list[PrintRecord]:
        sql = f"SELECT {', '.join(_PRINT_COLUMNS)} FROM prints WHERE printer_id = ? ORDER BY id"
        return [
            PrintRecord(**dict(zip(_PRINT_COLUMNS, row, strict=True))) for row in self.conn.execute(sql, (printer_id,))
        ]

    # -- commands ------------------------------------------------------------------------------------------

    def add_command(
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
        obeyed. When the database cannot be written, the row waits for the next successful `flush()`."""
        row = [
            cmd_id,
            printer_id,
            print_id,
            cmd,
            msgspec.json.encode(args).decode(),
            initiator,
            sent_at,
            outcome,
            error,
            None,
        ]
        try:
            with self.transaction() as conn:
                conn.execute(_INSERT_COMMAND_SQL, row)
        except StoreError:
            self._pending_commands[cmd_id] = row
            raise

    def finish_command(self, cmd_id: str, outcome: str, error: str | None, latency_ms: float | None) -> None:
        """Record a command's outcome; written by the next `flush()` (coalesced: ~2,000 actions/s would
        otherwise cost a second transaction each)."""
        row = self._pending_commands.get(cmd_id)
        if row is not None:
            row[7:10] = [outcome, error, latency_ms]
        else:
            self._pending_outcomes.append((outcome, error, latency_ms, cmd_id))

    def fail_unfinished_commands(self, error: str) -> int:
        """Commands left without an outcome by a crash: they were never answered in time."""
        self.flush()
        with self.transaction() as conn:
            cur = conn.execute("UPDATE commands SET outcome = 'timeout', error = ? WHERE outcome IS NULL", (error,))
        return cur.rowcount

    def commands(self, printer_id: int, limit: int) -> list[CommandRow]:
        self.flush()
        rows = self.conn.execute(
            "SELECT cmd_id, cmd, args, initiator, print_id, sent_at, outcome, error, latency_ms FROM commands "
            "WHERE printer_id = ? ORDER BY sent_at DESC, rowid DESC LIMIT ?",
            (printer_id, limit),
        )
        return [
            CommandRow(r[0], r[1], msgspec.Raw(r[2].encode()), r[3], r[4], to_iso(r[5]) or "", r[6], r[7], r[8])
            for r in rows
        ]

    # -- facts about the bridge ---------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- broker accounts -----------------------------------------------------------------------------------

    def account(self, name: str) -> tuple[str, str] | None:
        row = self.conn.execute("SELECT username, password FROM broker_accounts WHERE name = ?", (name,)).fetchone()
        return None if row is None else (row[0], row[1])

    def set_account(self, name: str, username: str, password: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO broker_accounts (name, username, password) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET username = excluded.username, password = excluded.password",
                (name, username, password),
            )
