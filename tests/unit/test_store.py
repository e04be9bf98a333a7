"""bridge.state.store on a real SQLite file: schema, users, printers, prints, commands, coalesced flush."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from bridge.domain.models import PrinterRecord, printer_defaults
from bridge.domain.views import encode_printer
from bridge.http.readmodel import ReadModel
from bridge.state.printers import COLUMNS, UNMAPPED
from bridge.state.schema import MIGRATIONS, current_version
from bridge.state.store import Store
from bridge.state.users import UserExists


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    s = Store(tmp_path / "sub" / "pb.db", clock)
    s.load()
    try:
        yield s
    finally:
        s.close()


def reopen(store: Store) -> Store:
    store.close()
    again = Store(store.path, store.clock)
    again.load()
    return again


# -- schema ----------------------------------------------------------------------------------------------


def test_schema_created_at_the_latest_version_and_wal(store: Store) -> None:
    assert store.path.exists()  # its folder was created
    assert current_version(store.db) == 3 == len(MIGRATIONS)
    rows = store.conn.execute("SELECT version FROM schema_version").fetchall()
    assert rows == [(1,), (2,), (3,)]
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = set(store.db.table_names())
    assert {"users", "printers", "prints", "commands", "snapshots", "schema_version"} <= tables


def test_migration_is_idempotent_on_reopen(store: Store) -> None:
    uid, _ = store.users.add("alice")
    store.printers.create(uid, "P")
    again = reopen(store)
    try:
        assert again.conn.execute("SELECT version FROM schema_version").fetchall() == [(1,), (2,), (3,)]
        assert again.users.id_of("alice") == uid
        assert [r.name for r in again.printers.values()] == ["P"]
    finally:
        again.close()
    third = Store(store.path)
    try:
        assert third.conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 3
    finally:
        third.close()


def test_a_version_1_database_is_migrated_without_losing_data(tmp_path: Path) -> None:
    import sqlite3

    import sqlite_utils

    from bridge.state import schema

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
    schema._v1(db)
    conn.execute("INSERT INTO schema_version VALUES (1, 0)")
    conn.execute("INSERT INTO users (username, token_hash, created_at) VALUES ('old', 'h', 0)")
    conn.close()
    upgraded = Store(path)
    try:
        assert current_version(upgraded.db) == len(MIGRATIONS)
        assert upgraded.users.id_of("old") == 1
        assert upgraded.database.meta("anything") is None
        upgraded.database.set_meta("ha_discovery_mode", "device")
        assert upgraded.database.meta("ha_discovery_mode") == "device"
    finally:
        upgraded.close()


def test_printers_of_a_version_2_database_speak_the_printbridge_dialect(tmp_path: Path) -> None:
    import sqlite_utils

    from bridge.state import schema

    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
    schema._v1(db)
    schema._v2(db)
    conn.execute("INSERT INTO schema_version VALUES (1, 0), (2, 0)")
    conn.execute("INSERT INTO users (username, token_hash, created_at) VALUES ('old', 'h', 0)")
    conn.execute("INSERT INTO printers (owner_id, name, created_at, auth_token) VALUES (1, 'MK3', 0, 'tok')")
    conn.close()
    upgraded = Store(path)
    try:
        upgraded.load()
        rec = upgraded.printers[1]
        assert (rec.name, rec.dialect, rec.dialect_config) == ("MK3", "printbridge", {})
        assert msgspec.json.decode(encode_printer(rec))["dialect"] == "printbridge"
    finally:
        upgraded.close()


def test_a_dialects_settings_are_stored_as_json_and_read_back(store: Store) -> None:
    owner, _ = store.users.add("ann")
    rec = store.printers.create(owner, "X1", {"dialect": "printbridge", "dialect_config": {"host": "10.0.0.5"}})
    store.printers.update(rec, {"dialect_config": {"host": "10.0.0.6", "serial": "01S"}})
    again = reopen(store)
    try:
        assert again.printers[rec.id].dialect_config == {"host": "10.0.0.6", "serial": "01S"}
    finally:
        again.close()


# -- users -----------------------------------------------------------------------------------------------


def test_users_and_hashed_tokens(store: Store) -> None:
    uid, token = store.users.add("alice")
    assert uid > 0 and len(token) >= 22  # at least 128 bits, URL-safe
    assert store.users.for_token(token) == uid
    assert store.users.for_token(token + "x") is None
    assert store.users.for_token("") is None
    assert store.users.id_of("alice") == uid and store.users.id_of("bob") is None
    with pytest.raises(UserExists):
        store.users.add("alice")
    assert store.users.count() == 1

    # The token is not stored in clear anywhere in the database file.
    store.close()
    raw = store.path.read_bytes() + (
        store.path.with_name(store.path.name + "-wal").read_bytes()
        if store.path.with_name(store.path.name + "-wal").exists()
        else b""
    )
    assert token.encode() not in raw
    conn = sqlite3.connect(store.path)
    try:
        [(stored,)] = conn.execute("SELECT token_hash FROM users WHERE username = 'alice'").fetchall()
    finally:
        conn.close()
    assert stored == hashlib.sha256(token.encode()).hexdigest() != token


def test_rotate_user_token(store: Store) -> None:
    uid, old = store.users.add("alice")
    new = store.users.rotate_token("alice")
    assert new is not None and new != old
    assert store.users.for_token(old) is None
    assert store.users.for_token(new) == uid
    assert store.users.rotate_token("nobody") is None


# -- printers --------------------------------------------------------------------------------------------


def test_printer_crud(store: Store, clock: FakeClock) -> None:
    uid, _ = store.users.add("alice")
    other, _ = store.users.add("bob")
    rec = store.printers.create(uid, "Prusa", {"retract_on_pause": 3.0})
    assert rec.id > 0 and rec.owner_id == uid and rec.created_at == clock.now
    assert rec.retract_on_pause == 3.0
    for key, default in printer_defaults().items():
        if key != "retract_on_pause":
            assert getattr(rec, key) == default
    assert len(rec.auth_token) >= 22
    bobs = store.printers.create(other, "Bob's")
    assert store.printers.get(rec.id) is rec
    assert [r.id for r in store.printers.owned(uid)] == [rec.id]
    assert [r.id for r in store.printers.owned(other)] == [bobs.id]

    views = ReadModel(store.printers)
    doc = msgspec.json.decode(views.printer_json(rec))
    assert doc["name"] == "Prusa" and doc["status"] is None and doc["settings"] == {}

    store.printers.update(rec, {"name": "Renamed", "watching_enabled": False, "archived_at": clock.now})
    assert rec.name == "Renamed" and rec.watching_enabled is False
    doc = msgspec.json.decode(views.printer_json(rec))  # the cached JSON was refreshed
    assert doc["name"] == "Renamed" and doc["watching_enabled"] is False and doc["archived_at"] is not None
    assert list(store.printers.owned(uid)) == [] and [r.id for r in store.printers.owned(uid, with_archived=True)] == [
        rec.id
    ]

    old_token = rec.auth_token
    token = store.printers.rotate_token(rec)
    assert token != old_token and rec.auth_token == token

    store.printers.delete(bobs)
    assert store.printers.get(bobs.id) is None

    again = reopen(store)
    try:
        loaded = again.printers.get(rec.id)
        assert loaded is not None
        assert (loaded.name, loaded.watching_enabled, loaded.retract_on_pause) == ("Renamed", False, 3.0)
        assert loaded.auth_token == token and loaded.archived_at == clock.now
        assert again.printers.get(bobs.id) is None  # deleted stays deleted
    finally:
        again.close()


def test_reload_if_changed_sees_another_process(store: Store) -> None:
    uid, _ = store.users.add("alice")
    mine = store.printers.create(uid, "Mine")
    assert store.reload_if_changed() is None  # only our own writes so far
    other = Store(store.path)
    try:
        other.load()
        created = other.printers.create(uid, "From the CLI")
        other_view = other.printers.get(mine.id)
        assert other_view is not None
        other.printers.update(other_view, {"name": "Renamed elsewhere"})
    finally:
        other.close()
    changes = store.reload_if_changed()
    assert changes is not None
    added, changed, removed = changes
    assert [r.id for r in added] == [created.id]
    assert [r.id for r in changed] == [mine.id] and mine.name == "Renamed elsewhere"
    assert removed == []
    assert store.reload_if_changed() is None


def test_own_write_after_another_commit_does_not_hide_that_commit(store: Store) -> None:
    """Two real connections: the CLI commits a printer, then the bridge writes its own, then the bridge looks
    for outside changes: the CLI's printer is loaded (a write of ours once reset the change marker)."""
    uid, _ = store.users.add("alice")
    assert store.reload_if_changed() is None
    cli = Store(store.path)
    try:
        cli.load()
        from_cli = cli.printers.create(uid, "From the CLI")
    finally:
        cli.close()
    ours = store.printers.create(uid, "From REST")
    changes = store.reload_if_changed()
    assert changes is not None
    assert [r.id for r in changes.added] == [from_cli.id]
    assert sorted(store.printers) == sorted([from_cli.id, ours.id])
    assert store.reload_if_changed() is None


# -- the coalesced flush ------------------------------------------------------------------------------


def test_many_touches_make_one_write(store: Store) -> None:
    uid, _ = store.users.add("alice")
    a = store.printers.create(uid, "A")
    b = store.printers.create(uid, "B")
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    for n in range(500):
        rec = a if n % 2 else b
        rec.status_raw = f'{{"_ts": {n}}}'.encode()
        rec.status_ts = float(n)
        store.printers.touch(rec)
    assert statements == []  # nothing written yet
    assert store.pending_writes == 2
    assert store.flush() == 2
    updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE PRINTERS")]
    commits = [s for s in statements if s.strip().upper() == "COMMIT"]
    assert len(updates) == 2 and len(commits) == 1
    statements.clear()
    assert store.flush() == 0 and statements == []
    store.conn.set_trace_callback(None)

    again = reopen(store)
    try:
        ra, rb = again.printers.get(a.id), again.printers.get(b.id)
        assert ra is not None and rb is not None
        assert (ra.status_raw, ra.status_ts) == (b'{"_ts": 499}', 499.0)
        assert (rb.status_raw, rb.status_ts) == (b'{"_ts": 498}', 498.0)
    finally:
        again.close()


def test_touch_without_persist_writes_nothing(store: Store) -> None:
    uid, _ = store.users.add("alice")
    rec = store.printers.create(uid, "A")
    store.printers.touch(rec, persist=False)
    assert store.pending_writes == 0 and store.flush() == 0


def test_close_flushes_pending_writes(store: Store) -> None:
    uid, _ = store.users.add("alice")
    rec = store.printers.create(uid, "A")
    rec.settings_raw = b'{"agent": {"name": "x"}}'
    rec.agent_name = "x"
    store.printers.touch(rec)
    again = reopen(store)
    try:
        loaded = again.printers.get(rec.id)
        assert loaded is not None and loaded.settings_raw == b'{"agent": {"name": "x"}}' and loaded.agent_name == "x"
    finally:
        again.close()


def test_snapshots_are_coalesced_and_served_before_the_flush(store: Store) -> None:
    uid, _ = store.users.add("alice")
    rec = store.printers.create(uid, "Cam")
    assert store.snapshots.latest(rec.id) is None
    store.snapshots.put(rec, b"\xff\xd8one")
    store.snapshots.put(rec, b"\xff\xd8two")
    assert rec.has_pic and store.snapshots.latest(rec.id) == b"\xff\xd8two"
    assert store.flush() == 1
    assert store.snapshots.latest(rec.id) == b"\xff\xd8two"
    again = reopen(store)
    try:
        loaded = again.printers.get(rec.id)
        assert loaded is not None and loaded.has_pic and again.snapshots.latest(rec.id) == b"\xff\xd8two"
    finally:
        again.close()


# -- prints ----------------------------------------------------------------------------------------------


def test_prints_open_save_close_and_reload(store: Store, clock: FakeClock) -> None:
    uid, _ = store.users.add("alice")
    rec = store.printers.create(uid, "A")
    p = store.prints.open(rec, 1716904799.0, "benchy.gcode")
    assert rec.current_print is p and p.started_at == clock.now and p.ended_at is None
    assert not store.prints.closed(rec.id, 1716904799.0)
    p.alert_muted_at = clock.now + 1
    store.prints.save(rec, p)
    assert rec.current_print is p  # still open

    again = reopen(store)
    try:
        loaded = again.printers.get(rec.id)
        assert loaded is not None and loaded.current_print == p
        cp = loaded.current_print
        assert cp is not None
        cp.ended_at = clock.now + 5
        cp.finished_at = clock.now + 5
        again.prints.save(loaded, cp)
        assert loaded.current_print is None
        assert again.prints.closed(rec.id, 1716904799.0)
        assert again.prints.of(rec.id) == [cp]
        second = again.prints.open(loaded, 1716909999.0, None)
        assert [x.id for x in again.prints.of(rec.id)] == [cp.id, second.id]
    finally:
        again.close()


def test_deleting_a_printer_ends_its_open_print(store: Store) -> None:
    uid, _ = store.users.add("alice")
    rec = store.printers.create(uid, "A")
    store.prints.open(rec, 100.0, "x.gcode")
    store.printers.delete(rec)
    [p] = store.prints.of(rec.id)
    assert p.ended_at is not None


# -- commands --------------------------------------------------------------------------------------------


def test_commands_recorded_finished_and_listed_newest_first(store: Store) -> None:
    uid, _ = store.users.add("alice")
    rec = store.printers.create(uid, "A")
    p = store.prints.open(rec, 100.0, None)
    store.commands.add("c1", rec.id, p.id, "pause", {"retract": 6.5}, "api", 10.0)
    store.commands.add("c2", rec.id, None, "resume", {}, "homeassistant", 20.0, outcome="not_sent", error="offline")
    store.commands.add("c3", rec.id, p.id, "cancel", {}, "system", 30.0)
    store.commands.finish("c1", "acked", None, 1.25)
    rows = store.commands.recent(rec.id, 10)
    assert [r.cmd_id for r in rows] == ["c3", "c2", "c1"]
    c1 = rows[2]
    assert (c1.cmd, c1.initiator, c1.print_id, c1.outcome, c1.error, c1.latency_ms) == (
        "pause",
        "api",
        p.id,
        "acked",
        None,
        1.25,
    )
    assert msgspec.json.decode(bytes(c1.args)) == {"retract": 6.5}
    assert (rows[1].outcome, rows[1].error) == ("not_sent", "offline")
    assert [r.cmd_id for r in store.commands.recent(rec.id, 1)] == ["c3"]
    assert store.commands.recent(rec.id + 1, 10) == []

    # A crash leaves c3 without an outcome: on the next start it is recorded as a timeout.
    assert store.commands.fail_unfinished("bridge stopped") == 1
    [c3] = store.commands.recent(rec.id, 1)
    assert (c3.outcome, c3.error) == ("timeout", "bridge stopped")
    assert store.commands.fail_unfinished("again") == 0


def test_a_command_row_is_on_disk_before_the_command_is_published(store: Store) -> None:
    """Another connection (a restarted bridge after kill -9) sees the row at once; only the outcome waits for
    the coalesced flush."""
    uid, _ = store.users.add("alice")
    rec = store.printers.create(uid, "A")
    store.commands.add("c1", rec.id, None, "pause", {}, "api", 10.0)
    other = sqlite3.connect(store.path)
    try:
        assert other.execute("SELECT cmd_id, outcome FROM commands").fetchall() == [("c1", None)]
        store.commands.finish("c1", "acked", None, 0.5)
        assert other.execute("SELECT outcome FROM commands").fetchall() == [(None,)]
        store.flush()
        assert other.execute("SELECT outcome, latency_ms FROM commands").fetchall() == [("acked", 0.5)]
    finally:
        other.close()


def test_the_printer_columns_are_declared_once_and_match_the_migrated_table(store: Store) -> None:
    """`bridge.state.printers.COLUMNS` is the one declaration of the printers table as PrinterRecord holds
    it: the migrations create exactly those columns (plus the two that are no record field), each field
    is mapped once, and every declared field survives a write and a load."""
    table = [c.name for c in store.db["printers"].columns]
    declared = [c.name for c in COLUMNS]
    assert len(set(declared)) == len(declared)
    assert set(declared) | UNMAPPED == set(table)
    fields = [c.field for c in COLUMNS]
    assert len(set(fields)) == len(fields) and set(fields) <= set(PrinterRecord.__struct_fields__)
    owner, _ = store.users.add("ann")
    rec = store.printers.create(owner, "P", {"dialect_config": {"k": 1}, "bed_off_on_pause": True})
    rec.status_raw, rec.settings_raw, rec.available, rec.normalized_p = b'{"a": 1}', b'{"b": 2}', False, 0.5
    rec.agent_name, rec.status_ts, rec.status_received_at, rec.prediction_raw = "agent", 5.0, 6.0, b'{"c": 3}'
    store.printers.touch(rec)
    again = reopen(store)
    try:
        loaded = again.printers[rec.id]
        for field in fields:
            assert getattr(loaded, field) == getattr(rec, field), field
    finally:
        again.close()
