"""The running bridge: its components wired together, started and stopped in order.

`Bridge` is built by the app factory (`bridge.app`), which hands HTTP handlers the narrow services they
need (the printer service, the actions, the read model) by dependency injection. Each component does
one thing: the store, the broker link, the printer dialects, ingest, commands, detection, outputs,
broker accounts, and the periodic steps (flush, stale sweep, reconcile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bridge.accounts import Accounts, broker_login
from bridge.actions import Actions
from bridge.commands import Abort, Commands
from bridge.config import Settings
from bridge.detector import Detector
from bridge.dialects.base import Dialect, DialectContext
from bridge.dialects.registry import Dialects
from bridge.discovery_mode import switch_discovery_mode
from bridge.domain.models import PrinterRecord
from bridge.inbound import Inbound
from bridge.ingest import Ingest
from bridge.mqtt.dynsec import RESPONSE_TOPIC
from bridge.mqtt.link import Incoming, MqttLink
from bridge.mqtt.outputs import Outputs
from bridge.mqtt.topics import Topics
from bridge.periodic import Periodic
from bridge.printer_service import PrinterService
from bridge.remote_actions import RemoteActions
from bridge.state.store import Store, StoreError
from bridge.upkeep import PrinterUpkeep

log = logging.getLogger("printbridge")


class Bridge:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.topics = Topics(settings.base_topic, settings.ha_prefix)
        self.store = Store(settings.db_path, clock)
        self.link = MqttLink(
            broker_login(settings.mqtt_url, self.store),
            protocol=settings.mqtt_protocol,
            will_topic=self.topics.bridge_state,
            subscriptions=[*self.topics.subscriptions(), RESPONSE_TOPIC],
            on_message=self._on_message,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            client_id=f"printbridge-{settings.base_topic}",  # one persistent session per bridge
            ca_file=settings.mqtt_ca,
        )
        self.outputs = Outputs(
            self.link, self.topics, clock, ha_discovery=settings.ha_discovery, ha_mode=settings.ha_discovery_mode
        )
        self.dialects = Dialects(self._dialect_context)
        self.link.subscriptions.extend(self.dialects.subscriptions())
        self.commands = Commands(self.store, self.dialect_of, clock, settings.command_timeout_s)
        self.detector = Detector(self.store, self.outputs, clock)
        self.actions = Actions(self.store, self.commands, self.outputs, clock)
        self.detector.bind(lambda rec: self.actions.command(rec, "pause", "system"))
        self.accounts = Accounts(self.link, self.store, self.topics)
        self.upkeep = PrinterUpkeep(self.outputs, self.accounts, self.dialect_of)
        self.printers = PrinterService(self.store, self.upkeep)
        self.remote_actions = RemoteActions(self.actions, self.link, self.topics)
        self.ingest = Ingest(self.store, self.outputs, self.commands, self.detector, clock)
        self.inbound = Inbound(
            self.store,
            self.topics,
            self.dialects,
            self.ingest,
            self.remote_actions.handle,
            self._ha_online,
            self.catch_up,
        )
        self.periodic = [
            Periodic(settings.flush_interval_s, self.flush),
            Periodic(settings.sweep_interval_s, self.sweep_stale),
            Periodic(settings.reconcile_interval_s, self.reconcile),
        ]
        self._link_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()  # account upkeep: cancelled when stopping
        self.ready = asyncio.Event()

    # -- dialects --------------------------------------------------------------------------------------

    def _dialect_context(self, name: str) -> DialectContext:
        def printers() -> list[PrinterRecord]:
            return [r for r in self.store.printers.values() if r.dialect == name and r.archived_at is None]

        return DialectContext(
            topics=self.topics,
            publisher=self.link,
            clock=self.clock,
            command_timeout_s=self.settings.command_timeout_s,
            deliver=lambda printer_id, inputs: self.inbound.deliver(printer_id, inputs),
            printers=printers,
            save_config=self._save_dialect_config,
            reconnect_cap_s=self.settings.reconnect_cap_s,
        )

    def _save_dialect_config(self, printer_id: int, config: dict[str, Any]) -> None:
        rec = self.store.printers.get(printer_id)
        if rec is None or rec.archived_at is not None:
            return
        try:
            self.store.printers.update(rec, {"dialect_config": config})
        except StoreError as exc:
            log.error("could not record the settings of printer %d: %s", printer_id, exc)

    def dialect_of(self, rec: PrinterRecord) -> Dialect:
        return self.dialects.get(rec.dialect)

    # -- life cycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.store.load()
        left = self.store.commands.fail_unfinished("bridge stopped before the ack arrived")
        if left:
            log.warning("%d commands were in flight when the bridge last stopped; recorded as timeout", left)
        self.sweep_stale()
        for dialect in self.dialects:
            await dialect.start()
        self._link_task = asyncio.get_running_loop().create_task(self.link.run(), name="mqtt-link")
        for step in self.periodic:
            await step.start()
        self.ready.set()

    async def stop(self) -> None:
        """Answer pending actions, publish `offline`, flush pending writes."""
        self.commands.fail_all(Abort.SHUTTING_DOWN)
        await self.commands.drained(1.0)  # the waiting requests answer and record before the store closes
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.detector.drain(), 1.0)  # automatic pauses record their outcome
        for task in self._background:
            task.cancel()
        await self.remote_actions.drain(1.0)
        for dialect in self.dialects:
            try:
                await dialect.stop()
            except Exception:
                log.exception("dialect %s did not stop cleanly", dialect.name)
        await self.link.stop()
        for step in self.periodic:
            await step.stop()
        if self._link_task is not None:
            self._link_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._link_task
        try:
            self.store.close()
        except StoreError as exc:
            log.error("could not write the last changes: %s", exc)

    @property
    def mqtt_connected(self) -> bool:
        return self.link.connected.is_set()

    # -- periodic work ---------------------------------------------------------------------------------

    def flush(self) -> None:
        self.store.flush()
        self.outputs.flush_deferred()

    def sweep_stale(self) -> None:
        """Statuses older than the TTL (by receive time) are served as null, and consumers are told."""
        for rec in self.store.printers.mark_stale(self.clock() - self.settings.status_ttl_s):
            self.outputs.printer_changed(rec)

    def catch_up(self) -> bool:
        """Take in what another process (the CLI) committed since the last look: printers created, changed
        or deleted, tokens replaced. Asked before every HTTP request (`bridge.http.fastpath`), for a message
        from a printer not loaded, and every reconcile tick; one `PRAGMA data_version` when nothing changed.
        Whether anything had; the broker accounts it calls for are made in the background."""
        changes = self.store.reload_if_changed()
        if changes is None:
            return False
        self.upkeep.take_in(changes)
        self._in_background(self.accounts.reconcile())
        return True

    async def reconcile(self) -> None:
        """Every second: outside changes no request or message has taken in yet (a CLI command the broker
        did not answer leaves its account change to them), and account changes the broker refused earlier."""
        if not self.catch_up() and self.accounts.due():
            await self.accounts.reconcile()

    # -- MQTT callbacks ----------------------------------------------------------------------------------

    def _on_message(self, msg: Incoming) -> None:
        if msg.topic == RESPONSE_TOPIC:
            self.accounts.handle_response(msg.payload)
            return
        self.inbound.handle(msg)

    async def _on_connect(self) -> None:
        printers = list(self.store.printers.values())
        mode = self.settings.ha_discovery_mode if self.settings.ha_discovery else "off"
        switch_discovery_mode(mode, self.store.database, self.outputs, printers)
        await self.outputs.publish_all(printers)
        for dialect in self.dialects:
            dialect.connected()
        self._in_background(self.accounts.on_connect(self.settings.require_broker_auth))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Account upkeep: not awaited by its caller, cancelled when the bridge stops."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_disconnect(self, reason: str) -> None:
        self.commands.fail_all(Abort.CONNECTION_LOST)

    def _ha_online(self) -> None:
        self.outputs.republish_discovery(list(self.store.printers.values()))
