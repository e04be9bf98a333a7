"""The OctoPrint plugin end to end: real OctoPrint 1.11.8 with its virtual printer and the plugin (from
.venv-octoprint), real Mosquitto with dynamic security, real `printbridge serve`.

One OctoPrint, one bridge and one broker serve the whole module (starting OctoPrint is the slow part), so
the tests run in file order: the last one stops OctoPrint. The plugin is configured with exactly what
printbridge's `agent_config` gave (its `snippet` under `plugins:` in OctoPrint's config.yaml).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
import yaml
from octoprint_printbridge.settings import DEFAULTS
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bridge.agent.client import set_nodelay
from bridge.agent.jpeg import build_grey_jpeg
from bridge.agent.simulator import Simulator, SimulatorConfig, SimulatorError
from bridge.mqtt.topics import Topics
from tests.octoprint.figures import FIGURES
from tests.reliability.serve import Served
from tests.support.broker import Broker, connected_probe, free_port, start_broker
from tests.support.octoprint import OctoPrint, zigzag_gcode

LONG_PRINT_LINES = 4000  # ~200 s on the virtual printer: long enough for anything a test does before cancelling
SHORT_PRINT_LINES = 30  # ~1.5 s
PAUSE_ROUNDS = 8
SNAPSHOT = build_grey_jpeg(shade=77)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, poll_s: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll_s)


@dataclass
class Seen:
    at: float  # time.time() when received
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Recorder:
    """Everything published under the printer's topics, as the broker's admin sees it. Its session is
    persistent and it reconnects by itself, so it also gets what was published while the broker restarted."""

    def __init__(self, broker: Broker, topics: list[str]) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._topics = topics
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"e2e-recorder-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=False,
        )
        self.client.username_pw_set(broker.admin_username, broker.admin_password)
        self.client.reconnect_delay_set(min_delay=0.02, max_delay=0.1)  # type: ignore[arg-type]
        self.client.on_socket_open = lambda _c, _u, sock: set_nodelay(sock)
        self.client.on_connect = lambda client, *_: client.subscribe([(t, 1) for t in self._topics])
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.seen.append(Seen(time.time(), msg.topic, bytes(msg.payload), bool(msg.retain)))

    def mark(self) -> int:
        with self._lock:
            return len(self.seen)

    def find(self, topic: str, match: Callable[[Seen], bool], since: int = 0) -> Seen | None:
        with self._lock:
            return next((s for s in self.seen[since:] if s.topic == topic and match(s)), None)

    def wait(self, topic: str, match: Callable[[Seen], bool], since: int = 0, timeout: float = 10.0) -> Seen:
        found: Seen = wait_until(lambda: self.find(topic, match, since), timeout, f"a message on {topic}")
        return found

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class SnapshotServer:
    """The webcam's snapshot URL: one JPEG."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(SNAPSHOT)))
                self.end_headers()
                self.wfile.write(SNAPSHOT)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/snapshot.jpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Rig:
    broker: Broker
    serve: Served
    octoprint: OctoPrint
    printer: dict[str, Any]
    config: dict[str, Any]
    topics: Topics
    recorder: Recorder

    @property
    def pid(self) -> int:
        return int(self.printer["id"])

    def get_printer(self) -> dict[str, Any]:
        resp = self.serve.request("GET", f"/api/v1/printers/{self.pid}/")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def action(self, name: str) -> dict[str, Any]:
        resp = self.serve.request("POST", f"/api/v1/printers/{self.pid}/{name}")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def rest_state(
        self, text: str, timeout: float = 10.0, extra: Callable[[dict[str, Any]], bool] | None = None
    ) -> Any:
        def shown() -> dict[str, Any] | None:
            body = self.get_printer()
            status = body["status"]
            if status is None or status["state"]["text"] != text:
                return None
            return body if extra is None or extra(body) else None

        return wait_until(shown, timeout, f"printbridge's REST to show {text!r}")

    def octoprint_state(self, text: str, timeout: float = 10.0) -> None:
        wait_until(lambda: self.octoprint.state() == text, timeout, f"OctoPrint's /api/job to say {text!r}")

    def idle(self) -> None:
        """OctoPrint Operational and printbridge without a current print."""
        self.octoprint_state("Operational", timeout=30)
        self.rest_state("Operational", extra=lambda b: b["current_print"] is None)

    def start_print(self, name: str, lines: int) -> tuple[dict[str, Any], float]:
        """Print through OctoPrint's REST API; printbridge's view of it, and the seconds from the plugin's
        PrintStarted message (stamped as it handles OctoPrint's event) to printbridge's REST showing it."""
        mark = self.recorder.mark()
        self.octoprint.upload_and_print(name, zigzag_gcode(lines))

        def started(s: Seen) -> bool:
            return bool(s.json().get("event", {}).get("event_type") == "PrintStarted")

        def shown() -> dict[str, Any] | None:
            body = self.get_printer()
            current = body["current_print"]
            return body if current is not None and current["filename"] == name else None

        body: dict[str, Any] = wait_until(shown, 10, f"{name} as printbridge's current print", poll_s=0.005)
        shown_at = time.time()
        event = self.recorder.wait(self.topics.status(self.pid), started, mark)
        latency = shown_at - event.json()["status"]["_ts"]
        FIGURES.setdefault("print_started_to_rest_s", []).append(latency)
        return body, latency


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = time.monotonic()
    workdir = tmp_path_factory.mktemp("octoprint-e2e")
    broker = start_broker(workdir / "mosquitto")
    serve = Served(broker, workdir, base_topic=f"pbo{uuid.uuid4().hex[:6]}")
    webcam = SnapshotServer()
    octoprint: OctoPrint | None = None
    recorder: Recorder | None = None
    try:
        serve.start()
        resp = serve.request("POST", "/api/v1/printers/", json={"name": "OctoPrint e2e"})
        assert resp.status_code == 201, resp.text
        printer = resp.json()
        config = serve.request("GET", f"/api/v1/printers/{printer['id']}/agent_config/").json()
        topics = Topics(serve.base_topic, f"{serve.base_topic}-ha")
        recorder = Recorder(broker, [f"{serve.base_topic}/printers/{printer['id']}/#"])
        plugins = yaml.safe_load(config["snippet"])  # pasted under `plugins:` as the README says
        # a status every 2 s while printing (default 10 s) so that progress is seen advancing quickly
        plugins["printbridge"].update(snapshot_interval_s=1, status_interval_printing_s=2)
        # `_config_version` set: OctoPrint would otherwise "migrate" the old `webcam` settings over it
        plugins["classicwebcam"] = {"snapshot": webcam.url, "_config_version": 1}
        octoprint = OctoPrint(workdir / "octoprint", plugins)
        octoprint.start()
        yield Rig(broker, serve, octoprint, printer, config, topics, recorder)
    finally:
        if octoprint is not None:
            octoprint.stop()
        if recorder is not None:
            recorder.close()
        webcam.close()
        serve.stop()
        broker.stop()
        FIGURES["module_s"] = [time.monotonic() - started]


def retained(rig: Rig, topic: str) -> bytes:
    """The retained message on `topic`, as a client connecting now gets it."""
    with connected_probe(rig.broker) as probe:
        probe.subscribe(topic)
        return probe.expect(lambda m: m.topic == topic and m.retain).payload


# -- the tests, in order ------------------------------------------------------------------------------------


def test_plugin_connects_with_what_agent_config_gave(rig: Rig) -> None:
    assert rig.config["broker"]["username"] == f"printer-{rig.pid}"
    body = rig.rest_state("Offline")  # OctoPrint is up, not yet connected to its printer
    assert (body["agent_name"], body["agent_version"]) == ("octoprint_printbridge", "0.1.0")
    assert body["settings"]["agent"] == {"name": "octoprint_printbridge", "version": "0.1.0"}
    rig.recorder.wait(rig.topics.availability(rig.pid), lambda s: s.payload == b"online")
    assert retained(rig, rig.topics.availability(rig.pid)) == b"online"
    rig.octoprint.connect_printer()
    body = rig.rest_state("Operational")
    assert body["status"]["state"]["flags"]["ready"] is True and body["current_print"] is None
    state = rig.octoprint.ok("GET", "/api/plugin/printbridge").json()
    broker = f"mqtt://{rig.broker.host}:{rig.broker.port}"
    assert state == {
        "configured": True,
        "broker": broker,
        "printer_id": rig.pid,
        "connected": True,
        "error": None,
        "should_watch": False,  # printbridge's remote_status: no print to watch
    }


def test_settings_page_shows_the_plugins_settings(rig: Rig) -> None:
    with httpx.Client(base_url=rig.octoprint.url, timeout=20) as browser:
        browser.get("/")  # the login page sets OctoPrint's CSRF cookie, which the login must echo
        csrf = next(value for name, value in browser.cookies.items() if name.startswith("csrf_token"))
        login = browser.post(
            "/api/login", json={"user": "admin", "pass": "admin", "remember": False}, headers={"X-CSRF-Token": csrf}
        )
        assert login.status_code == 200, login.text
        page = browser.get("/")
        assert page.status_code == 200
    html = page.text
    assert 'id="settings_plugin_printbridge"' in html
    for name in DEFAULTS:
        if name != "username":  # the broker account is printer-{id}: nothing to fill in
            assert f"settings.plugins.printbridge.{name}" in html, name
    settings = rig.octoprint.ok("GET", "/api/settings").json()["plugins"]["printbridge"]
    assert settings["broker_url"] == rig.config["broker"]["url"] and settings["printer_id"] == rig.pid


def test_a_print_shows_in_rest_and_home_assistant(rig: Rig) -> None:
    mark = rig.recorder.mark()
    body, latency = rig.start_print("long.gcode", LONG_PRINT_LINES)
    assert latency < 10  # measured for the note (bench figure), bounded only by the wait above
    assert body["current_print"]["started_at"].endswith("Z") and body["current_print"]["ended_at"] is None

    def heated(b: dict[str, Any]) -> bool:
        temps = b["status"]["temperatures"]
        return temps.get("tool0", {}).get("target") == 60.0 and temps.get("bed", {}).get("target") == 40.0

    body = rig.rest_state("Printing", timeout=15, extra=heated)
    status = body["status"]
    assert status["job"]["file"]["name"] == "long.gcode"
    assert set(status["temperatures"]) == {"tool0", "bed"}  # OctoPrint's chamber of nulls is left out
    assert status["state"]["flags"]["printing"] is True
    first = status["progress"]["completion"]
    rig.rest_state("Printing", timeout=15, extra=lambda b: b["status"]["progress"]["completion"] > first)

    # Home Assistant's state topic follows
    state = rig.recorder.wait(
        rig.topics.state(rig.pid),
        lambda s: s.json().get("state_text") == "Printing" and s.json().get("current_print_id") is not None,
        mark,
    ).json()
    assert state["online"] is True and state["printing"] is True and state["file"] == "long.gcode"

    # the webcam's snapshot, published while printing, is the printer's picture
    def pic() -> bytes | None:
        resp = rig.serve.request("GET", f"/api/v1/printers/{rig.pid}/pic")
        return resp.content if resp.status_code == 200 else None

    assert wait_until(pic, 10, "the webcam snapshot in printbridge") == SNAPSHOT
    # printbridge's failure detection watches this print, and told the plugin so (remote_status)
    wait_until(
        lambda: rig.octoprint.ok("GET", "/api/plugin/printbridge").json()["should_watch"] is True,
        10,
        "the plugin to know that printbridge watches the print",
    )
    assert rig.get_printer()["pic"] == {"img_url": f"/api/v1/printers/{rig.pid}/pic"}


def test_pause_resume_and_cancel_through_printbridge(rig: Rig) -> None:
    rig.rest_state("Printing")
    before = len(rig.octoprint.serial_log())
    t0 = time.perf_counter()
    result = rig.action("pause_print")
    pause_s = [time.perf_counter() - t0]
    assert (result["succeeded"], result["error"]) == (True, None)
    rig.octoprint_state("Paused")
    # retract, lift and heaters off (printbridge's defaults: retract 6.5, lift 2.5, tools off) reached the printer
    wait_until(lambda: "M104 S0" in rig.octoprint.serial_log()[before:], 10, "the pause G-code in the serial log")
    sent = re.findall(r"Send: N\d+ (.*?)\*", rig.octoprint.serial_log()[before:])
    assert sent[sent.index("G1 E-6.5") - 2 :][:7] == ["G91", "M83", "G1 E-6.5", "G1 Z2.5", "G90", "M82", "M104 S0"]
    body = rig.rest_state("Paused")
    assert body["status"]["state"]["flags"]["paused"] is True
    print_id = body["current_print"]["id"]

    again = rig.action("pause_print")
    assert (again["succeeded"], again["error"]) == (False, "already paused")  # the plugin's reason

    before = len(rig.octoprint.serial_log())
    t0 = time.perf_counter()
    result = rig.action("resume_print")
    resume_s = [time.perf_counter() - t0]
    assert (result["succeeded"], result["error"]) == (True, None)
    rig.octoprint_state("Printing", timeout=20)  # the nozzle is heated again first
    sent = re.findall(r"Send: N\d+ (.*?)\*", rig.octoprint.serial_log()[before:])
    assert sent[:7] == ["M109 S60", "G91", "M83", "G1 Z-2.5", "G1 E6.5", "G90", "M82"]
    assert rig.rest_state("Printing")["current_print"]["id"] == print_id

    for _ in range(PAUSE_ROUNDS - 1):  # more round trips for the figures
        t0 = time.perf_counter()
        assert rig.action("pause_print")["succeeded"] is True
        pause_s.append(time.perf_counter() - t0)
        rig.octoprint_state("Paused")
        t0 = time.perf_counter()
        assert rig.action("resume_print")["succeeded"] is True
        resume_s.append(time.perf_counter() - t0)
        rig.octoprint_state("Printing", timeout=20)
    FIGURES["pause_round_trip_s"] = pause_s
    FIGURES["resume_round_trip_s"] = resume_s

    mark = rig.recorder.mark()
    result = rig.action("cancel_print")
    assert (result["succeeded"], result["error"]) == (True, None)
    ended = rig.recorder.wait(rig.topics.event(rig.pid), lambda s: s.json()["event_type"] == "ENDED", mark).json()
    assert ended["print"]["id"] == print_id
    assert ended["print"]["cancelled_at"] is not None and ended["print"]["finished_at"] is None
    rig.idle()


def test_refusals_carry_the_plugins_reason(rig: Rig) -> None:
    rig.idle()
    # printbridge refuses by itself when there is no print; the plugin's own reason comes over MQTT
    result = rig.action("pause_print")
    assert (result["succeeded"], result["error"]) == (False, "not printing")
    command_topic = f"{rig.serve.base_topic}/printers/{rig.pid}/command"
    ack_topic = rig.topics.ack(rig.pid)
    for cmd, reason in [("pause", "not printing"), ("resume", "not printing"), ("cancel", "not printing")]:
        cmd_id = uuid.uuid4().hex
        payload = {"cmd_id": cmd_id, "cmd": cmd, "args": {}, "initiator": "api", "ts": time.time()}
        mark = rig.recorder.mark()
        rig.recorder.client.publish(command_topic, json.dumps(payload), qos=1)
        ack = rig.recorder.wait(ack_topic, lambda s, c=cmd_id: s.json()["cmd_id"] == c, mark).json()  # type: ignore[misc]
        assert ack == {"cmd_id": cmd_id, "ok": False, "error": reason}
        # the same command again: the same ack, nothing run
        mark = rig.recorder.mark()
        rig.recorder.client.publish(command_topic, json.dumps(payload), qos=1)
        assert rig.recorder.wait(ack_topic, lambda s, c=cmd_id: s.json()["cmd_id"] == c, mark).json() == ack  # type: ignore[misc]
    rig.recorder.client.publish(command_topic, b"not a command", qos=1)  # dropped and logged
    assert rig.octoprint.api("GET", "/api/version").status_code == 200


def test_a_print_that_finishes_closes_with_finished_at(rig: Rig) -> None:
    rig.idle()
    mark = rig.recorder.mark()
    body, _ = rig.start_print("short.gcode", SHORT_PRINT_LINES)
    print_id = body["current_print"]["id"]
    ended = rig.recorder.wait(
        rig.topics.event(rig.pid), lambda s: s.json()["event_type"] == "ENDED", mark, timeout=30
    ).json()
    assert ended["print"]["id"] == print_id and ended["print"]["filename"] == "short.gcode"
    assert ended["print"]["finished_at"] is not None and ended["print"]["cancelled_at"] is None
    done = rig.recorder.find(rig.topics.status(rig.pid), lambda s: "PrintDone" in s.payload.decode(), mark)
    assert done is not None and done.json()["current_print_ts"] > 0  # the print's last message still names it
    rig.idle()


def test_broker_restart_plugin_back_with_current_status(rig: Rig) -> None:
    rig.idle()
    rig.start_print("restart.gcode", LONG_PRINT_LINES)
    rig.rest_state("Printing")
    mark = rig.recorder.mark()
    rig.broker.restart()
    back_at = time.time()
    status = rig.recorder.wait(
        rig.topics.status(rig.pid), lambda s: s.json()["status"]["_ts"] > back_at, mark, timeout=15
    ).json()
    FIGURES.setdefault("broker_back_to_status_s", []).append(status["status"]["_ts"] - back_at)
    assert status["status"]["state"]["text"] == rig.octoprint.state() == "Printing"
    assert status["settings"]["agent"]["name"] == "octoprint_printbridge"  # announced afresh on reconnection
    online = rig.recorder.wait(rig.topics.availability(rig.pid), lambda s: s.payload == b"online", mark)
    assert online.at >= back_at
    # printbridge (which reconnects on its own schedule) shows the current status again
    rig.rest_state("Printing", timeout=20, extra=lambda b: b["status"]["_ts"] > back_at)
    assert rig.action("cancel_print")["succeeded"] is True
    rig.idle()


def test_printbridge_restarted_mid_print_the_plugin_carries_on(rig: Rig) -> None:
    rig.idle()
    body, _ = rig.start_print("bridge-restart.gcode", LONG_PRINT_LINES)
    print_id = body["current_print"]["id"]
    rig.serve.terminate()
    assert rig.serve.process is not None and rig.serve.process.wait(20) == 0
    rig.serve.start()
    body = rig.rest_state("Printing", timeout=15)
    assert body["current_print"]["id"] == print_id
    result = rig.action("pause_print")
    assert (result["succeeded"], result["error"]) == (True, None)
    rig.octoprint_state("Paused")
    mark = rig.recorder.mark()
    assert rig.action("cancel_print")["succeeded"] is True
    ended = rig.recorder.wait(rig.topics.event(rig.pid), lambda s: s.json()["event_type"] == "ENDED", mark).json()
    assert ended["print"]["id"] == print_id and ended["print"]["cancelled_at"] is not None
    rig.idle()


def test_wrong_password_is_logged_clearly_and_retried_with_backoff(rig: Rig) -> None:
    rig.idle()
    good = rig.config["broker"]
    # a setting that cannot work: said in the plugin's state (and log), nothing connects
    rig.octoprint.save_plugin_settings("printbridge", {"broker_url": "http://printbridge.lan"})
    state = wait_until(
        lambda: (s := rig.octoprint.ok("GET", "/api/plugin/printbridge").json())["configured"] is False and s,
        10,
        "the plugin to refuse the broker URL",
    )
    assert state == {"configured": False, "connected": False, "error": state["error"]}
    assert state["error"].startswith("broker_url: expected mqtt://")

    log_start = len(rig.octoprint.octoprint_log())
    rig.octoprint.save_plugin_settings("printbridge", {"broker_url": good["url"], "password": "not-the-token"})
    # reconfigured: `offline` first, so printbridge shows the printer offline
    wait_until(lambda: rig.get_printer()["status"] is None, 10, "printbridge to show the printer offline")
    refusal = re.compile(
        r"^(\S+ \S+) - octoprint\.plugins\.printbridge\.mqtt - ERROR - .*refused printer-\d+: .*password"
    )

    def refusals() -> list[float]:
        lines = rig.octoprint.octoprint_log()[log_start:].splitlines()
        stamps = [m.group(1) for m in map(refusal.match, lines) if m]
        return [time.mktime(time.strptime(s[:19], "%Y-%m-%d %H:%M:%S")) + int(s[20:23]) / 1000 for s in stamps]

    stamps = wait_until(lambda: (r := refusals()) and len(r) >= 4 and r, 20, "four refused connection attempts")
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[-1] > gaps[0], gaps  # backing off
    assert "Check printer_id and password" in rig.octoprint.octoprint_log()[log_start:]
    state = rig.octoprint.ok("GET", "/api/plugin/printbridge").json()
    assert state["connected"] is False and "Check printer_id and password" in state["error"]
    # OctoPrint itself is unaffected
    assert rig.octoprint.api("GET", "/api/version").status_code == 200
    assert rig.octoprint.state() == "Operational"

    rig.octoprint.save_plugin_settings("printbridge", {"password": good["password"]})
    rig.rest_state("Operational", timeout=15)


def test_baseline_pause_round_trip_with_the_simulated_agent(rig: Rig) -> None:
    """The same REST pause/resume round trips with `printbridge simulate`'s agent on the same broker and bridge:
    the baseline the plugin's figures are read against (nothing asserted on speed)."""
    resp = rig.serve.request("POST", "/api/v1/printers/", json={"name": "Simulated baseline"})
    assert resp.status_code == 201, resp.text
    printer = resp.json()
    config = SimulatorConfig(
        printer_id=printer["id"],
        password=printer["auth_token"],
        host=rig.broker.host,
        port=rig.broker.port,
        base_topic=rig.serve.base_topic,
        status_interval_s=0.5,
        loop_prints=False,
    )
    sim: Simulator = wait_until(lambda: _started(config), 15, "the simulator to be let in by the broker", poll_s=0.2)
    try:
        path = f"/api/v1/printers/{printer['id']}"
        wait_until(
            lambda: rig.serve.request("GET", f"{path}/").json()["current_print"] is not None,
            10,
            "the simulated print in printbridge",
        )
        pause_s = []
        for _ in range(PAUSE_ROUNDS):
            t0 = time.perf_counter()
            assert rig.serve.request("POST", f"{path}/pause_print").json()["succeeded"] is True
            pause_s.append(time.perf_counter() - t0)
            assert rig.serve.request("POST", f"{path}/resume_print").json()["succeeded"] is True
        FIGURES["baseline_simulator_pause_round_trip_s"] = pause_s
    finally:
        sim.stop()


def _started(config: SimulatorConfig) -> Simulator | None:
    """A started simulator, or None while the broker refuses it (printbridge makes its account just after the
    printer)."""
    sim = Simulator(config)
    try:
        sim.start()
    except SimulatorError:
        return None
    return sim


def test_octoprint_stopped_shows_offline(rig: Rig) -> None:
    rig.rest_state("Operational")
    mark = rig.recorder.mark()
    rig.octoprint.stop()
    rig.recorder.wait(rig.topics.availability(rig.pid), lambda s: s.payload == b"offline", mark)
    assert retained(rig, rig.topics.availability(rig.pid)) == b"offline"
    body = wait_until(lambda: (b := rig.get_printer())["status"] is None and b, 10, "printbridge to show it offline")
    assert body["current_print"] is None
