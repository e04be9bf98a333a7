"""A simulated printer agent speaking the MQTT contract (SPEC 3, 5): `printbridge simulate`.

It is also the reference for agent authors: it connects as `printer-{id}` with the printer's auth token,
sets an `offline` Will, publishes `online`, publishes the agent message on change and every few seconds,
runs a fake print, and obeys `pause`/`resume`/`cancel` once per `cmd_id`, acking each command.
"""

from __future__ import annotations

import collections
import logging
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from bridge.mqtt.payloads import Ack, Command, RemoteStatus, encoder
from bridge.mqtt.tls import broker_context
from bridge.mqtt.topics import Topics

log = logging.getLogger(__name__)

PrinterState = Literal["Operational", "Printing", "Paused", "Cancelling"]
EventType = Literal["PrintStarted", "PrintPaused", "PrintResumed", "PrintCancelled", "PrintDone"]

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
    ca_file: str | None = None  # PEM CA to verify an mqtts:// broker against; None: the system's
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
        return self.username if self.username is not None else f"printer-{self.printer_id}"


# -- the agent message (SPEC 5.2), outgoing and therefore exact ------------------------------------


class StateFlags(msgspec.Struct, rename="camel"):
    operational: bool
    printing: bool
    paused: bool
    cancelling: bool
    pausing: bool
    error: bool
    ready: bool
    closed_or_error: bool


class PrinterStateView(msgspec.Struct):
    text: str
    flags: StateFlags


class JobFile(msgspec.Struct):
    name: str


class Job(msgspec.Struct):
    file: JobFile


class Progress(msgspec.Struct, rename="camel"):
    completion: float | None
    print_time: int | None
    print_time_left: int | None


class Temperature(msgspec.Struct):
    actual: float
    target: float


class Temperatures(msgspec.Struct):
    tool0: Temperature
    bed: Temperature


class Status(msgspec.Struct):
    ts: float = msgspec.field(name="_ts")
    state: PrinterStateView
    job: Job
    progress: Progress
    temperatures: Temperatures


class AgentInfo(msgspec.Struct):
    name: str
    version: str


class Settings(msgspec.Struct):
    agent: AgentInfo
    webcams: list[dict[str, Any]]


class EventData(msgspec.Struct):
    name: str


class Event(msgspec.Struct):
    event_type: str
    data: EventData


class AgentMessage(msgspec.Struct, omit_defaults=True):
    current_print_ts: int
    status: Status
    settings: Settings | None = None
    event: Event | None = None


def build_flags(state: PrinterState) -> StateFlags:
    return StateFlags(
        operational=True,
        printing=state == "Printing",
        paused=state == "Paused",
        cancelling=state == "Cancelling",
        pausing=False,
        error=False,
        ready=state == "Operational",
        closed_or_error=False,
    )


# -- snapshots: a tiny baseline JPEG of one grey shade, encoded by hand --------------------------


def _segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(body) + 2).to_bytes(2, "big") + body


def _huffman_table(table_class: int, symbols: list[int]) -> bytes:
    """A DHT body giving symbol i a code of length i + 1 (canonical codes 0, 10, 110, ...)."""
    counts = [0] * 16
    for i in range(len(symbols)):
        counts[i] = 1
    return bytes([table_class << 4, *counts, *symbols])


def build_grey_jpeg(width: int = 64, height: int = 48, shade: int = 128) -> bytes:
    """A valid baseline greyscale JPEG of `width` x `height` pixels (multiples of 8) in one shade.

    Every 8x8 block is flat, so each block is its DC coefficient alone: the first block carries
    the shade, the others a difference of zero, and every block ends with End Of Block.
    """
    if width <= 0 or height <= 0 or width % 8 or height % 8 or width > 65535 or height > 65535:
        raise ValueError("width and height must be positive multiples of 8")
    if not 0 <= shade <= 255:
        raise ValueError("shade must be 0..255")
    # Quantiser 8 on every coefficient: a flat block of level-shifted value v has DC 8v -> v.
    dc = shade - 128
    category = abs(dc).bit_length()
    dc_symbols = [0] if category == 0 else [0, category]
    bits: list[int] = []

    def put(value: int, length: int) -> None:
        bits.extend((value >> (length - 1 - i)) & 1 for i in range(length))

    blocks = (width // 8) * (height // 8)
    for index in range(blocks):
        if index == 0 and category:
            put(0b10, 2)  # code of the symbol `category`
            put(dc if dc > 0 else dc + (1 << category) - 1, category)
        else:
            put(0b0, 1)  # DC difference of category 0
        put(0b0, 1)  # AC: End Of Block
    bits.extend([1] * (-len(bits) % 8))
    scan = bytearray()
    for i in range(0, len(bits), 8):
        byte = int("".join(map(str, bits[i : i + 8])), 2)
        scan.append(byte)
        if byte == 0xFF:
            scan.append(0x00)
    return b"".join(
        (
            b"\xff\xd8",
            _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
            _segment(0xDB, bytes([0]) + bytes([8] * 64)),
            _segment(0xC0, bytes([8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x01\x01\x11\x00"),
            _segment(0xC4, _huffman_table(0, dc_symbols)),
            _segment(0xC4, _huffman_table(1, [0x00])),
            _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
            bytes(scan),
            b"\xff\xd9",
        )
    )


# -- the agent -------------------------------------------------------------------------------------

_command_decoder = msgspec.json.Decoder(Command)
_remote_status_decoder = msgspec.json.Decoder(RemoteStatus)


def set_nodelay(sock: Any) -> None:
    """SPEC 9: without TCP_NODELAY every MQTT round trip costs 40-90 ms."""
    if isinstance(sock, socket.socket):  # ssl.SSLSocket is one too
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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
        self._state: PrinterState = "Operational"
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
    def state(self) -> PrinterState:
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
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"printer-{cfg.printer_id}-sim-{secrets.token_hex(3)}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        client.username_pw_set(cfg.mqtt_username, cfg.password)
        client.will_set(self._topics.availability(cfg.printer_id), b"offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        if cfg.tls:
            client.tls_set_context(broker_context(Path(cfg.ca_file) if cfg.ca_file else None))
        client.on_socket_open = lambda _client, _userdata, sock: set_nodelay(sock)
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

    def _advance(self, now: float) -> EventType | None:
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

    def _build_message(self, now: float, event: EventType | None, settings: bool) -> AgentMessage:
        ts = max(now, self._last_ts + 0.001)
        self._last_ts = ts
        printing = self._print_ts != -1
        elapsed = self._elapsed(now)
        bed_target = BED_TARGET_C if printing else 0.0
        cfg = self.config
        return AgentMessage(
            current_print_ts=self._print_ts,
            status=Status(
                ts=ts,
                state=PrinterStateView(text=self._state, flags=build_flags(self._state)),
                job=Job(file=JobFile(name=cfg.filename)),
                progress=Progress(
                    completion=self._completion(now),
                    print_time=int(elapsed) if printing else None,
                    print_time_left=int(cfg.print_duration_s - elapsed) if printing else None,
                ),
                temperatures=Temperatures(
                    tool0=Temperature(actual=self._tool_target or AMBIENT_C, target=self._tool_target),
                    bed=Temperature(actual=bed_target or AMBIENT_C, target=bed_target),
                ),
            ),
            settings=Settings(agent=AgentInfo(name=cfg.agent_name, version=cfg.agent_version), webcams=[])
            if settings
            else None,
            event=Event(event_type=event, data=EventData(name=cfg.filename)) if event is not None else None,
        )

    def _publish_status(self, event: EventType | None, *, settings: bool = False) -> None:
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
