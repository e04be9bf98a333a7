"""Normalised inputs -> state (docs/mqtt.md, "The agent message"). Knows no dialect.

Runs inline in the receive path: no awaiting here. Each input arrives validated (its dialect decoded it
completely), so applying one never leaves a printer half-changed by a malformed message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bridge.commands import Commands
from bridge.detector import Detector
from bridge.domain.inputs import (
    Availability,
    CommandReply,
    DetectionFrame,
    Input,
    PayloadError,
    SignOfLife,
    Snapshot,
    StatusUpdate,
)
from bridge.domain.models import PrinterRecord, PrintRecord
from bridge.domain.status import apply_status_fields
from bridge.mqtt.outputs import Outputs
from bridge.state.store import Store

log = logging.getLogger("printbridge.ingest")

SAME_PRINT_SKEW_S = 20.0
MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024

# Agent event -> consumer event (docs/mqtt.md)
_EVENTS = {
    "PrintStarted": "STARTED",
    "PrintPaused": "PAUSED",
    "PrintResumed": "RESUMED",
    "PrintCancelled": "ENDED",
    "PrintFailed": "ENDED",
    "PrintDone": "ENDED",
    "FilamentChange": "FILAMENT_CHANGE",
}

Events = list[tuple[str, PrintRecord | None]]


def _job_file(update: StatusUpdate) -> str | None:
    job = update.status.get("job") if update.status is not None else None
    if isinstance(job, dict) and isinstance(job.get("file"), dict):
        name = job["file"].get("name")
        return name if isinstance(name, str) and name else None
    return None


@dataclass(eq=False)
class Ingest:
    store: Store
    outputs: Outputs
    commands: Commands
    detector: Detector
    clock: Callable[[], float]

    def apply(self, rec: PrinterRecord, inputs: Sequence[Input]) -> None:
        """Apply a message's inputs in order; raises PayloadError (nothing changed) for one that the state
        refuses (an out-of-order status, a snapshot that is not a JPEG)."""
        for item in inputs:
            if isinstance(item, StatusUpdate):
                self.apply_status(rec, item)
            elif isinstance(item, Availability):
                self.apply_availability(rec, item.online)
            elif isinstance(item, CommandReply):
                self.commands.handle_reply(rec.id, item)
            elif isinstance(item, Snapshot):
                self.apply_snapshot(rec, item.jpeg)
            elif isinstance(item, DetectionFrame):
                self.detector.handle_frame(rec, item.p)
            elif isinstance(item, SignOfLife):
                self.apply_sign_of_life(rec)

    def apply_availability(self, rec: PrinterRecord, available: bool) -> None:
        if rec.available != available:
            rec.available = available
            self.store.printers.touch(rec)
            self.outputs.printer_changed(rec)

    def apply_sign_of_life(self, rec: PrinterRecord) -> None:
        """The printer answered: its status counts as fresh from now (it is not served as stale)."""
        rec.status_received_at = self.clock()
        if rec.stale:
            rec.stale = False
            self.store.printers.touch(rec)
            self.outputs.printer_changed(rec)

    def apply_snapshot(self, rec: PrinterRecord, jpeg: bytes) -> None:
        if len(jpeg) > MAX_SNAPSHOT_BYTES:
            raise PayloadError(f"snapshot of {len(jpeg)} bytes is over the 4 MiB limit")
        if not jpeg.startswith(b"\xff\xd8"):
            raise PayloadError("snapshot: not a JPEG image")
        self.store.snapshots.put(rec, jpeg)

    def apply_status(self, rec: PrinterRecord, update: StatusUpdate) -> None:
        now = self.clock()
        ts = update.ts
        if ts is not None and rec.status_ts is not None and ts < rec.status_ts:
            raise PayloadError(f"out of order: status._ts {ts} is older than the stored {rec.status_ts}")
        events: Events = []
        # 1. settings
        if update.settings_raw is not None:
            rec.settings_raw = update.settings_raw
            rec.agent_name = update.agent_name
            rec.agent_version = update.agent_version
        # 2. status
        was_error = rec.online and self._error_flag(rec)
        if update.status is not None and update.status_raw is not None:
            rec.status_raw = update.status_raw
            if ts is not None:
                rec.status_ts = ts
            rec.status_received_at = now
            rec.stale = False
            if not update.retained:
                rec.available = True  # a live status proves the agent is up
            apply_status_fields(rec, rec.status_raw, update.status)
            if not was_error and self._error_flag(rec):
                events.append(("PRINTER_ERROR", rec.current_print))
        else:
            rec.status_raw = None  # a message without status: the printer is offline
        # 3. opening a print
        cpt = update.current_print_ts
        if cpt is not None and cpt > 0:
            self._maybe_open(rec, float(cpt), update.filename or _job_file(update), events, now)
        # 4. the event
        if update.event is not None:
            self._apply_event(rec, update.event, events, now)
        # 5. closing
        if cpt == -1 and rec.current_print is not None:
            self._close(rec, now, finished=True, events=events)
        self.store.printers.touch(rec)
        for event_type, p in events:
            self.outputs.event(rec, event_type, p)
        self.outputs.printer_changed(rec)
        self.commands.status_applied(rec)

    @staticmethod
    def _error_flag(rec: PrinterRecord) -> bool:
        return rec.state_text is not None and rec.state_text.lower().startswith("error")

    @staticmethod
    def _has(events: Events, event_type: str) -> bool:
        return any(e == event_type for e, _ in events)

    def _maybe_open(self, rec: PrinterRecord, cpt: float, filename: str | None, events: Events, now: float) -> None:
        cp = rec.current_print
        if cp is not None:
            if cp.ts == cpt:
                return
            if abs(cp.ts - cpt) <= SAME_PRINT_SKEW_S and cp.filename == filename:
                return  # clock skew: the same print
        if self.store.prints.closed(rec.id, cpt):
            return  # a print already closed: its late messages change nothing
        if cp is not None:
            self._close(rec, now, finished=False, events=events)
        p = self.store.prints.open(rec, cpt, filename)
        self.detector.reset_for_new_print(rec)
        events.append(("STARTED", p))

    def _close(self, rec: PrinterRecord, now: float, *, finished: bool, events: Events) -> None:
        p = rec.current_print
        if p is None:
            return
        p.ended_at = now
        if finished and p.cancelled_at is None and p.finished_at is None:
            p.finished_at = now
        if rec.print_time_s is not None:
            p.print_time = rec.print_time_s
        self.store.prints.save(rec, p)
        rec.normalized_p = 0.0
        if not self._has(events, "ENDED"):
            events.append(("ENDED", p))

    def _apply_event(self, rec: PrinterRecord, kind: str, events: Events, now: float) -> None:
        mapped = _EVENTS.get(kind)
        if mapped is None:
            return  # an event type the contract does not name: ignored, the rest of the message applies
        p = rec.current_print
        if kind in ("PrintCancelled", "PrintFailed"):
            if p is not None:
                p.cancelled_at = now
                self._close(rec, now, finished=False, events=events)
            return
        if kind == "PrintDone":
            if p is not None:
                p.finished_at = now
                self._close(rec, now, finished=True, events=events)
            return
        if mapped == "STARTED" and self._has(events, "STARTED"):
            return
        events.append((mapped, p))
