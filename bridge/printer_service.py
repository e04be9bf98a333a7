"""Managing printers: create, change, archive, delete, new token. Shared by the REST API and the command line.

The service writes the store; what else must follow (the bridge's MQTT outputs, broker accounts and the
printer's dialect when `serve` runs) is told through `PrinterHooks`. The command line runs it without
hooks: a running `serve` takes the change in from the database.
"""

from __future__ import annotations

from typing import Any, Protocol

from bridge.domain.models import PrinterRecord, visible_to
from bridge.state.commands import CommandRow
from bridge.state.store import Store


class PrinterHooks(Protocol):
    async def added(self, rec: PrinterRecord) -> None:
        """A printer is live now: created, or unarchived."""

    async def changed(self, rec: PrinterRecord) -> None:
        """A live printer's configuration changed."""

    async def removed(self, rec: PrinterRecord, *, was_live: bool) -> None:
        """A printer was archived or deleted (`was_live`: it was not archived before)."""

    async def token_rotated(self, rec: PrinterRecord) -> None:
        """A live printer has a new auth token (its broker password)."""


class PrinterService:
    def __init__(self, store: Store, hooks: PrinterHooks | None = None) -> None:
        self.store = store
        self.hooks = hooks

    # -- reading -----------------------------------------------------------------------------------------

    def visible(self, user_id: int, printer_id: int, with_archived: bool = False) -> PrinterRecord | None:
        """The user's printer, or None (another user's, deleted, unknown, or archived unless asked for)."""
        rec = self.store.printers.get(printer_id)
        return rec if rec is not None and visible_to(rec, user_id, with_archived) else None

    def snapshot(self, rec: PrinterRecord) -> bytes | None:
        return self.store.snapshots.latest(rec.id)

    def commands(self, rec: PrinterRecord, limit: int) -> list[CommandRow]:
        return self.store.commands.recent(rec.id, limit)

    # -- writing -----------------------------------------------------------------------------------------

    async def create(self, owner_id: int, fields: dict[str, Any]) -> PrinterRecord:
        fields = dict(fields)
        name = fields.pop("name")
        rec = self.store.printers.create(owner_id, name, fields)
        if rec.archived_at is None and self.hooks is not None:
            await self.hooks.added(rec)
        return rec

    async def update(self, rec: PrinterRecord, changes: dict[str, Any]) -> None:
        was_archived = rec.archived_at is not None
        self.store.printers.update(rec, changes)
        archived = rec.archived_at is not None
        if self.hooks is None or (archived and was_archived):
            return
        if archived:
            await self.hooks.removed(rec, was_live=True)
        elif was_archived:
            await self.hooks.added(rec)
        else:
            await self.hooks.changed(rec)

    async def delete(self, rec: PrinterRecord) -> None:
        self.store.printers.delete(rec)
        if self.hooks is not None:
            await self.hooks.removed(rec, was_live=rec.archived_at is None)

    async def rotate_token(self, rec: PrinterRecord) -> str:
        token = self.store.printers.rotate_token(rec)
        if rec.archived_at is None and self.hooks is not None:
            await self.hooks.token_rotated(rec)
        return token
