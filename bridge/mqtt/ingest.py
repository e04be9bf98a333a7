"""Inbound MQTT messages -> state (SPEC 5.2, 5.4). Runs inline in the receive path: no awaiting here.

Every message is decoded and validated completely before anything is changed, so a malformed one is
dropped (and logged, rate-limited) without touching stored state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bridge.detector import Detector
from bridge.domain.models import PrinterRecord, PrintRecord
from bridge.domain.status import apply_status_fields
from bridge.mqtt.commands import Commands
from bridge.mqtt.droplog import DropLog
from bridge.mqtt.link import Incoming
from bridge.mqtt.outputs import Outputs
from bridge.mqtt.payloads import (
    MAX_SNAPSHOT_BYTES,
    AgentMessage,
    PayloadError,
    decode_agent_message,
    decode_availability,
)
from bridge.mqtt.topics import Topics
from bridge.state.store import Store, StoreError

log = logging.getLogger("printbridge.ingest")

SAME_PRINT_SKEW_S = 20.0

# Agent event -> consumer event (SPEC 5.2, 7.3)
_EVENTS = {
    "PrintStarted": "STARTED",
    "PrintPaused": "PAUSED",
    "PrintResumed": "RESUMED",
    "PrintCancelled": "ENDED",
    "PrintFailed": "ENDED",
    "PrintDone": "ENDED",
    "FilamentChange": "FILAMENT_CHANGE",
}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class Ingest:
    def __init__(
        self,
        store: Store,
        topics: Topics,
        outputs: Outputs,
        commands: Commands,
        detector: Detector,
        actions_over_mqtt: Callable[[PrinterRecord, str, bytes], None],
        on_ha_online: Callable[[], None],
        catch_up: Callable[[], bool],
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.topics = topics
        self.outputs = outputs
        self.commands = commands
        self.detector = detector
        self.actions_over_mqtt = actions_over_mqtt
        self.on_ha_online = on_ha_online
        self.catch_up = catch_up  # takes in what another process committed; True when anything had changed
        self.clock = clock
        self.drops = DropLog()
        self.handled = 0

    def handle(self, msg: Incoming) -> None:
        try:
            self._handle(msg)
        except PayloadError as exc:
            self.drops.drop(msg.topic, str(exc))
        except StoreError as exc:
            self.drops.drop(msg.topic, f"database: {exc}")
        except UnicodeDecodeError as exc:  # msgspec's error for invalid UTF-8 inside a JSON string
            self.drops.drop(msg.topic, f"not valid UTF-8: {exc}")

    def _handle(self, msg: Incoming) -> None:
        parsed = self.topics.parse(msg.topic)
        if parsed is None:
            if msg.topic == self.topics.ha_status:
                if msg.payload.strip() == b"online":
                    self.on_ha_online()
                return
            self.drops.drop(msg.topic, "not a topic the bridge consumes")
            return
        rec = self.store.get(parsed.printer_id)
        if (rec is None or rec.archived_at is not None) and self.catch_up():
            rec = self.store.get(parsed.printer_id)  # created or unarchived by the CLI a moment ago
        if rec is None or rec.archived_at is not None:
            if msg.payload or parsed.leaf != "availability":
                self.drops.drop(msg.topic, "unknown, deleted or archived printer")
            return
        leaf = parsed.leaf
        if leaf == "status":
            self.apply_agent_message(rec, msg.payload, retained=msg.retain)
        elif leaf == "availability":
            self.apply_availability(rec, msg.payload)
        elif leaf == "ack":
            self.commands.handle_ack(rec.id, msg.payload)
        elif leaf == "snapshot":
            self.apply_snapshot(rec, msg.payload)
        elif leaf == "detection":
            self.detector.handle_frame(rec, msg.payload)
        elif leaf == "action" and parsed.action is not None:
            if msg.retain:
                raise PayloadError("retained action messages are not acted on")
            self.actions_over_mqtt(rec, parsed.action, msg.payload)
        self.handled += 1

    # -- leaves --------------------------------------------------------------------------------------------

    def apply_availability(self, rec: PrinterRecord, payload: bytes) -> None:
        available = decode_availability(payload)
        if rec.available != available:
            rec.available = available
            self.store.touch(rec)
            self.outputs.printer_changed(rec)

    def apply_snapshot(self, rec: PrinterRecord, payload: bytes) -> None:
        if len(payload) > MAX_SNAPSHOT_BYTES:
            raise PayloadError(f"snapshot of {len(payload)} bytes is over the 4 MiB limit")
        if not payload.startswith(b"\xff\xd8"):
            raise PayloadError("snapshot: not a JPEG image")
        self.store.put_snapshot(rec, payload)

    def apply_agent_message(self, rec: PrinterRecord, payload: bytes, *, retained: bool = False) -> None:
        msg, status, settings = decode_agent_message(payload)
        now = self.clock()
        if status is not None:
            ts = status.get("_ts")
            if ts is not None and rec.status_ts is not None and ts < rec.status_ts:
                raise PayloadError(f"out of order: status._ts {ts} is older than the stored {rec.status_ts}")
        events: list[tuple[str, PrintRecord | None]] = []
        # 1. settings
        if settings is not None:
            rec.settings_raw = bytes(msg.settings)
            agent = settings.agent
            rec.agent_name = _str_or_none(agent.name) if agent else None
            rec.agent_version = _str_or_none(agent.version) if agent else None
        # 2. status
        was_error = rec.online and self._error_flag(rec)
        if status is not None:
            rec.status_raw = bytes(msg.status)
            if status.get("_ts") is not None:
                rec.status_ts = float(status["_ts"])
            rec.status_received_at = now
            rec.stale = False
            if not retained:
                rec.available = True  # a live status proves the agent is up
            apply_status_fields(rec, rec.status_raw, status)
            if not was_error and self._error_flag(rec):
                events.append(("PRINTER_ERROR", rec.current_print))
        else:
            rec.status_raw = None  # a message without status: the printer is offline
        # 3. opening a print
        cpt = msg.current_print_ts
        filename = self._filename(msg, status)
        if cpt is not None and cpt > 0:
            self._maybe_open(rec, float(cpt), filename, events, now)
        # 4. the event
        if msg.event is not None:
            self._apply_event(rec, msg, events, now)
        # 5. closing
        if cpt == -1 and rec.current_print is not None:
            self._close(rec, now, finished=True, events=events)
        self.store.touch(rec)
        for event_type, p in events:
            self.outputs.event(rec, event_type, p)
        self.outputs.printer_changed(rec)

    @staticmethod
    def _error_flag(rec: PrinterRecord) -> bool:
        return rec.state_text is not None and rec.state_text.lower().startswith("error")

    @staticmethod
    def _filename(msg: AgentMessage, status: dict[str, Any] | None) -> str | None:
        if msg.event is not None and isinstance(msg.event.data, dict):
            name = _str_or_none(msg.event.data.get("name"))
            if name:
                return name
        if status is not None:
            job = status.get("job")
            if isinstance(job, dict) and isinstance(job.get("file"), dict):
                return _str_or_none(job["file"].get("name"))
        return None

    @staticmethod
    def _has(events: list[tuple[str, PrintRecord | None]], event_type: str) -> bool:
        return any(e == event_type for e, _ in events)

    def _maybe_open(
        self,
        rec: PrinterRecord,
        cpt: float,
        filename: str | None,
        events: list[tuple[str, PrintRecord | None]],
        now: float,
    ) -> None:
        cp = rec.current_print
        if cp is not None:
            if cp.ts == cpt:
                return
            if abs(cp.ts - cpt) <= SAME_PRINT_SKEW_S and cp.filename == filename:
                return  # clock skew: the same print
        if self.store.print_closed(rec.id, cpt):
            return  # a print already closed: its late messages change nothing
        if cp is not None:
            self._close(rec, now, finished=False, events=events)
        p = self.store.open_print(rec, cpt, filename)
        self.detector.reset_for_new_print(rec)
        events.append(("STARTED", p))

    def _close(
        self, rec: PrinterRecord, now: float, *, finished: bool, events: list[tuple[str, PrintRecord | None]]
    ) -> None:
        p = rec.current_print
        if p is None:
            return
        p.ended_at = now
        if finished and p.cancelled_at is None and p.finished_at is None:
            p.finished_at = now
        if rec.print_time_s is not None:
            p.print_time = rec.print_time_s
        self.store.save_print(rec, p)
        rec.normalized_p = 0.0
        if not self._has(events, "ENDED"):
            events.append(("ENDED", p))

    def _apply_event(
        self, rec: PrinterRecord, msg: AgentMessage, events: list[tuple[str, PrintRecord | None]], now: float
    ) -> None:
        assert msg.event is not None
        kind = msg.event.event_type
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
