"""Every message the bridge's broker connection receives, routed: Home Assistant's status, actions, and
printer topics, which the printer's dialect decodes into normalised inputs for ingest.

Runs inline in the receive path. A message that cannot be used (not a topic the bridge consumes, an
unknown printer, a payload its dialect rejects, a database error) is dropped and logged, rate-limited.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bridge.dialects.registry import Dialects
from bridge.domain.inputs import Input, PayloadError
from bridge.domain.models import PrinterRecord
from bridge.ingest import Ingest
from bridge.mqtt.droplog import DropLog
from bridge.mqtt.link import Incoming
from bridge.mqtt.topics import Topics
from bridge.state.store import Store, StoreError


@dataclass(eq=False)
class Inbound:
    store: Store
    topics: Topics
    dialects: Dialects
    ingest: Ingest
    on_action: Callable[[PrinterRecord, str, bytes], None]
    on_ha_online: Callable[[], None]
    catch_up: Callable[[], bool]  # takes in what another process committed; True when anything had changed
    drops: DropLog = field(default_factory=DropLog)
    handled: int = 0  # messages used (not dropped)

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
        if parsed is None or (parsed.action is None and not self.dialects.accepted(parsed.leaf)):
            if msg.topic == self.topics.ha_status:
                if msg.payload.strip() == b"online":
                    self.on_ha_online()
                return
            self.drops.drop(msg.topic, "not a topic the bridge consumes")
            return
        rec = self.store.printers.get(parsed.printer_id)
        if (rec is None or rec.archived_at is not None) and self.catch_up():
            rec = self.store.printers.get(parsed.printer_id)  # created or unarchived by the CLI a moment ago
        if rec is None or rec.archived_at is not None:
            if msg.payload or not self.dialects.clears_silently(parsed.leaf):
                self.drops.drop(msg.topic, "unknown, deleted or archived printer")
            return
        if parsed.action is not None:
            if msg.retain:
                raise PayloadError("retained action messages are not acted on")
            self.on_action(rec, parsed.action, msg.payload)
        else:
            dialect = self.dialects.get(rec.dialect)
            if not dialect.accepts(parsed.leaf):
                raise PayloadError(f"not a topic of the printer's dialect ({rec.dialect})")
            self.ingest.apply(rec, dialect.decode(rec, parsed.leaf, msg.payload, msg.retain))
        self.handled += 1

    def deliver(self, printer_id: int, inputs: Sequence[Input]) -> None:
        """Inputs from a dialect that reaches its printers over its own connection."""
        rec = self.store.printers.get(printer_id)
        what = f"printer {printer_id}"
        if rec is None or rec.archived_at is not None:
            self.drops.drop(what, "unknown, deleted or archived printer")
            return
        try:
            self.ingest.apply(rec, inputs)
        except PayloadError as exc:
            self.drops.drop(what, str(exc))
            return
        except StoreError as exc:
            self.drops.drop(what, f"database: {exc}")
            return
        self.handled += 1
