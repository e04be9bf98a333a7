"""The five printer actions (docs/rest.md, Actions), shared by the REST API, MQTT actions and failure detection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from bridge.commands import Commands
from bridge.domain.models import PrinterRecord, pause_args
from bridge.mqtt.outputs import Outputs
from bridge.state.store import Store

log = logging.getLogger("printbridge.actions")


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    succeeded: bool
    error: str | None = None


NOT_PRINTING = ActionOutcome(False, "not printing")


class Actions:
    def __init__(self, store: Store, commands: Commands, outputs: Outputs, clock: Callable[[], float]) -> None:
        self.store = store
        self.commands = commands
        self.outputs = outputs
        self.clock = clock

    def _changed(self, rec: PrinterRecord) -> None:
        self.store.printers.touch(rec, persist=False)
        self.outputs.printer_changed(rec)

    def _judge_alert(self, rec: PrinterRecord, overwrite: str) -> None:
        """cancel/resume through a person: an outstanding alert is acknowledged with their judgment."""
        p = rec.current_print
        if p is not None and p.alerted_at is not None:
            p.alert_acknowledged_at = self.clock()
            p.alert_overwrite = overwrite
            self.store.prints.save(rec, p)

    async def command(self, rec: PrinterRecord, cmd: str, initiator: str) -> ActionOutcome:
        """pause / resume / cancel: preconditions, then publish and await the agent's ack."""
        p = rec.current_print
        args = pause_args(rec) if cmd == "pause" else {}
        if p is None:
            self.commands.record_not_sent(rec.id, None, cmd, args, initiator, "not printing")
            return NOT_PRINTING
        if initiator != "system":
            if cmd == "cancel":
                self._judge_alert(rec, "FAILED")
            elif cmd == "resume":
                self._judge_alert(rec, "NOT_FAILED")
        if not rec.online:
            self.commands.record_not_sent(rec.id, p.id, cmd, args, initiator, "printer offline")
            self._changed(rec)
            return ActionOutcome(False, "printer offline")
        result = await self.commands.send(rec, p.id, cmd, args, initiator)
        if result.ok and cmd == "resume" and rec.current_print is p and p.paused_at is not None:
            p.paused_at = None  # a person resumed: detection may pause this print again
            self.store.prints.save(rec, p)
        self._changed(rec)
        return ActionOutcome(result.ok, result.error)

    def mute(self, rec: PrinterRecord, mute: bool) -> ActionOutcome:
        p = rec.current_print
        if p is None:
            return NOT_PRINTING
        if mute != (p.alert_muted_at is not None):
            p.alert_muted_at = self.clock() if mute else None
            self.store.prints.save(rec, p)
        self.outputs.event(rec, "ALERT_MUTED" if mute else "ALERT_UNMUTED", p)
        self._changed(rec)
        return ActionOutcome(True)

    def acknowledge(self, rec: PrinterRecord, overwrite: str | None) -> ActionOutcome:
        p = rec.current_print
        if p is None:
            return NOT_PRINTING
        if p.alerted_at is not None:
            p.alert_acknowledged_at = self.clock()
            p.alert_overwrite = overwrite
            self.store.prints.save(rec, p)
            self._changed(rec)
        return ActionOutcome(True)
