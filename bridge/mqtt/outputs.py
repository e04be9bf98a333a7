"""What the bridge publishes for consumers: retained state, events, remote_status (docs/mqtt.md)
and Home Assistant discovery (7.1). Derived outputs are published only when their content changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bridge.domain.models import PrinterRecord, PrintRecord, should_watch
from bridge.domain.views import build_state, encode_event, encode_state, state_key
from bridge.mqtt.discovery import DiscoveryInfo, build_discovery, build_removal, make_discovery_info
from bridge.mqtt.link import MqttLink
from bridge.mqtt.payloads import RemoteStatus, encoder
from bridge.mqtt.topics import Topics

log = logging.getLogger("printbridge.outputs")

# Above this many unacknowledged publishes, a printer's retained state waits for `flush_deferred()`
# (latest state per printer wins) instead of queueing one more message per status: a status burst
# otherwise queued tens of thousands of state messages in paho's memory (bench/ingest.py).
MAX_SEND_BACKLOG = 2000


def discovery_info(rec: PrinterRecord) -> DiscoveryInfo:
    # temperature_keys keep the last reported set while the printer is offline, so that going offline
    # does not remove and re-add the temperature entities.
    return make_discovery_info(rec.id, rec.name, rec.agent_name, rec.agent_version, rec.temperature_keys)


class Outputs:
    def __init__(
        self,
        link: MqttLink,
        topics: Topics,
        clock: Callable[[], float],
        *,
        ha_discovery: bool,
        ha_mode: str,
    ) -> None:
        self.link = link
        self.topics = topics
        self.clock = clock
        self.ha_discovery = ha_discovery
        self.ha_mode = ha_mode
        # hash of the last published state (without updated_at): ~500 bytes less per printer than the key
        self._state: dict[int, int] = {}
        self._watch: dict[int, bool] = {}
        self._discovery: dict[int, DiscoveryInfo] = {}
        self._deferred: dict[int, PrinterRecord] = {}

    # -- change tracking ----------------------------------------------------------------------------------

    def printer_changed(self, rec: PrinterRecord) -> None:
        """Publish whatever derived output of `rec` changed."""
        if rec.archived_at is not None:
            return
        state = build_state(rec)
        key = hash(state_key(state))
        if self._state.get(rec.id) != key:
            if self.link.send_backlog > MAX_SEND_BACKLOG:
                self._deferred[rec.id] = rec
            elif self.link.publish_nowait(self.topics.state(rec.id), encode_state(state, self.clock()), retain=True):
                self._state[rec.id] = key
                self._deferred.pop(rec.id, None)
        watch = should_watch(rec)
        if self._watch.get(rec.id) != watch and self.link.publish_nowait(
            self.topics.remote_status(rec.id), encoder.encode(RemoteStatus(should_watch=watch)), retain=True
        ):
            self._watch[rec.id] = watch
        if self.ha_discovery:
            info = discovery_info(rec)
            previous = self._discovery.get(rec.id)
            if previous != info and self._publish_all(
                build_discovery(info, self.topics, self.ha_mode, previous=previous)
            ):
                self._discovery[rec.id] = info

    def flush_deferred(self) -> None:
        """Publish the states held back while the broker was behind (called every flush interval)."""
        while self._deferred and self.link.send_backlog <= MAX_SEND_BACKLOG:
            _, rec = self._deferred.popitem()
            self.printer_changed(rec)

    def event(self, rec: PrinterRecord, event_type: str, p: PrintRecord | None) -> None:
        if not self.link.publish_nowait(self.topics.event(rec.id), encode_event(event_type, rec, p, self.clock())):
            log.warning("event %s for printer %d not published: broker connection is down", event_type, rec.id)

    def removed(self, rec: PrinterRecord) -> None:
        """The printer was deleted or archived: clear its retained topics and its Home Assistant device."""
        empty = [(self.topics.state(rec.id), b""), (self.topics.remote_status(rec.id), b"")]
        if self.ha_discovery:
            previous = self._discovery.get(rec.id) or discovery_info(rec)
            empty += build_removal(rec.id, self.topics, self.ha_mode, previous)
        self._publish_all(empty)
        self._state.pop(rec.id, None)
        self._watch.pop(rec.id, None)
        self._discovery.pop(rec.id, None)
        self._deferred.pop(rec.id, None)

    def remove_discovery(self, printers: list[PrinterRecord], mode: str) -> None:
        """Remove every printer's discovery as published in `mode` (the bridge switched mode, or switched
        discovery off): otherwise Home Assistant would keep the old devices or entities beside the new."""
        for rec in printers:
            self._publish_all(build_removal(rec.id, self.topics, mode, discovery_info(rec)))

    def forget(self) -> None:
        """After a reconnect: publish everything again (the broker may have lost its retained messages)."""
        self._state.clear()
        self._watch.clear()
        self._discovery.clear()
        self._deferred.clear()

    def republish_discovery(self, printers: list[PrinterRecord]) -> None:
        """Home Assistant came (back) online: send every device's discovery again."""
        if not self.ha_discovery:
            return
        self._discovery.clear()
        for rec in printers:
            if rec.archived_at is None:
                self.printer_changed(rec)

    def _publish_all(self, messages: list[tuple[str, bytes]]) -> bool:
        ok = True
        for topic, payload in messages:
            ok = self.link.publish_nowait(topic, payload, retain=True) and ok
        return ok

    async def publish_all(self, printers: list[PrinterRecord]) -> None:
        """Publish every printer's outputs, yielding now and then so a large fleet does not stall the loop."""
        self.forget()
        for n, rec in enumerate(printers):
            self.printer_changed(rec)
            if n % 200 == 199:
                await asyncio.sleep(0)
                # let the broker catch up (paho's queue costs memory and CPU); paho signals no "drained"
                while self.link.send_backlog > MAX_SEND_BACKLOG and self.link.connected.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
