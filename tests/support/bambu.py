"""A simulated Bambu Lab printer in LAN mode, as OpenBambuAPI's mqtt.md describes one.

The printer's broker is a Mosquitto with a TLS listener on a free port, whose certificate (made here, signed
by a test "vendor" CA) names the printer's serial in its subject CN, and whose only account is `bblp` with
the access code as password. The printer's "firmware" is a paho client on a second, internal listener
(the printer's own processes talk to its broker from inside). It publishes `device/{serial}/report`:

- everything after a `pushing.pushall` request (and every time, for an X1), only what changed otherwise
  (P1/A1), each with its own `sequence_id` and `command: push_status`;
- the echo of a request, with `result` ("success"/"failed") or, when `echo_result` is off, without it;
- `gcode_state` transitions after realistic delays: PREPARE → RUNNING when a print starts, RUNNING → PAUSE
  after `pause`, PAUSE → RUNNING after `resume`, → FAILED with print_error 0300_400C after `stop` (the code
  cleared a moment later, as ha-bambulab observed), → FINISH at the end, FAILED with another print_error
  for a failed print.

Several printers can share one broker (one TLS listener and certificate each), which the benchmark uses.
"""

from __future__ import annotations

import contextlib
import copy
import getpass
import itertools
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import BrokerError, free_port, mosquitto_binary
from tests.support.tls import CertificateAuthority, Issued, make_ca, password_file_line

CANCEL_ERROR = 50348044  # 0300_400C: the print was stopped
FAILURE_ERROR = 0x07008011  # a failure code of another kind


def initial_state() -> dict[str, Any]:
    """The `print` object of OpenBambuAPI's pushall example (an idle P1 with an AMS), trimmed of lists of
    fields the bridge does not read only where they repeat."""
    tray = {
        "bed_temp": "0",
        "bed_temp_type": "0",
        "cols": ["000000FF"],
        "drying_temp": "0",
        "drying_time": "0",
        "id": "1",
        "nozzle_temp_max": "240",
        "nozzle_temp_min": "190",
        "remain": 0,
        "tag_uid": "0000000000000000",
        "tray_color": "000000FF",
        "tray_diameter": "0.00",
        "tray_id_name": "",
        "tray_info_idx": "GFA00",
        "tray_sub_brands": "",
        "tray_type": "PLA",
        "tray_uuid": "00000000000000000000000000000000",
        "tray_weight": "0",
        "xcam_info": "000000000000000000000000",
    }
    return {
        "ams": {
            "ams": [{"humidity": "4", "id": "0", "temp": "22.7", "tray": [{"id": "0"}, tray, {**tray, "id": "2"}]}],
            "ams_exist_bits": "1",
            "insert_flag": True,
            "power_on_flag": False,
            "tray_exist_bits": "e",
            "tray_is_bbl_bits": "e",
            "tray_now": "255",
            "tray_pre": "255",
            "tray_read_done_bits": "e",
            "tray_reading_bits": "0",
            "tray_tar": "255",
            "version": 4,
        },
        "ams_rfid_status": 6,
        "ams_status": 0,
        "aux_part_fan": True,
        "bed_target_temper": 0.0,
        "bed_temper": 25.0,
        "big_fan1_speed": "0",
        "big_fan2_speed": "0",
        "chamber_temper": 24.0,
        "cooling_fan_speed": "0",
        "fail_reason": "0",
        "fan_gear": 0,
        "filam_bak": [],
        "force_upgrade": False,
        "gcode_file": "",
        "gcode_file_prepare_percent": "0",
        "gcode_start_time": "0",
        "gcode_state": "IDLE",
        "heatbreak_fan_speed": "0",
        "hms": [],
        "home_flag": 0,
        "hw_switch_state": 1,
        "ipcam": {"ipcam_dev": "1", "ipcam_record": "disable", "resolution": "1080p", "timelapse": "disable"},
        "layer_num": 0,
        "lifecycle": "product",
        "lights_report": [{"mode": "on", "node": "chamber_light"}, {"mode": "flashing", "node": "work_light"}],
        "maintain": 3,
        "mc_percent": 0,
        "mc_print_error_code": "0",
        "mc_print_stage": "1",
        "mc_print_sub_stage": 0,
        "mc_remaining_time": 0,
        "mess_production_state": "active",
        "nozzle_diameter": "0.4",
        "nozzle_target_temper": 0.0,
        "nozzle_temper": 25.0,
        "online": {"ahb": False, "rfid": False, "version": 9},
        "print_error": 0,
        "print_gcode_action": 0,
        "print_real_action": 0,
        "print_type": "",
        "profile_id": "",
        "project_id": "",
        "queue_number": 0,
        "sdcard": True,
        "spd_lvl": 2,
        "spd_mag": 100,
        "stg": [],
        "stg_cur": -1,
        "subtask_id": "",
        "subtask_name": "",
        "task_id": "",
        "total_layer_num": 0,
        "upgrade_state": {"new_version_state": 2, "status": "IDLE", "progress": "0", "sequence_id": 0},
        "wifi_signal": "-45dBm",
        "xcam": {"print_halt": True, "printing_monitor": True, "spaghetti_detector": True},
        "xcam_status": "0",
    }


# -- the printer's broker -----------------------------------------------------------------------------------


@dataclass
class PrinterIdentity:
    serial: str
    access_code: str
    tls_port: int
    cert: Path
    key: Path


@dataclass
class BambuBroker:
    """A Mosquitto playing the brokers of one or more printers: one TLS listener (and certificate) each,
    `bblp` + access code the only account on them, and an internal anonymous listener for the firmware."""

    workdir: Path
    internal_port: int
    printers: dict[str, PrinterIdentity]
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def write_config(self) -> None:
        lines = [
            "per_listener_settings true",
            f"user {getpass.getuser()}",
            "persistence false",
            "set_tcp_nodelay true",
            "max_queued_messages 10000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            f"listener {self.internal_port} 127.0.0.1",
            "allow_anonymous true",
        ]
        for ident in self.printers.values():
            passwords = self.workdir / f"{ident.serial}.passwd"
            passwords.write_text(password_file_line("bblp", ident.access_code))
            passwords.chmod(0o600)
            lines += [
                f"listener {ident.tls_port} 127.0.0.1",
                f"certfile {ident.cert}",
                f"keyfile {ident.key}",
                "allow_anonymous false",
                f"password_file {passwords}",
            ]
        self.config_path.write_text("\n".join([*lines, ""]))

    def start(self) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("no mosquitto binary found")
        self.write_config()
        self._log = (self.workdir / "mosquitto.log").open("ab")
        self._process = subprocess.Popen(
            [binary, "-c", str(self.config_path)], stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        ports = [self.internal_port, *(p.tls_port for p in self.printers.values())]
        deadline = time.monotonic() + 15
        pending = set(ports)
        while pending and time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(f"the printer's mosquitto exited:\n{self.log_tail()}")
            for port in list(pending):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    pending.discard(port)
            time.sleep(0.01)
        if pending:
            self.stop()
            raise BrokerError(f"the printer's mosquitto did not listen on {sorted(pending)}:\n{self.log_tail()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "mosquitto.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


# -- the printer's firmware -----------------------------------------------------------------------------------


@dataclass
class Timing:
    """How long the simulated printer takes (seconds). Real printers take about this order of time to
    finish the move in progress before they pause, to park before they stop, and to heat up."""

    prepare_s: float = 0.3
    pause_s: float = 0.4
    resume_s: float = 0.3
    stop_s: float = 0.3
    clear_error_s: float = 1.0  # print_error 0300_400C is reset to 0 this long after a stop


class SimulatedPrinter:
    """One printer's state and behaviour. Publishing goes through the firmware's shared client."""

    def __init__(self, firmware: Firmware, serial: str, *, model: str = "P1S", timing: Timing | None = None) -> None:
        self.firmware = firmware
        self.serial = serial
        self.model = model  # "X1C" sends the full state every time; P1/A1 only what changed
        self.timing = timing or Timing()
        self.state = initial_state()
        self.lock = threading.RLock()
        self.sequence = itertools.count(2000)
        self.echo_result = True  # False: echoes leave `result` out (firmware does that sometimes)
        self.refuse_next: str | None = None  # a reason: the next command's echo says "failed"
        self.ignore_commands = False  # echo "success" but never change state
        self.requests: list[dict[str, Any]] = []
        self.pushalls = 0
        self._timers: list[threading.Timer] = []

    @property
    def report_topic(self) -> str:
        return f"device/{self.serial}/report"

    @property
    def request_topic(self) -> str:
        return f"device/{self.serial}/request"

    @property
    def full_every_time(self) -> bool:
        return self.model.startswith("X1")

    # -- publishing
    def _push(self, delta: dict[str, Any]) -> None:
        with self.lock:
            self.state.update(delta)
            body = copy.deepcopy(self.state) if self.full_every_time else dict(delta)
            body.update(command="push_status", msg=0 if self.full_every_time else 1)
            body["sequence_id"] = str(next(self.sequence))
        self.firmware.publish(self.report_topic, {"print": body})

    def push_full(self) -> None:
        with self.lock:
            body = copy.deepcopy(self.state)
            body.update(command="push_status", msg=0, sequence_id=str(next(self.sequence)))
        self.firmware.publish(self.report_topic, {"print": body})

    def push_delta(self, **delta: Any) -> None:
        self._push(delta)

    def tick(self) -> None:
        """One periodic report: temperatures wobble; a running print advances."""
        with self.lock:
            delta: dict[str, Any] = {
                "nozzle_temper": round(self.state["nozzle_target_temper"] or 25.0, 1) + 0.1,
                "wifi_signal": "-45dBm",
            }
            if self.state["gcode_state"] == "RUNNING":
                percent = min(99, int(self.state["mc_percent"]) + 1)
                delta.update(mc_percent=percent, mc_remaining_time=max(1, 100 - percent))
                delta["layer_num"] = int(self.state["layer_num"]) + 1
        self._push(delta)

    def _later(self, delay: float, action: Any, *args: Any) -> None:
        timer = threading.Timer(delay, action, args)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    # -- what a user does on the printer
    def start_print(self, name: str = "benchy", *, start_time: int | None = None) -> None:
        self._push(
            {
                "gcode_state": "PREPARE",
                "subtask_name": name,
                "gcode_file": f"/data/Metadata/{name}.gcode",
                "gcode_start_time": str(start_time if start_time is not None else int(time.time())),
                "mc_percent": 0,
                "mc_remaining_time": 42,
                "print_error": 0,
                "nozzle_target_temper": 220.0,
                "bed_target_temper": 60.0,
            }
        )
        self._later(self.timing.prepare_s, self._push, {"gcode_state": "RUNNING", "layer_num": 1})

    def finish(self) -> None:
        self._push({"gcode_state": "FINISH", "mc_percent": 100, "mc_remaining_time": 0, "nozzle_target_temper": 0.0})

    def fail(self, print_error: int = FAILURE_ERROR) -> None:
        self._push({"gcode_state": "FAILED", "print_error": print_error, "nozzle_target_temper": 0.0})

    # -- requests
    def handle(self, request: dict[str, Any]) -> None:
        self.requests.append(request)
        if "pushing" in request and request["pushing"].get("command") == "pushall":
            self.pushalls += 1
            self.push_full()
            return
        body = request.get("print")
        if not isinstance(body, dict):
            return
        command = body.get("command")
        with self.lock:
            gcode_state = self.state["gcode_state"]
        reason = self.refuse_next
        self.refuse_next = None
        if reason is None:
            if command == "pause" and gcode_state != "RUNNING":
                reason = "not running"
            elif command == "resume" and gcode_state != "PAUSE":
                reason = "not paused"
            elif command == "stop" and gcode_state not in ("PREPARE", "RUNNING", "PAUSE"):
                reason = "not printing"
        self._echo(body, reason)
        if reason is not None or self.ignore_commands:
            return
        if command == "pause":
            self._later(self.timing.pause_s, self._push, {"gcode_state": "PAUSE"})
        elif command == "resume":
            self._later(self.timing.resume_s, self._push, {"gcode_state": "RUNNING"})
        elif command == "stop":
            self._later(self.timing.stop_s, self._stopped)

    def _stopped(self) -> None:
        self._push({"gcode_state": "FAILED", "print_error": CANCEL_ERROR, "nozzle_target_temper": 0.0})
        self._later(self.timing.clear_error_s, self._push, {"print_error": 0})

    def _echo(self, body: dict[str, Any], reason: str | None) -> None:
        echo = dict(body)
        if self.echo_result:
            echo["result"] = "failed" if reason else "success"
            echo["reason"] = reason or ""
        self.firmware.publish(self.report_topic, {"print": echo})

    def cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()


class Firmware:
    """The paho client inside the printer(s): subscribed to each printer's request topic on the internal
    listener, publishing reports; a thread sends each printer's periodic report every `report_interval_s`."""

    def __init__(self, broker: BambuBroker, report_interval_s: float = 0.0) -> None:
        self.broker = broker
        self.report_interval_s = report_interval_s
        self.printers: dict[str, SimulatedPrinter] = {}
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"firmware-{broker.internal_port}")
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def add(self, printer: SimulatedPrinter) -> None:
        self.printers[printer.serial] = printer

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        for serial in self.printers:
            client.subscribe(f"device/{serial}/request", qos=1)
        self.connected.set()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        serial = msg.topic.split("/")[1]
        printer = self.printers.get(serial)
        try:
            request = json.loads(msg.payload)
        except ValueError:
            return  # a real printer ignores what it cannot parse
        if printer is not None and isinstance(request, dict):
            printer.handle(request)

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        self.client.publish(topic, json.dumps(body, separators=(",", ":")), qos=0)

    def start(self) -> None:
        self.connected.clear()
        self.client.connect("127.0.0.1", self.broker.internal_port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise BrokerError("the simulated firmware could not reach its broker")
        if self.report_interval_s > 0:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick_forever, daemon=True, name="bambu-reports")
            self._ticker.start()

    def _tick_forever(self) -> None:
        interval = self.report_interval_s
        next_at = time.monotonic()
        while not self._stop.is_set():
            for printer in list(self.printers.values()):
                printer.tick()
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(5)
            self._ticker = None
        for printer in self.printers.values():
            printer.cancel_timers()
        self.client.disconnect()
        self.client.loop_stop()


# -- putting it together --------------------------------------------------------------------------------------


@dataclass
class BambuSetup:
    """A running simulated printer farm: the vendor CA, the broker, the firmware and its printers."""

    vendor_ca: CertificateAuthority
    broker: BambuBroker
    firmware: Firmware

    def printer(self, serial: str) -> SimulatedPrinter:
        return self.firmware.printers[serial]

    def identity(self, serial: str) -> PrinterIdentity:
        return self.broker.printers[serial]

    def stop(self) -> None:
        self.firmware.stop()
        self.broker.stop()

    def power_off(self) -> None:
        """The printer switched off: its broker and firmware are gone."""
        self.firmware.stop()
        self.broker.stop()

    def power_on(self) -> None:
        """Back on, on the same port, with the same certificate; its state is as it was."""
        self.broker.start()
        self.firmware.start()

    def replace_certificate(self, serial: str, issued: Issued) -> None:
        """Another certificate on the same address (another device answering, or a man in the middle);
        the broker restarts with it."""
        ident = self.broker.printers[serial]
        issued.write(self.broker.workdir, f"{serial}-replaced")
        ident.cert = self.broker.workdir / f"{serial}-replaced.crt"
        ident.key = self.broker.workdir / f"{serial}-replaced.key"
        self.power_off()
        self.power_on()


def distinct_free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def start_bambu(
    workdir: Path,
    serials: list[str],
    *,
    access_code: str = "12345678",
    model: str = "P1S",
    timing: Timing | None = None,
    report_interval_s: float = 0.0,
    vendor_ca: CertificateAuthority | None = None,
) -> BambuSetup:
    workdir.mkdir(parents=True, exist_ok=True)
    ca = vendor_ca or make_ca("BBL")
    identities = {}
    for serial in serials:
        cert, key = ca.issue(serial).write(workdir, serial)
        identities[serial] = PrinterIdentity(serial, access_code, 0, cert, key)
    broker = BambuBroker(workdir, 0, identities)
    for attempt in range(3):  # a port found free may be taken by another process before mosquitto binds it
        ports = distinct_free_ports(len(serials) + 1)
        broker.internal_port = ports[0]
        for ident, port in zip(identities.values(), ports[1:], strict=True):
            ident.tls_port = port
        try:
            broker.start()
            break
        except BrokerError:
            broker.stop()
            if attempt == 2:
                raise
    firmware = Firmware(broker, report_interval_s)
    for serial in serials:
        firmware.add(SimulatedPrinter(firmware, serial, model=model, timing=timing))
    try:
        firmware.start()
    except BaseException:
        broker.stop()
        raise
    return BambuSetup(ca, broker, firmware)


@contextlib.contextmanager
def bambu_printers(workdir: Path, serials: list[str], **kwargs: Any) -> Iterator[BambuSetup]:
    setup = start_bambu(workdir, serials, **kwargs)
    try:
        yield setup
    finally:
        setup.stop()
