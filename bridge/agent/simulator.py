"""A simulated printer agent speaking printbridge's MQTT protocol (docs/mqtt.md): `printbridge simulate`.

It is also the reference for agent authors: it connects as `printer-{id}` with the printer's auth token,
sets an `offline` Will, publishes `online`, publishes the agent message on change and every few seconds,
runs a fake print, and obeys `pause`/`resume`/`cancel` once per `cmd_id`, acking each command.
"""

from __future__ import annotations

import collections
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from importlib import metadata
from types import FrameType
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from bridge.agent.client import agent_client
from bridge.agent.jpeg import build_grey_jpeg
from bridge.agent.messages import (
    AgentIdentity,
    PrintEventType,
    SimulatedState,
    StatusMessage,
    build_flags,
    build_status_message,
    temperature,
)
from bridge.mqtt.dynsec import printer_username
from bridge.mqtt.payloads import Ack, Command, RemoteStatus, encoder
from bridge.mqtt.topics import Topics

log = logging.getLogger("bridge.simulator")

AMBIENT_C = 25.0
TOOL_TARGET_C = 220.0
BED_TARGET_C = 60.0
SEEN_COMMANDS_KEPT = 1000
CONNECT_TIMEOUT_S = 10.0


def _package_version() -> str:
    try:
        return metadata.version("printbridge")
    except metadata.PackageNotFoundError:
        return "0.1.0"


class SimulatorError(RuntimeError):
    """The simulator could not reach or was refused by the broker."""


class SimulatorConfig(msgspec.Struct, frozen=True, kw_only=True):
    printer_id: int
    password: str
    host: str
    port: int
    username: str | None = None  # None: `printer-{printer_id}`
    base_topic: str = "printbridge"
    tls: bool = False
    ca: str | None = None  # a CA file (PEM) to verify an mqtts:// broker against; None: the system's
    status_interval_s: float = 2.0
    print_duration_s: float = 600.0
    idle_between_prints_s: float = 10.0
    filename: str = "benchy.gcode"
    agent_name: str = "printbridge-simulator"
    agent_version: str = msgspec.field(default_factory=_package_version)
    loop_prints: bool = True
    snapshot_interval_s: float = 0.0  # 0: no periodic snapshots (publish_snapshot() still works)

    @property
    def mqtt_username(self) -> str:
        return self.username if self.username is not None else printer_username(self.printer_id)


# -- the agent -------------------------------------------------------------------------------------

_command_decoder = msgspec.json.Decoder(Command)
_remote_status_decoder = msgspec.json.Decoder(RemoteStatus)


class Simulator:
    """One simulated printer. Thread-safe: paho's thread handles commands, a ticker thread the print."""

    def __init__(self, config: SimulatorConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._topics = Topics(config.base_topic)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._refused: str | None = None
        self._ticker: threading.Thread | None = None
        self._state: SimulatedState = "Operational"
        self._print_ts = -1
        self._last_print_ts = -1
        self._elapsed_s = 0.0  # printing time before `_active_since`
        self._active_since: float | None = None
        self._tool_target = 0.0
        self._next_print_at: float | None = None
        self._last_ts = 0.0
        self._should_watch: bool | None = None
        self._acks: collections.OrderedDict[str, Ack] = collections.OrderedDict()
        self._client = self._build_client()

    # -- observation (tests, logs) -----------------------------------------------------------------
    @property
    def state(self) -> SimulatedState:
        with self._lock:
            return self._state

    @property
    def current_print_ts(self) -> int:
        with self._lock:
            return self._print_ts

    @property
    def should_watch(self) -> bool | None:
        """The bridge's last `remote_status`; None until it has said anything."""
        with self._lock:
            return self._should_watch

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect (blocking until the broker accepts), then start printing and publishing."""
        cfg = self.config
        try:
            self._client.connect(cfg.host, cfg.port, keepalive=30)
        except OSError as exc:
            raise SimulatorError(f"cannot reach the broker at {cfg.host}:{cfg.port}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S) or self._refused is not None:
            self._client.loop_stop()
            self._client.disconnect()
            raise SimulatorError(
                f"broker refused printer {cfg.printer_id}: {self._refused}"
                if self._refused is not None
                else f"no answer from the broker at {cfg.host}:{cfg.port}"
            )
        with self._lock:
            self._begin_print()
            self._publish_status("PrintStarted")
        self._ticker = threading.Thread(target=self._tick_forever, name="simulator-ticker", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        """Publish `offline` (a clean disconnect does not fire the Will) and disconnect."""
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join()
        info = self._publish(self._topics.availability(self.config.printer_id), b"offline", retain=True)
        if self._client.is_connected():
            info.wait_for_publish(timeout=5.0)
        self._client.disconnect()
        self._client.loop_stop()

    def run_forever(self) -> None:
        """Run until SIGINT or SIGTERM, then stop cleanly (for `printbridge simulate`)."""
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            log.info("printer %d simulating; Ctrl-C stops", self.config.printer_id)
            stop.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._connected.is_set():
                self.stop()

    def drop_connection(self) -> None:
        """Close the socket without DISCONNECT, as a network failure would: the broker publishes
        the Will, and paho reconnects (after about a second) and the agent announces itself again."""
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)

    def publish_snapshot(self) -> None:
        """Publish a small JPEG whose shade follows the print's progress."""
        with self._lock:
            completion = self._completion(self._clock()) or 0.0
        shade = 40 + int(completion * 1.75)
        self._publish(self._topics.snapshot(self.config.printer_id), build_grey_jpeg(shade=shade), qos=0)

    # -- MQTT --------------------------------------------------------------------------------------
    def _build_client(self) -> mqtt.Client:
        cfg = self.config
        client = agent_client(
            self._topics, cfg.printer_id, cfg.password, username=cfg.mqtt_username, kind="sim", tls=cfg.tls, ca=cfg.ca
        )
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        pid = self.config.printer_id
        if reason.is_failure:
            log.error("printer %d: broker refused the connection: %s", pid, reason)
            if not self._connected.is_set():
                self._refused = str(reason)
                self._connected.set()
            return
        client.subscribe([(self._topics.command(pid), 1), (self._topics.remote_status(pid), 1)])
        self._publish(self._topics.availability(pid), b"online", retain=True)
        with self._lock:
            self._publish_status(None, settings=True)
        self._connected.set()
        log.info("printer %d connected to %s:%d", pid, self.config.host, self.config.port)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if not self._stopping.is_set():
            log.warning("printer %d disconnected (%s); reconnecting", self.config.printer_id, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        pid = self.config.printer_id
        try:
            if message.topic == self._topics.command(pid):
                self._on_command(message.payload)
            elif message.topic == self._topics.remote_status(pid):
                remote = _remote_status_decoder.decode(message.payload)
                with self._lock:
                    self._should_watch = remote.should_watch
                log.info("printer %d: failure detection watching: %s", pid, remote.should_watch)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning("printer %d: dropped a bad message on %s: %s", pid, message.topic, exc)

    def _on_command(self, payload: bytes | bytearray) -> None:
        command = _command_decoder.decode(payload)
        with self._lock:
            known = self._acks.get(command.cmd_id)
            if known is not None:
                log.info(
                    "printer %d: %s %s again: acked, not re-applied",
                    self.config.printer_id,
                    command.cmd,
                    command.cmd_id,
                )
                self._send_ack(known)
                return
            self._apply(command)

    def _send_ack(self, ack: Ack) -> None:
        self._publish(self._topics.ack(self.config.printer_id), encoder.encode(ack))

    def _remember(self, ack: Ack) -> None:
        self._acks[ack.cmd_id] = ack
        while len(self._acks) > SEEN_COMMANDS_KEPT:
            self._acks.popitem(last=False)

    # -- the print (all under self._lock) ----------------------------------------------------------
    def _apply(self, command: Command) -> None:
        now = self._clock()
        error = self._refusal(command.cmd)
        ack = Ack(cmd_id=command.cmd_id, ok=error is None, error=error)
        self._remember(ack)
        self._send_ack(ack)
        log.info("printer %d: %s from %s: %s", self.config.printer_id, command.cmd, command.initiator, error or "ok")
        if error is not None:
            return
        if command.cmd == "pause":
            self._elapsed_s = self._elapsed(now)
            self._active_since = None
            self._state = "Paused"
            if command.args.get("tools_off"):
                self._tool_target = 0.0
            self._publish_status("PrintPaused")
        elif command.cmd == "resume":
            self._active_since = now
            self._state = "Printing"
            self._tool_target = TOOL_TARGET_C
            self._publish_status("PrintResumed")
        else:  # cancel
            self._elapsed_s = self._elapsed(now)
            self._active_since = None
            self._state = "Cancelling"
            self._publish_status(None)
            self._end_print(now)
            self._publish_status("PrintCancelled")

    def _refusal(self, cmd: str) -> str | None:
        match cmd, self._state:
            case ("pause", "Printing") | ("resume", "Paused") | ("cancel", "Printing" | "Paused"):
                return None
            case ("pause", "Paused"):
                return "already paused"
            case ("resume", "Printing"):
                return "not paused"
            case ("pause" | "resume" | "cancel", _):
                return "not printing"
        return f"unknown command {cmd!r}"

    def _begin_print(self) -> None:
        now = self._clock()
        self._state = "Printing"
        # A new print never reuses a start time: the bridge ignores the value of a closed print.
        self._print_ts = max(int(now), self._last_print_ts + 1)
        self._last_print_ts = self._print_ts
        self._elapsed_s = 0.0
        self._active_since = now
        self._tool_target = TOOL_TARGET_C
        self._next_print_at = None

    def _end_print(self, now: float) -> None:
        self._state = "Operational"
        self._print_ts = -1
        self._active_since = None
        self._tool_target = 0.0
        self._next_print_at = now + self.config.idle_between_prints_s if self.config.loop_prints else None

    def _elapsed(self, now: float) -> float:
        running = now - self._active_since if self._active_since is not None else 0.0
        return min(self._elapsed_s + max(running, 0.0), self.config.print_duration_s)

    def _completion(self, now: float) -> float | None:
        if self._print_ts == -1:
            return None
        return round(100.0 * self._elapsed(now) / self.config.print_duration_s, 1)

    def _advance(self, now: float) -> PrintEventType | None:
        """Finish or start a print when its time has come; the event to announce, if any."""
        if self._state == "Printing" and self._elapsed(now) >= self.config.print_duration_s:
            self._end_print(now)
            return "PrintDone"
        if self._state == "Operational" and self._next_print_at is not None and now >= self._next_print_at:
            self._begin_print()
            return "PrintStarted"
        return None

    def _seconds_to_transition(self, now: float) -> float:
        if self._state == "Printing":
            return self.config.print_duration_s - self._elapsed(now)
        if self._state == "Operational" and self._next_print_at is not None:
            return self._next_print_at - now
        return float("inf")

    def _build_message(self, now: float, event: PrintEventType | None, settings: bool) -> StatusMessage:
        ts = max(now, self._last_ts + 0.001)
        self._last_ts = ts
        printing = self._print_ts != -1
        elapsed = self._elapsed(now)
        bed_target = BED_TARGET_C if printing else 0.0
        cfg = self.config
        state = self._state
        return build_status_message(
            ts=ts,
            current_print_ts=self._print_ts,
            state_text=state,
            flags=build_flags(printing=state == "Printing", paused=state == "Paused", cancelling=state == "Cancelling"),
            filename=cfg.filename,
            completion=self._completion(now),
            print_time=int(elapsed) if printing else None,
            print_time_left=int(cfg.print_duration_s - elapsed) if printing else None,
            temperatures={
                "tool0": temperature(self._tool_target or AMBIENT_C, self._tool_target),
                "bed": temperature(bed_target or AMBIENT_C, bed_target),
            },
            agent=AgentIdentity(name=cfg.agent_name, version=cfg.agent_version) if settings else None,
            event=event,
        )

    def _publish_status(self, event: PrintEventType | None, *, settings: bool = False) -> None:
        message = self._build_message(self._clock(), event, settings)
        self._publish(self._topics.status(self.config.printer_id), encoder.encode(message))

    def _tick_forever(self) -> None:
        cfg = self.config
        next_status = next_snapshot = time.monotonic()
        while not self._stopping.is_set():
            with self._lock:
                now = self._clock()
                event = self._advance(now)
                if event is not None or time.monotonic() >= next_status:
                    self._publish_status(event)
                    next_status = time.monotonic() + cfg.status_interval_s
                wait = min(next_status - time.monotonic(), self._seconds_to_transition(self._clock()))
            if cfg.snapshot_interval_s > 0 and time.monotonic() >= next_snapshot:
                self.publish_snapshot()
                next_snapshot = time.monotonic() + cfg.snapshot_interval_s
            if cfg.snapshot_interval_s > 0:
                wait = min(wait, next_snapshot - time.monotonic())
            self._stopping.wait(max(wait, 0.005))
