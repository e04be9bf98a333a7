"""Commands to printer agents and their acknowledgments (SPEC 5.3): publish, then await the matching ack.

A registry of pending futures keyed by `cmd_id`: registered before publishing, removed in `finally`.
Duplicate, late and unknown acks find no pending future and are ignored. Every command is recorded
with its outcome so that the owner can see what was asked of a printer and what came of it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.mqtt.link import MqttLink, NotConnected
from bridge.mqtt.payloads import Command, PayloadError, decode_ack, encoder
from bridge.mqtt.topics import Topics
from bridge.state.store import Store, StoreError

log = logging.getLogger("printbridge.commands")


@dataclass(frozen=True, slots=True)
class CommandResult:
    cmd_id: str
    outcome: str  # acked | refused | timeout | not_sent
    error: str | None
    latency_ms: float | None

    @property
    def ok(self) -> bool:
        return self.outcome == "acked"


class Commands:
    def __init__(
        self, link: MqttLink, topics: Topics, store: Store, clock: Callable[[], float], timeout_s: float
    ) -> None:
        self.link = link
        self.topics = topics
        self.store = store
        self.clock = clock
        self.timeout_s = timeout_s
        self._pending: dict[str, tuple[int, asyncio.Future[tuple[bool, str | None]]]] = {}
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
        self, printer_id: int, print_id: int | None, cmd: str, args: dict[str, Any], initiator: str
    ) -> CommandResult:
        cmd_id = f"{self._id_prefix}{next(self._id_seq):016x}"
        sent_at = self.clock()
        started = time.perf_counter()
        self._record(cmd_id, printer_id, print_id, cmd, args, initiator, sent_at)
        future: asyncio.Future[tuple[bool, str | None]] = asyncio.get_running_loop().create_future()
        self._pending[cmd_id] = (printer_id, future)
        self._idle.clear()
        try:
            payload = encoder.encode(Command(cmd_id=cmd_id, cmd=cmd, args=args, initiator=initiator, ts=sent_at))
            try:
                await self.link.publish(
                    self.topics.command(printer_id),
                    payload,
                    qos=1,
                    response_topic=self.topics.ack(printer_id),
                    correlation=cmd_id.encode(),
                    timeout=self.timeout_s,
                )
            except (NotConnected, TimeoutError) as exc:
                log.warning("command %s %s to printer %d not sent: %s", cmd, cmd_id, printer_id, exc)
                return self._finish(cmd_id, "not_sent", "broker unavailable", None)
            remaining = self.timeout_s - (time.perf_counter() - started)
            try:
                ok, error = await asyncio.wait_for(asyncio.shield(future), max(remaining, 0.001))
            except TimeoutError:
                return self._finish(cmd_id, "timeout", "timeout", None)
            latency = (time.perf_counter() - started) * 1000
            if ok:
                return self._finish(cmd_id, "acked", None, latency)
            if error in ("broker connection lost", "bridge shutting down"):
                return self._finish(cmd_id, "timeout", error, None)
            return self._finish(cmd_id, "refused", error or "refused by the printer", latency)
        finally:
            self._pending.pop(cmd_id, None)
            if not self._pending:
                self._idle.set()

    def _record(
        self,
        cmd_id: str,
        printer_id: int,
        print_id: int | None,
        cmd: str,
        args: dict[str, Any],
        initiator: str,
        sent_at: float,
    ) -> None:
        try:
            self.store.add_command(cmd_id, printer_id, print_id, cmd, args, initiator, sent_at)
        except StoreError as exc:  # the command still goes out; its row waits for the next successful flush
            log.error("could not record command %s: %s", cmd_id, exc)

    def _finish(self, cmd_id: str, outcome: str, error: str | None, latency_ms: float | None) -> CommandResult:
        entry = self._pending.get(cmd_id)
        try:
            self.store.finish_command(cmd_id, outcome, error, latency_ms, entry[0] if entry else None)
        except StoreError as exc:
            log.error("could not record the outcome of command %s: %s", cmd_id, exc)
        return CommandResult(cmd_id, outcome, error, latency_ms)

    def record_not_sent(
        self, printer_id: int, print_id: int | None, cmd: str, args: dict[str, Any], initiator: str, error: str
    ) -> None:
        """An action refused before publishing (not printing, offline) still shows in the history."""
        try:
            self.store.add_command(
                uuid.uuid4().hex, printer_id, print_id, cmd, args, initiator, self.clock(), "not_sent", error
            )
        except StoreError as exc:
            log.error("could not record a refused %s for printer %d: %s", cmd, printer_id, exc)

    def handle_ack(self, printer_id: int, payload: bytes) -> None:
        """Resolve the pending command an ack answers; raises PayloadError for a malformed ack."""
        ack = decode_ack(payload)
        entry = self._pending.get(ack.cmd_id)
        if entry is None or entry[0] != printer_id or entry[1].done():
            self.ignored_acks += 1
            log.debug("ignored ack %s from printer %d (late, duplicate or unknown)", ack.cmd_id, printer_id)
            return
        if not ack.ok and ack.error is not None and not isinstance(ack.error, str):
            raise PayloadError("ack: error must be a string")
        entry[1].set_result((ack.ok, ack.error))

    def fail_all(self, reason: str) -> None:
        """Answer every pending command now (the connection dropped, or the bridge is stopping)."""
        for _, future in list(self._pending.values()):
            if not future.done():
                future.set_result((False, reason))

    async def drained(self, timeout: float) -> bool:
        """Wait (after `fail_all`) until every caller has taken its answer and recorded the outcome."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
