"""The state store: one SQLite connection (`database`) and the repositories over it, each in its own module.

`printers` (in memory, a mapping by id), `users`, `prints`, `snapshots`, `commands` (the history) and
`accounts` (broker logins and tokens). The store loads them together, takes in what another process
wrote, and writes everything they hold back (status columns, snapshots, command outcomes) in one
transaction per `flush()` (the app calls it every ~50 ms).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bridge.state.accounts import BrokerAccounts
from bridge.state.commands import CommandLog
from bridge.state.db import Database, StoreError
from bridge.state.printers import ExternalChanges, Printers
from bridge.state.prints import Prints
from bridge.state.snapshots import Snapshots
from bridge.state.users import Users

__all__ = ["ExternalChanges", "Store", "StoreError"]


class Store:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.database = database = Database(self.path)
        self.conn = database.conn
        self.db = database.db  # sqlite-utils' view of it
        self.users = Users(database, clock)
        self.snapshots = Snapshots(database, clock, lambda rec: self.printers.touch(rec, persist=False))
        self.printers = Printers(database, clock, on_delete=self.snapshots.forget)
        self.prints = Prints(database, clock, lambda rec: self.printers.touch(rec, persist=False))
        self.commands = CommandLog(database, self.flush)
        self.accounts = BrokerAccounts(database)

    def load(self) -> None:
        """Load every printer that is not deleted, with its current print."""
        self.printers.load(self.prints.open_prints(), self.snapshots.printer_ids())
        self.database.changed_elsewhere()  # what is loaded now is current

    def reload_if_changed(self) -> ExternalChanges | None:
        """Pick up what another process (the CLI) wrote: printers created, changed or deleted, tokens
        replaced. None when no other process wrote since the last call: `PRAGMA data_version` moves only
        when another connection commits (our own writes never move it, so none of them may reset the mark:
        that would swallow a commit made elsewhere since the last look). That answer costs about 3 us, so
        the bridge asks before every request (bench/RESULTS.md)."""
        if not self.database.changed_elsewhere():
            return None
        self.users.forget_tokens()
        return self.printers.reload(self.prints.open_prints)

    def flush(self) -> int:
        """Write the status columns of every dirty printer, pending snapshots and the command history in
        one transaction."""
        if not self.pending_writes:
            return 0
        parts = (self.printers, self.snapshots, self.commands)
        with self.database.transaction() as conn:
            written = sum(part.write_pending(conn) for part in parts)
        for part in parts:
            part.written()
        return written

    @property
    def pending_writes(self) -> int:
        return self.printers.pending + self.snapshots.pending + self.commands.pending

    @property
    def last_write_error(self) -> str | None:
        return self.database.last_write_error

    def check(self) -> bool:
        return self.database.check()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.database.close()
