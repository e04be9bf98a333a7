"""The SQLite schema and its migrations. Each migration runs once; `schema_version` records how far."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils


def _v1(db: sqlite_utils.Database) -> None:
    db.table("users").create(
        {"id": int, "username": str, "token_hash": str, "created_at": float},
        pk="id",
        not_null={"username", "token_hash", "created_at"},
    )
    db.table("users").create_index(["username"], unique=True)
    db.table("users").create_index(["token_hash"], unique=True)
    db.table("printers").create(
        {
            "id": int,
            "owner_id": int,
            "name": str,
            "created_at": float,
            "auth_token": str,
            "action_on_failure": str,
            "watching_enabled": int,
            "tools_off_on_pause": int,
            "bed_off_on_pause": int,
            "retract_on_pause": float,
            "lift_z_on_pause": float,
            "detective_sensitivity": float,
            "min_timelapse_secs_on_finish": int,
            "min_timelapse_secs_on_cancel": int,
            "archived_at": float,
            "deleted_at": float,
            "agent_name": str,
            "agent_version": str,
            "settings": bytes,
            "status": bytes,
            "status_ts": float,
            "status_received_at": float,
            "available": int,
            "prediction": bytes,
            "normalized_p": float,
            "broker_token": str,  # the auth_token last provisioned on the broker (None: not yet)
        },
        pk="id",
        not_null={"owner_id", "name", "created_at", "auth_token"},
        foreign_keys=[("owner_id", "users", "id")],
    )
    db.table("printers").create_index(["owner_id"])
    db.table("prints").create(
        {
            "id": int,
            "printer_id": int,
            "ts": float,
            "filename": str,
            "started_at": float,
            "ended_at": float,
            "finished_at": float,
            "cancelled_at": float,
            "alerted_at": float,
            "alert_acknowledged_at": float,
            "alert_muted_at": float,
            "paused_at": float,
            "alert_overwrite": str,
            "print_time": float,
        },
        pk="id",
        not_null={"printer_id", "ts", "started_at"},
        foreign_keys=[("printer_id", "printers", "id")],
    )
    db.table("prints").create_index(["printer_id", "ts"])
    db.table("commands").create(
        {
            "cmd_id": str,
            "printer_id": int,
            "print_id": int,
            "cmd": str,
            "args": str,
            "initiator": str,
            "sent_at": float,
            "outcome": str,
            "error": str,
            "latency_ms": float,
        },
        pk="cmd_id",
        not_null={"printer_id", "cmd", "initiator", "sent_at"},
    )
    db.table("commands").create_index(["printer_id", "sent_at"])
    db.table("snapshots").create({"printer_id": int, "jpeg": bytes, "received_at": float}, pk="printer_id")
    db.table("broker_accounts").create({"name": str, "username": str, "password": str}, pk="name")


def _v2(db: sqlite_utils.Database) -> None:
    """Small facts about the bridge itself (e.g. which Home Assistant discovery mode it last published)."""
    db.table("meta").create({"key": str, "value": str}, pk="key")


def _v3(db: sqlite_utils.Database) -> None:
    """The protocol each printer speaks (bridge.dialects) and that dialect's own settings (JSON); the
    printers that exist speak today's protocol."""
    db.execute("ALTER TABLE printers ADD COLUMN dialect TEXT NOT NULL DEFAULT 'printbridge'")
    db.execute("ALTER TABLE printers ADD COLUMN dialect_config BLOB")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3]


def current_version(db: sqlite_utils.Database) -> int:
    if "schema_version" not in db.table_names():
        return 0
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(db: sqlite_utils.Database) -> int:
    """Bring the database up to the latest schema; return the version. Safe against a concurrent migrator."""
    conn: sqlite3.Connection = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        if "schema_version" not in db.table_names():
            conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
        version = current_version(db)
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            step(db)
            conn.execute("INSERT INTO schema_version VALUES (?, strftime('%s','now'))", (number,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)
