"""The printer agent: what the plugin runs while it is configured. No OctoPrint import: OctoPrint is reached
through `Host` and `PrinterControl`, which the plugin implements.

Threads, none of them OctoPrint's:
- paho's network thread (`link.MqttLink`): connects, reconnects, receives;
- the status thread: turns OctoPrint's events (queued by `on_event`, which returns at once) and a timer
  into agent messages, and publishes them; it also publishes the current status at once on (re)connection;
- the command thread: runs commands one at a time and publishes their acks;
- the snapshot thread: while printing, a webcam snapshot every `snapshot_interval_s`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from octoprint_printbridge.commands import CommandHandler, PrinterControl, StateWatch
from octoprint_printbridge.link import MqttLink
from octoprint_printbridge.settings import AgentSettings
from octoprint_printbridge.status import FORWARDED_EVENTS, STATE_EVENTS, PrintTracker, build_settings

log = logging.getLogger("octoprint.plugins.printbridge")

MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024
_STOP = object()
_ACTIVE_FLAGS = ("printing", "paused", "pausing", "cancelling")


class Host(Protocol):
    def current_data(self) -> Mapping[str, Any]: ...

    def temperatures(self) -> Mapping[str, Any]: ...

    def webcams(self) -> list[dict[str, Any]]: ...

    def snapshot(self) -> bytes | None: ...


def _encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False, default=str).encode()


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        host: Host,
        control: PrinterControl,
        watch: StateWatch,
        tracker: PrintTracker,
        version: str,
    ) -> None:
        self.settings = settings
        self._host = host
        self._tracker = tracker
        self._version = version
        self._commands = CommandHandler(control, watch)
        self._events: queue.Queue[Any] = queue.Queue()
        self._command_queue: queue.Queue[Any] = queue.Queue()
        self._stopping = threading.Event()
        self._active = False  # the last status was of a print in progress
        self.should_watch: bool | None = None  # printbridge's remote_status; None until it says
        self.link = MqttLink(settings, self._on_connected, self._on_message)
        self._threads = [
            threading.Thread(target=self._status_loop, name="printbridge-status", daemon=True),
            threading.Thread(target=self._command_loop, name="printbridge-commands", daemon=True),
            threading.Thread(target=self._snapshot_loop, name="printbridge-snapshots", daemon=True),
        ]

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self.link.start()

    def stop(self) -> None:
        """Stop the threads, publish `offline` and disconnect (OctoPrint shutting down or reconfigured)."""
        self._stopping.set()
        self._events.put(_STOP)
        self._command_queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=5)
        self.link.stop()

    def describe(self) -> dict[str, Any]:
        """The connection as the plugin's API shows it."""
        return {
            "broker": self.settings.broker,
            "printer_id": self.settings.printer_id,
            "connected": self.link.connected.is_set(),
            "error": self.link.last_error,
            "should_watch": self.should_watch,
        }

    # -- from OctoPrint (its event thread: never blocks, no I/O) ------------------------------------------
    def on_event(self, event: str, payload: Mapping[str, Any] | None) -> None:
        if event in FORWARDED_EVENTS or event in STATE_EVENTS:
            self._events.put((event, dict(payload) if payload else None))

    # -- from the broker (paho's thread) --------------------------------------------------------------
    def _on_connected(self) -> None:
        self._events.put(("connected", None))

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.link.topics.command:
            self._command_queue.put(payload)
        elif topic == self.link.topics.remote_status:
            self._on_remote_status(payload)

    def _on_remote_status(self, payload: bytes) -> None:
        try:
            should_watch = json.loads(payload)["should_watch"]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning('dropped a remote_status that is not {"should_watch": bool}: %r (%s)', payload[:200], exc)
            return
        if not isinstance(should_watch, bool):
            log.warning("dropped a remote_status whose should_watch is not a boolean: %r", payload[:200])
            return
        if should_watch != self.should_watch:
            log.info(
                "printbridge failure detection %s this print", "is watching" if should_watch else "is not watching"
            )
        self.should_watch = should_watch

    # -- threads ------------------------------------------------------------------------------------
    def _interval(self) -> float:
        s = self.settings
        return s.status_interval_printing_s if self._active else s.status_interval_idle_s

    def _status_loop(self) -> None:
        next_at = time.monotonic() + self._interval()
        while not self._stopping.is_set():
            try:
                item = self._events.get(timeout=max(next_at - time.monotonic(), 0.0))
            except queue.Empty:
                item = ("periodic", None)
            if item is _STOP:
                return
            event, payload = item
            try:
                self._publish_status(event, payload)
            except Exception:  # a status that cannot be built is logged; the loop goes on
                log.exception("could not publish the status after %s", event)
            next_at = time.monotonic() + self._interval()

    def _publish_status(self, event: str, payload: Mapping[str, Any] | None) -> None:
        settings = None
        if event == "connected":
            settings = build_settings(self._version, self._host.webcams())
        message = self._tracker.message(
            self._host.current_data(),
            self._host.temperatures(),
            event=event if event in FORWARDED_EVENTS else None,
            payload=payload,
            settings=settings,
        )
        flags = message["status"]["state"]["flags"]
        self._active = any(flags[name] for name in _ACTIVE_FLAGS)
        self.link.publish(self.link.topics.status, _encode(message))

    def _command_loop(self) -> None:
        while True:
            payload = self._command_queue.get()
            if payload is _STOP:
                return
            try:
                ack = self._commands.handle(payload)
            except Exception:
                log.exception("could not handle the command %r", payload[:200])
                continue
            if ack is not None and not self.link.publish(self.link.topics.ack, _encode(ack)):
                log.warning("could not ack %s: not connected", ack["cmd_id"])

    def _snapshot_loop(self) -> None:
        interval = self.settings.snapshot_interval_s
        if interval <= 0:
            return
        while not self._stopping.wait(interval):
            if not (self._active and self.link.connected.is_set()):
                continue
            try:
                jpeg = self._host.snapshot()
            except Exception as exc:  # the webcam is down: say so, try again next time
                log.warning("could not take a webcam snapshot: %s", exc)
                continue
            if jpeg is None:
                continue
            if len(jpeg) > MAX_SNAPSHOT_BYTES:
                log.warning("snapshot of %d bytes is over printbridge's 4 MiB limit: not sent", len(jpeg))
                continue
            self.link.publish(self.link.topics.snapshot, jpeg, qos=0)
