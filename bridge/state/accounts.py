"""Broker accounts: the stored logins (the bridge's own, Home Assistant's) and which auth token each
printer's broker account was last given."""

from __future__ import annotations

from bridge.state.db import Database


class BrokerAccounts:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, name: str) -> tuple[str, str] | None:
        row = self.db.conn.execute("SELECT username, password FROM broker_accounts WHERE name = ?", (name,)).fetchone()
        return None if row is None else (row[0], row[1])

    def set(self, name: str, username: str, password: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO broker_accounts (name, username, password) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET username = excluded.username, password = excluded.password",
                (name, username, password),
            )

    def broker_tokens(self) -> dict[int, str | None]:
        return {int(r[0]): r[1] for r in self.db.conn.execute("SELECT id, broker_token FROM printers")}

    def set_broker_token(self, printer_id: int, token: str | None) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE printers SET broker_token = ? WHERE id = ?", (token, printer_id))

    def deleted_printer_ids(self) -> list[int]:
        """Printers deleted or archived whose broker account may still exist."""
        rows = self.db.conn.execute(
            "SELECT id FROM printers WHERE (deleted_at IS NOT NULL OR archived_at IS NOT NULL) "
            "AND broker_token IS NOT NULL"
        )
        return [int(r[0]) for r in rows]
