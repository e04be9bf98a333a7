"""The running bridge: the store, the MQTT link and everything between them, with their background tasks.

`Bridge` is built by the app's lifespan (`bridge.app`) and handed to HTTP handlers by dependency injection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from bridge.accounts import Accounts
from bridge.actions import ActionOutcome, Actions
from bridge.commands import Abort, Commands
from bridge.config import Settings
from bridge.detector import Detector
from bridge.dialects.base import Dialect, DialectContext
from bridge.dialects.registry import Dialects
from bridge.domain.models import PrinterRecord
from bridge.inbound import Inbound
from bridge.ingest import Ingest
from bridge.mqtt.dynsec import RESPONSE_TOPIC
from bridge.mqtt.link import Incoming, MqttLink
from bridge.mqtt.outputs import Outputs
from bridge.mqtt.payloads import ActionResponse, PayloadError, decode_action, encoder
from bridge.mqtt.topics import Topics
from bridge.state.store import Store, StoreError

log = logging.getLogger("printbridge")

DISCOVERY_MODE_KEY = "ha_discovery_mode"
STORE_ERROR_LOG_EVERY_S = 60.0


class Bridge:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.topics = Topics(settings.base_topic, settings.ha_prefix)
        self.store = Store(settings.db_path, clock)
        url = settings.mqtt_url
        if url.username is None:
            stored = self.store.account("bridge")
            if stored is not None:
                url = dataclasses.replace(url, username=stored[0], password=stored[1])
        self.link = MqttLink(
            url,
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
            self.link,
            self.topics,
            clock,
            ha_discovery=settings.ha_discovery,
            ha_mode=settings.ha_discovery_mode,
        )
        self.dialects = Dialects(self._dialect_context)
        self.link.subscriptions.extend(self.dialects.subscriptions())
        self.commands = Commands(self.store, self.dialect_of, clock, settings.command_timeout_s)
        self.detector = Detector(self.store, self.outputs, clock)
        self.actions = Actions(self.store, self.commands, self.outputs, clock)
        self.detector.bind(lambda rec: self.actions.command(rec, "pause", "system"))
        self.accounts = Accounts(
            self.link, self.store, self.topics, lambda rec: self.dialect_of(rec).broker_permissions(self.topics, rec.id)
        )
        self.ingest = Ingest(self.store, self.outputs, self.commands, self.detector, clock)
        self.inbound = Inbound(self.store, self.topics, self.dialects, self.ingest, self._mqtt_action, self._ha_online)
        self._tasks: list[asyncio.Task[Any]] = []
        self._action_tasks: set[asyncio.Task[Any]] = set()  # MQTT actions: answered before stopping
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
        rec = self.store.get(printer_id)
        if rec is None or rec.archived_at is not None:
            return
        try:
            self.store.update_printer(rec, {"dialect_config": config})
        except StoreError as exc:
            log.error("could not record the settings of printer %d: %s", printer_id, exc)

    def dialect_of(self, rec: PrinterRecord) -> Dialect:
        return self.dialects.get(rec.dialect)

    # -- life cycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.store.load()
        left = self.store.fail_unfinished_commands("bridge stopped before the ack arrived")
        if left:
            log.warning("%d commands were in flight when the bridge last stopped; recorded as timeout", left)
        self.sweep_stale()
        for dialect in self.dialects:
            await dialect.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.link.run(), name="mqtt-link"),
            loop.create_task(self._every(self.settings.flush_interval_s, self.flush), name="flush"),
            loop.create_task(self._every(self.settings.sweep_interval_s, self.sweep_stale), name="sweep"),
            loop.create_task(self._every(self.settings.reconcile_interval_s, self.reconcile), name="reconcile"),
        ]
        self.ready.set()

    async def stop(self) -> None:
        """Answer pending actions, publish `offline`, flush pending writes."""
        self.commands.fail_all(Abort.SHUTTING_DOWN)
        await self.commands.drained(1.0)  # the waiting requests answer and record before the store closes
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.detector.drain(), 1.0)  # automatic pauses record their outcome
        for task in self._background:
            task.cancel()
        if self._action_tasks:
            await asyncio.wait(self._action_tasks, timeout=1.0)
        for dialect in self.dialects:
            with contextlib.suppress(Exception):
                await dialect.stop()
        await self.link.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            self.store.close()
        except StoreError as exc:
            log.error("could not write the last changes: %s", exc)

    async def _every(self, interval: float, step: Callable[[], Any]) -> None:
        name = getattr(step, "__name__", step)
        failing: str | None = None  # the error repeating now: logged when it starts, then once a minute
        logged_at = 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
                if failing is not None:
                    log.warning("%s works again (after: %s)", name, failing)
                    failing = None
            except StoreError as exc:
                now = time.monotonic()
                if str(exc) != failing or now - logged_at >= STORE_ERROR_LOG_EVERY_S:
                    log.error("%s failed: %s", name, exc)
                    failing, logged_at = str(exc), now
            except Exception:
                log.exception("%s failed", name)

    @property
    def mqtt_connected(self) -> bool:
        return self.link.connected.is_set()

    # -- periodic work ---------------------------------------------------------------------------------

    def flush(self) -> None:
        self.store.flush()
        self.outputs.flush_deferred()

    def sweep_stale(self) -> None:
        """Statuses older than the TTL (by receive time) are served as null, and consumers are told."""
        for rec in self.store.mark_stale(self.clock() - self.settings.status_ttl_s):
            self.outputs.printer_changed(rec)

    async def reconcile(self) -> None:
        """Printers created, changed or deleted by another process (the CLI) are picked up here, and so are
        broker accounts still to be made (the CLI's `ha-account`, a change the broker did not take)."""
        changes = self.store.reload_if_changed()
        if changes is not None:
            for rec in changes.added:
                self.outputs.printer_changed(rec)
                self.dialect_of(rec).printer_added(rec)
            for rec in changes.changed:
                if rec.archived_at is not None:
                    self.outputs.removed(rec)
                    self.dialect_of(rec).printer_removed(rec)
                else:
                    self.outputs.printer_changed(rec)
                    self.dialect_of(rec).printer_changed(rec)
            for rec in changes.removed:
                self.outputs.removed(rec)
                self.dialect_of(rec).printer_removed(rec)
        # Another process wrote (a printer, a token, the Home Assistant account), or a change failed earlier.
        if changes is not None or self.accounts.due():
            await self.accounts.reconcile()

    # -- MQTT callbacks ----------------------------------------------------------------------------------

    def _on_message(self, msg: Incoming) -> None:
        if msg.topic == RESPONSE_TOPIC:
            self.accounts.handle_response(msg.payload)
            return
        self.inbound.handle(msg)

    async def _on_connect(self) -> None:
        printers = list(self.store.printers.values())
        self._switch_discovery_mode(printers)
        await self.outputs.publish_all(printers)
        for dialect in self.dialects:
            dialect.connected()
        loop = asyncio.get_running_loop()
        task = loop.create_task(self.accounts.on_connect(self.settings.require_broker_auth))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _switch_discovery_mode(self, printers: list[PrinterRecord]) -> None:
        """If discovery was last published in another mode (or is now off), remove the old messages first."""
        current = self.settings.ha_discovery_mode if self.settings.ha_discovery else "off"
        previous = self.store.meta(DISCOVERY_MODE_KEY)
        if previous == current:
            return
        if previous in ("device", "entity"):
            log.info("Home Assistant discovery: %s -> %s; removing the %s messages", previous, current, previous)
            self.outputs.remove_discovery([r for r in printers if r.archived_at is None], previous)
        try:
            self.store.set_meta(DISCOVERY_MODE_KEY, current)
        except StoreError as exc:
            log.error("could not record the discovery mode: %s", exc)

    def _on_disconnect(self, reason: str) -> None:
        self.commands.fail_all(Abort.CONNECTION_LOST)

    def _ha_online(self) -> None:
        self.outputs.republish_discovery(list(self.store.printers.values()))

    def _mqtt_action(self, rec: PrinterRecord, name: str, payload: bytes) -> None:
        """SPEC 7.4: run the REST logic with initiator `homeassistant`; answer on the response topic."""
        try:
            request = decode_action(name, payload)
        except PayloadError as exc:
            self._respond(rec.id, name, None, ActionOutcome(False, str(exc)))
            raise
        task = asyncio.get_running_loop().create_task(self._run_action(rec, name, request.request_id, request.mute))
        self._action_tasks.add(task)
        task.add_done_callback(self._action_tasks.discard)

    async def _run_action(self, rec: PrinterRecord, name: str, request_id: str | None, mute: bool | None) -> None:
        try:
            if name in ("pause", "resume", "cancel"):
                outcome = await self.actions.command(rec, name, "homeassistant")
            elif name == "mute":
                outcome = self.actions.mute(rec, True if mute is None else mute)
            else:
                outcome = self.actions.acknowledge(rec, None)
        except StoreError as exc:
            outcome = ActionOutcome(False, f"database error: {exc}")
        self._respond(rec.id, name, request_id, outcome)

    def _respond(self, printer_id: int, name: str, request_id: str | None, outcome: ActionOutcome) -> None:
        body = encoder.encode(ActionResponse(request_id=request_id, succeeded=outcome.succeeded, error=outcome.error))
        self.link.publish_nowait(self.topics.action_response(printer_id, name), body)

    # -- printer management (REST and CLI share the store; these add the MQTT side) ------------------------

    async def create_printer(self, owner_id: int, fields: dict[str, Any]) -> PrinterRecord:
        name = fields.pop("name")
        rec = self.store.create_printer(owner_id, name, fields)
        if rec.archived_at is None:
            self.outputs.printer_changed(rec)
            self.dialect_of(rec).printer_added(rec)
            await self.accounts.printer_created(rec)
        return rec

    async def update_printer(self, rec: PrinterRecord, changes: dict[str, Any]) -> None:
        was_archived = rec.archived_at is not None
        self.store.update_printer(rec, changes)
        archived = rec.archived_at is not None
        if archived and not was_archived:
            self.outputs.removed(rec)
            self.dialect_of(rec).printer_removed(rec)
            await self.accounts.printer_removed(rec)
        elif not archived:
            self.outputs.printer_changed(rec)
            if was_archived:
                self.dialect_of(rec).printer_added(rec)
                await self.accounts.printer_created(rec)
            else:
                self.dialect_of(rec).printer_changed(rec)

    async def delete_printer(self, rec: PrinterRecord) -> None:
        self.store.delete_printer(rec)
        if rec.archived_at is None:
            self.outputs.removed(rec)
            self.dialect_of(rec).printer_removed(rec)
        await self.accounts.printer_removed(rec)

    async def rotate_printer_token(self, rec: PrinterRecord) -> str:
        token = self.store.rotate_printer_token(rec)
        if rec.archived_at is None:
            await self.accounts.token_rotated(rec)
        return token
