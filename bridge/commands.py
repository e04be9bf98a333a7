"""Commands to printers and their replies (docs/mqtt.md, "Commands"): send, then await the matching reply.

Knows no dialect: the printer's dialect encodes and sends the command, and its reply arrives as a
normalised `CommandReply`. A registry of pending futures keyed by `cmd_id`: registered before sending,
removed in `finally`. Duplicate, late and unknown replies find no pending future and are ignored. A
dialect may ask for a confirmation after a positive reply (a state the printer must reach, seen in a
later status update) and may refuse a command before sending it. Every command is recorded with its
outcome so that the owner can see what was asked of a printer and what came of it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bridge.dialects.base import CommandNotSent, CommandRequest, Confirmation, Dialect
from bridge.domain.inputs import CommandReply
from bridge.domain.models import PrinterRecord
from bridge.state.store import Store, StoreError

log = logging.getLogger("printbridge.commands")


class Outcome(StrEnum):
    ACKED = "acked"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    NOT_SENT = "not_sent"


class Abort(StrEnum):
    """Why every pending command was answered at once (`Commands.fail_all`)."""

    CONNECTION_LOST = "broker connection lost"
    SHUTTING_DOWN = "bridge shutting down"


@dataclass(frozen=True, slots=True)
class CommandResult:
    cmd_id: str
    outcome: Outcome
    error: str | None
    latency_ms: float | None

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.ACKED


class Commands:
    def __init__(
        self,
        store: Store,
        dialect_for: Callable[[PrinterRecord], Dialect],
        clock: Callable[[], float],
        timeout_s: float,
    ) -> None:
        self.store = store
        self.dialect_for = dialect_for
        self.clock = clock
        self.timeout_s = timeout_s
        self._pending: dict[str, tuple[int, asyncio.Future[CommandReply | Abort]]] = {}
        # printer id -> confirmations awaited on its next status updates
        self._confirming: dict[int, list[tuple[PrinterRecord, Confirmation, asyncio.Future[None]]]] = {}
        # cmd_id = a random prefix per bridge + a counter: unique without a uuid4 (a getrandom call) per command
        self._id_prefix = uuid.uuid4().hex[:16]
        self._id_seq = itertools.count()
        self._idle = asyncio.Event()  # set while nothing is pending
        self._idle.set()
        self.ignored_acks = 0

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def send(
        self, rec: PrinterRecord, print_id: int | None, cmd: str, args: dict[str, Any], initiator: str
    ) -> CommandResult:
        dialect = self.dialect_for(rec)
        cmd_id = f"{self._id_prefix}{next(self._id_seq):016x}"
        sent_at = self.clock()
        refusal = dialect.refuse(rec, cmd)
        if refusal is not None:
            self._record(cmd_id, rec.id, print_id, cmd, args, initiator, sent_at, Outcome.REFUSED, refusal)
            return CommandResult(cmd_id, Outcome.REFUSED, refusal, None)
        started = time.perf_counter()
        self._record(cmd_id, rec.id, print_id, cmd, args, initiator, sent_at)
        future: asyncio.Future[CommandReply | Abort] = asyncio.get_running_loop().create_future()
        self._pending[cmd_id] = (rec.id, future)
        self._idle.clear()
        try:
            try:
                await dialect.send_command(rec, CommandRequest(cmd_id, cmd, args, initiator, sent_at))
            except CommandNotSent as exc:
                log.warning("command %s %s to printer %d not sent: %s", cmd, cmd_id, rec.id, exc)
                return self._finish(cmd_id, Outcome.NOT_SENT, "broker unavailable", None)
            try:
                reply = await asyncio.wait_for(asyncio.shield(future), self._remaining(started))
            except TimeoutError:
                return self._finish(cmd_id, Outcome.TIMEOUT, "timeout", None)
            if isinstance(reply, Abort):
                return self._finish(cmd_id, Outcome.TIMEOUT, reply.value, None)
            latency = (time.perf_counter() - started) * 1000
            if not reply.ok:
                return self._finish(cmd_id, Outcome.REFUSED, reply.error or "refused by the printer", latency)
            confirmation = dialect.confirmation(rec, cmd)
            if confirmation is not None and not await self._confirmed(rec, confirmation, started):
                return self._finish(cmd_id, Outcome.TIMEOUT, confirmation.reason(rec), None)
            return self._finish(cmd_id, Outcome.ACKED, None, (time.perf_counter() - started) * 1000)
        finally:
            self._pending.pop(cmd_id, None)
            if not self._pending:
                self._idle.set()

    def _remaining(self, started: float) -> float:
        return max(self.timeout_s - (time.perf_counter() - started), 0.001)

    async def _confirmed(self, rec: PrinterRecord, confirmation: Confirmation, started: float) -> bool:
        """Wait until a status update makes `confirmation` hold (or it holds already), within the timeout."""
        if confirmation.met(rec):
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (rec, confirmation, waiter)
        self._confirming.setdefault(rec.id, []).append(entry)
        try:
            await asyncio.wait_for(waiter, self._remaining(started))
            return True
        except TimeoutError:
            return False
        finally:
            waiting = self._confirming.get(rec.id, [])
            if entry in waiting:
                waiting.remove(entry)
            if not waiting:
                self._confirming.pop(rec.id, None)

    def status_applied(self, rec: PrinterRecord) -> None:
        """A status update was applied to `rec`: wake the confirmations it satisfies."""
        waiting = self._confirming.get(rec.id)
        if not waiting:
            return
        for _, confirmation, waiter in waiting:
            if not waiter.done() and confirmation.met(rec):
                waiter.set_result(None)

    def _record(self, cmd_id: str, *row: Any) -> None:
        """Add the command's row (`CommandLog.add`'s arguments after `cmd_id`)."""
        try:
            self.store.commands.add(cmd_id, *row)
        except StoreError as exc:  # the command still goes out; its row waits for the next successful flush
            log.error("could not record command %s: %s", cmd_id, exc)

    def _finish(self, cmd_id: str, outcome: Outcome, error: str | None, latency_ms: float | None) -> CommandResult:
        try:
            self.store.commands.finish(cmd_id, outcome, error, latency_ms)
        except StoreError as exc:
            log.error("could not record the outcome of command %s: %s", cmd_id, exc)
        return CommandResult(cmd_id, outcome, error, latency_ms)

    def record_not_sent(
        self, printer_id: int, print_id: int | None, cmd: str, args: dict[str, Any], initiator: str, error: str
    ) -> None:
        """An action refused before sending (not printing, offline) still shows in the history."""
        self._record(
            uuid.uuid4().hex, printer_id, print_id, cmd, args, initiator, self.clock(), Outcome.NOT_SENT, error
        )

    def handle_reply(self, printer_id: int, reply: CommandReply) -> None:
        """Resolve the pending command a reply answers."""
        entry = self._pending.get(reply.cmd_id)
        if entry is None or entry[0] != printer_id or entry[1].done():
            self.ignored_acks += 1
            log.debug("ignored reply %s from printer %d (late, duplicate or unknown)", reply.cmd_id, printer_id)
            return
        entry[1].set_result(reply)

    def fail_all(self, reason: Abort) -> None:
        """Answer every pending command now (the connection dropped, or the bridge is stopping)."""
        for _, future in list(self._pending.values()):
            if not future.done():
                future.set_result(reason)

    async def drained(self, timeout: float) -> bool:
        """Wait (after `fail_all`) until every caller has taken its answer and recorded the outcome."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
