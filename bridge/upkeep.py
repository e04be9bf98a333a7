"""What follows a printer change while the bridge runs: its MQTT outputs (retained state, Home Assistant
device), its dialect, and its broker account. The printer service calls it for changes made here;
`take_in` does the same for changes another process (the command line) wrote to the database."""

from __future__ import annotations

from collections.abc import Callable

from bridge.accounts import Accounts
from bridge.dialects.base import Dialect
from bridge.domain.models import PrinterRecord
from bridge.mqtt.outputs import Outputs
from bridge.state.printers import ExternalChanges


class PrinterUpkeep:
    def __init__(self, outputs: Outputs, accounts: Accounts, dialect_of: Callable[[PrinterRecord], Dialect]) -> None:
        self.outputs = outputs
        self.accounts = accounts
        self.dialect_of = dialect_of

    def _live(self, rec: PrinterRecord) -> None:
        self.outputs.printer_changed(rec)
        self.dialect_of(rec).printer_added(rec)

    def _updated(self, rec: PrinterRecord) -> None:
        self.outputs.printer_changed(rec)
        self.dialect_of(rec).printer_changed(rec)

    def _gone(self, rec: PrinterRecord) -> None:
        self.outputs.removed(rec)
        self.dialect_of(rec).printer_removed(rec)

    # -- PrinterHooks ------------------------------------------------------------------------------------

    async def added(self, rec: PrinterRecord) -> None:
        self._live(rec)
        await self.accounts.printer_created(rec)

    async def changed(self, rec: PrinterRecord) -> None:
        self._updated(rec)

    async def removed(self, rec: PrinterRecord, *, was_live: bool) -> None:
        if was_live:
            self._gone(rec)
        await self.accounts.printer_removed(rec)

    async def token_rotated(self, rec: PrinterRecord) -> None:
        await self.accounts.token_rotated(rec)

    # -- another process's changes (their broker accounts are reconciled as a whole) ----------------------

    def take_in(self, changes: ExternalChanges) -> None:
        for rec in changes.added:
            self._live(rec)
        for rec in changes.changed:
            if rec.archived_at is not None:
                self._gone(rec)
            else:
                self._updated(rec)
        for rec in changes.removed:
            self._gone(rec)
