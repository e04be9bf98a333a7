"""API users and their tokens (only a token's SHA-256 is stored)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

from bridge.state.db import Database


class UserExists(ValueError):
    pass


def new_token() -> str:
    return secrets.token_urlsafe(24)  # 192 bits


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Users:
    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock
        # API token -> user id, for tokens that were valid; cleared when tokens change here or when another
        # process (the CLI) writes to the database (`forget_tokens`, from the store's reload).
        self._token_users: dict[str, int] = {}

    def add(self, username: str) -> tuple[int, str]:
        token = new_token()
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                raise UserExists(username)
            cur = conn.execute(
                "INSERT INTO users (username, token_hash, created_at) VALUES (?, ?, ?)",
                (username, hash_token(token), self.clock()),
            )
        return int(cur.lastrowid or 0), token

    def rotate_token(self, username: str) -> str | None:
        token = new_token()
        with self.db.transaction() as conn:
            cur = conn.execute("UPDATE users SET token_hash = ? WHERE username = ?", (hash_token(token), username))
        self._token_users.clear()
        return token if cur.rowcount else None

    def id_of(self, username: str) -> int | None:
        row = self.db.conn.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
        return None if row is None else int(row[0])

    def for_token(self, token: str) -> int | None:
        user_id = self._token_users.get(token)
        if user_id is not None:
            return user_id
        row = self.db.conn.execute("SELECT id FROM users WHERE token_hash = ?", (hash_token(token),)).fetchone()
        if row is None:
            return None
        if len(self._token_users) >= 1024:
            self._token_users.clear()
        user_id = self._token_users[token] = int(row[0])
        return user_id

    def count(self) -> int:
        return int(self.db.conn.execute("SELECT count(*) FROM users").fetchone()[0])

    def forget_tokens(self) -> None:
        self._token_users.clear()
