"""Broker accounts kept in step with the printers (docs/mqtt.md, Accounts), through Mosquitto's dynamic-security plugin.

The bridge is the plugin's admin: it creates `printer-{id}` with the printer's auth token as password and
a role allowing exactly that printer's topics, changes the password when the token is rotated, and
deletes the account when the printer is deleted or archived (which disconnects a connected agent). None
of this restarts the broker. What could not be done while the broker was away is done by `reconcile()`
on the next connect: the store records which token each printer's account was last given.

With a broker that has no dynamic-security plugin (or where the bridge is not its admin) the bridge
works all the same and says once in the log that it cannot manage accounts.

The command line makes its own changes on the broker before it returns (`AccountsNow`, one short
connection as the same admin), so that the credentials it prints work at once; what it could not do is left
to the running bridge, whose `reconcile()` finds it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from bridge.dialects.registry import dialect_class
from bridge.domain.models import PrinterRecord
from bridge.mqtt import dynsec
from bridge.mqtt.brokercheck import anonymous_can_publish
from bridge.mqtt.dynsec import BRIDGE_ACCOUNT, HA_ACCOUNT, synced_name
from bridge.mqtt.dynsec_client import call_dynsec
from bridge.mqtt.link import MqttLink, NotConnected
from bridge.mqtt.topics import Topics
from bridge.mqtt.url import MqttUrl
from bridge.state.store import Store, StoreError

log = logging.getLogger("printbridge.accounts")

CALL_TIMEOUT_S = 5.0
RETRY_START_S = 1.0
RETRY_CAP_S = 60.0


def permissions(topics: Topics, rec: PrinterRecord) -> Sequence[dynsec.Permission]:
    """What the printer's dialect lets it do on the broker; empty: it gets no account (its dialect
    reaches it over another connection)."""
    return dialect_class(rec.dialect).broker_permissions(topics, rec.id)


def broker_login(url: MqttUrl, store: Store) -> MqttUrl:
    """The broker URL with the bridge's login: the one configured, else the account `broker-init` stored."""
    if url.username is None:
        stored = store.accounts.get(BRIDGE_ACCOUNT)
        if stored is not None:
            return dataclasses.replace(url, username=stored[0], password=stored[1])
    return url


class Accounts:
    def __init__(self, link: MqttLink, store: Store, topics: Topics) -> None:
        self.link = link
        self.store = store
        self.topics = topics
        self.available: bool | None = None  # None: not known yet
        self._pending: dict[str, asyncio.Future[list[dynsec.CommandResult]]] = {}
        self._seq = itertools.count()
        self._lock = asyncio.Lock()
        self._warned = False
        # After a reconcile that left the broker out of step, wait before trying again (1 s doubling to 60 s)
        # so that a change the broker keeps refusing is not retried and logged every second.
        self._retry_delay = RETRY_START_S
        self._retry_at = 0.0
        self._behind = False  # a change the broker has not taken yet (a failed call, or one left by reconcile)

    # -- talking to the plugin ---------------------------------------------------------------------------

    def handle_response(self, payload: bytes) -> None:
        try:
            results = dynsec.parse_response(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("unreadable dynamic-security response: %s", exc)
            return
        if not results:
            return
        tag = (results[0].correlation_data or "").rsplit("-", 1)[0]
        future = self._pending.get(tag)
        if future is not None and not future.done():
            future.set_result(results)

    async def call(self, commands: list[dict[str, Any]], timeout: float = CALL_TIMEOUT_S) -> list[dynsec.CommandResult]:
        """Send commands to the plugin and return its answers; raises TimeoutError or NotConnected."""
        tag = f"pb{uuid.uuid4().hex[:8]}{next(self._seq)}"
        tagged = [{**c, "correlationData": f"{tag}-{i}"} for i, c in enumerate(commands)]
        future: asyncio.Future[list[dynsec.CommandResult]] = asyncio.get_running_loop().create_future()
        self._pending[tag] = future
        try:
            await self.link.publish(dynsec.CONTROL_TOPIC, dynsec.encode_request(tagged), qos=1, timeout=timeout)
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(tag, None)

    async def _apply(self, commands: list[dict[str, Any]], what: str) -> bool:
        try:
            results = await self.call(commands)
        except (TimeoutError, NotConnected) as exc:
            log.warning("broker account change (%s) not done: %s", what, exc or "no answer")
            self._behind = True
            return False
        failed = dynsec.failures(results)
        if failed:
            log.warning("broker account change (%s): %s failed: %s", what, failed[0].command, failed[0].error)
            self._behind = True
            return False
        return True

    # -- connect: detect the plugin, check anonymous access, catch up -------------------------------------

    async def on_connect(self, require_auth: bool) -> None:
        try:
            await self.call([dynsec.build_list_clients_command()], timeout=3.0)
            self.available = True
        except (TimeoutError, NotConnected):
            self.available = False
            if not self._warned:
                log.warning(
                    "the broker did not answer on %s: printbridge cannot create or remove printer accounts "
                    "(use mosquitto/mosquitto.conf, where the bridge administers the dynamic-security plugin)",
                    dynsec.CONTROL_TOPIC,
                )
        if not self._warned:
            self._warned = True
            open_to_all = await asyncio.to_thread(
                anonymous_can_publish, self.link.url, self.topics.anonymous_probe, ca_file=self.link.ca_file
            )
            if open_to_all:
                log.warning(
                    "SECURITY: the broker lets anonymous clients publish to %s/#: anyone who can reach it can "
                    "fake a printer's status or send it commands%s",
                    self.topics.base,
                    "" if not require_auth else " (PRINTBRIDGE_REQUIRE_BROKER_AUTH is set)",
                )
        if self.available:
            await self.reconcile()

    def due(self) -> bool:
        """Whether a change the broker did not take should be tried again now (the bridge asks every
        reconcile tick; this reads no database)."""
        return bool(self.available) and self._behind and time.monotonic() >= self._retry_at

    def _differs(self) -> bool:
        synced = self.store.accounts.broker_tokens()
        if any(
            r.archived_at is None and synced.get(r.id) != r.auth_token and permissions(self.topics, r)
            for r in self.store.printers.values()
        ):
            return True
        if self.store.accounts.deleted_printer_ids():
            return True
        wanted = self.store.accounts.get(HA_ACCOUNT)
        return wanted is not None and self.store.accounts.get(synced_name(HA_ACCOUNT)) != wanted

    async def reconcile(self) -> None:
        """Make the broker's accounts match the store: every live printer with its current token, none for
        deleted or archived printers, and the Home Assistant account if one was asked for."""
        if not self.available:
            return
        async with self._lock:
            try:
                results = await self.call([dynsec.build_list_clients_command()])
            except (TimeoutError, NotConnected):
                return
            data = results[0].data or {}
            existing = set(data.get("clients") or [])
            synced = self.store.accounts.broker_tokens()
            for rec in list(self.store.printers.values()):
                if rec.archived_at is not None:
                    continue
                username = dynsec.printer_username(rec.id)
                if synced.get(rec.id) == rec.auth_token and username in existing:
                    continue
                if not permissions(self.topics, rec):
                    continue  # its dialect reaches it over another connection: no account
                await self._provision(rec, exists=username in existing)
            for printer_id in self.store.accounts.deleted_printer_ids():
                if await self._apply(dynsec.build_delete_printer_commands(printer_id), f"remove printer {printer_id}"):
                    self._set_synced(printer_id, None)
            await self._ensure_ha(existing)
            self._behind = self._differs()
            if self._behind:
                self._retry_at = time.monotonic() + self._retry_delay
                self._retry_delay = min(self._retry_delay * 2, RETRY_CAP_S)
            else:
                self._retry_delay = RETRY_START_S
                self._retry_at = 0.0

    async def _ensure_ha(self, existing: set[str]) -> None:
        wanted = self.store.accounts.get(HA_ACCOUNT)
        if wanted is None:
            return
        username, password = wanted
        if self.store.accounts.get(synced_name(HA_ACCOUNT)) == wanted and username in existing:
            return
        if username in existing:
            ok = await self._apply([dynsec.build_set_password_command(username, password)], "Home Assistant")
        else:
            ok = await self._apply(dynsec.build_ha_account_commands(username, password, self.topics), "Home Assistant")
        if ok:
            self.store.accounts.set(synced_name(HA_ACCOUNT), username, password)

    def _set_synced(self, printer_id: int, token: str | None) -> None:
        try:
            self.store.accounts.set_broker_token(printer_id, token)
        except StoreError as exc:
            log.error("could not record the broker account of printer %d: %s", printer_id, exc)

    async def _provision(self, rec: PrinterRecord, *, exists: bool) -> None:
        allowed = permissions(self.topics, rec)
        if not allowed:
            return
        commands = dynsec.build_printer_account_commands(rec.id, rec.auth_token, allowed, exists=exists)
        if await self._apply(commands, f"printer {rec.id}"):
            self._set_synced(rec.id, rec.auth_token)

    # -- printer life cycle ----------------------------------------------------------------------------

    async def printer_created(self, rec: PrinterRecord) -> None:
        if self.available:
            async with self._lock:
                await self._provision(rec, exists=False)

    async def token_rotated(self, rec: PrinterRecord) -> None:
        if self.available:
            async with self._lock:
                await self._provision(rec, exists=True)

    async def printer_removed(self, rec: PrinterRecord) -> None:
        if self.available:
            async with self._lock:
                if await self._apply(dynsec.build_delete_printer_commands(rec.id), f"remove printer {rec.id}"):
                    self._set_synced(rec.id, None)


class AccountsNow:
    """The command line's account changes, made on the broker before the command returns.

    Each method answers whether the broker took the change; when it did, the store records it (as the
    bridge's `Accounts` does), so the running bridge has nothing left to do. When it did not (the broker is
    away, has no dynamic-security plugin, or no admin login is known), nothing is recorded and the running
    bridge's `reconcile()` makes the change when it sees the database move.
    """

    def __init__(self, url: MqttUrl, store: Store, topics: Topics, ca_file: Path | None = None) -> None:
        self.url = broker_login(url, store)
        self.store = store
        self.topics = topics
        self.ca_file = ca_file

    def _apply(self, commands: list[dict[str, Any]]) -> bool:
        if self.url.username is None:  # anonymous cannot administer the plugin
            return False
        results = call_dynsec(self.url, commands, ca_file=self.ca_file)
        return results is not None and len(results) == len(commands) and not dynsec.failures(results)

    def printer_created(self, rec: PrinterRecord) -> bool:
        return self._printer_account(rec, exists=False)

    def token_rotated(self, rec: PrinterRecord) -> bool:
        return self._printer_account(rec, exists=True)

    def _printer_account(self, rec: PrinterRecord, *, exists: bool) -> bool:
        allowed = permissions(self.topics, rec)
        if not allowed:
            return True  # nothing to make on the broker: the dialect reaches the printer another way
        commands = dynsec.build_printer_account_commands(rec.id, rec.auth_token, allowed, exists=exists)
        if not self._apply(commands):
            return False
        self.store.accounts.set_broker_token(rec.id, rec.auth_token)
        return True

    def ha_account(self) -> bool:
        """Make the Home Assistant account (if one was asked for) exist with its password."""
        wanted = self.store.accounts.get(HA_ACCOUNT)
        if wanted is None:
            return False
        if self.store.accounts.get(synced_name(HA_ACCOUNT)) == wanted:
            return True
        username, password = wanted
        commands = [
            *dynsec.build_ha_account_commands(username, password, self.topics),
            dynsec.build_set_password_command(username, password),  # an account left from before
        ]
        if not self._apply(commands):
            return False
        self.store.accounts.set(synced_name(HA_ACCOUNT), username, password)
        return True
