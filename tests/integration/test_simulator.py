"""The simulator and the test agent against a real Mosquitto, driven by a paho "bridge peer"."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.agent.client import set_nodelay
from bridge.agent.jpeg import build_grey_jpeg
from bridge.agent.simulator import Simulator, SimulatorConfig, SimulatorError
from bridge.mqtt.payloads import Command, decode_ack, decode_agent_message, encoder
from bridge.mqtt.topics import Topics
from tests.support.agent import TestAgent, agent_message

Broker = tuple[str, int]
PRINTER_ID = 7
TIMEOUT_S = 5.0


@pytest.fixture
def _anon_broker(tmp_path: Path) -> Iterator[Broker]:
    """A throwaway anonymous Mosquitto on a free 127.0.0.1 port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\n")
    with (tmp_path / "mosquitto.log").open("wb") as log:
        proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.01)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        try:
            proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the bridge's side, reduced to a recording paho client ----------------------------------------


@dataclass(frozen=True)
class Msg:
    topic: str
    payload: bytes
    retain: bool

    @property
    def json(self) -> dict[str, Any]:
        return msgspec.json.decode(self.payload)


class Peer:
    """Subscribes to one printer's topics, records every message, and sends commands."""

    def __init__(self, broker: Broker, base: str, protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311):
        self.topics = Topics(base)
        self.messages: list[Msg] = []
        self._cursor = 0
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self._client.on_socket_open = lambda _c, _u, sock: set_nodelay(sock)
        self._client.on_connect = lambda c, *_: c.subscribe(f"{base}/printers/{PRINTER_ID}/#", 1)
        self._client.on_subscribe = lambda *_: self._ready.set()
        self._client.on_message = self._on_message
        self._client.connect(*broker)
        self._client.loop_start()
        assert self._ready.wait(TIMEOUT_S)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Msg(message.topic, message.payload, bool(message.retain)))
            self._cond.notify_all()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def mark(self) -> int:
        with self._cond:
            return len(self.messages)

    def wait_for(self, predicate: Callable[[Msg], bool], timeout: float = TIMEOUT_S) -> Msg:
        """The first message after the cursor that matches; the cursor moves past it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index in range(self._cursor, len(self.messages)):
                    if predicate(self.messages[index]):
                        self._cursor = index + 1
                        return self.messages[index]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(m.topic, m.payload[:120]) for m in self.messages[self._cursor :]]
                    raise AssertionError(f"no matching message within {timeout} s; unmatched: {seen}")
                self._cond.wait(remaining)

    def leaf(self, leaf: str, payload: bytes | None = None, timeout: float = TIMEOUT_S) -> Msg:
        topic = self.topics.printer(PRINTER_ID, leaf)
        return self.wait_for(lambda m: m.topic == topic and (payload is None or m.payload == payload), timeout)

    def status(self, predicate: Callable[[dict[str, Any]], bool] = lambda _: True) -> dict[str, Any]:
        """The next status message matching `predicate`, checked against the contract's decoder."""
        topic = self.topics.status(PRINTER_ID)
        msg = self.wait_for(lambda m: m.topic == topic and predicate(m.json))
        decode_agent_message(msg.payload)
        return msg.json

    def event(self, event_type: str) -> dict[str, Any]:
        return self.status(lambda d: d.get("event", {}).get("event_type") == event_type)

    def ack(self, cmd_id: str) -> dict[str, Any]:
        msg = self.wait_for(lambda m: m.topic == self.topics.ack(PRINTER_ID) and m.json["cmd_id"] == cmd_id)
        decode_ack(msg.payload)
        return msg.json

    def send_command(self, cmd: str, cmd_id: str | None = None, properties: Properties | None = None) -> str:
        command = Command(cmd_id=cmd_id or uuid.uuid4().hex, cmd=cmd, args={}, initiator="api", ts=time.time())
        info = self._client.publish(
            self.topics.command(PRINTER_ID), encoder.encode(command), qos=1, properties=properties
        )
        info.wait_for_publish(TIMEOUT_S)
        return command.cmd_id

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(TIMEOUT_S)


def _wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _retained(broker: Broker, base: str, leaf: str) -> bytes:
    """What a subscriber arriving now gets on a printer topic: the retained message."""
    late = Peer(broker, base)
    try:
        msg = late.leaf(leaf)
        assert msg.retain
        return msg.payload
    finally:
        late.close()


@pytest.fixture
def base() -> str:
    return f"pb-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def peer(_anon_broker: Broker, base: str) -> Iterator[Peer]:
    p = Peer(_anon_broker, base)
    yield p
    p.close()


@contextlib.contextmanager
def running_simulator(broker: Broker, base: str, **overrides: Any) -> Iterator[Simulator]:
    settings: dict[str, Any] = {
        "printer_id": PRINTER_ID,
        "password": "secret",
        "host": broker[0],
        "port": broker[1],
        "base_topic": base,
        "status_interval_s": 0.2,
        "print_duration_s": 5.0,
        "loop_prints": False,
    }
    settings.update(overrides)
    sim = Simulator(SimulatorConfig(**settings))
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


# -- the simulator ---------------------------------------------------------------------------------


def test_simulator_announces_itself_and_publishes_advancing_progress(
    _anon_broker: Broker, base: str, peer: Peer
) -> None:
    with running_simulator(_anon_broker, base):
        peer.leaf("availability", b"online")
        assert _retained(_anon_broker, base, "availability") == b"online"
        first = peer.status()
        version = metadata.version("printbridge")
        assert first["settings"] == {"agent": {"name": "printbridge-simulator", "version": version}, "webcams": []}
        started = peer.event("PrintStarted")
        print_ts = started["current_print_ts"]
        assert print_ts > 0
        assert started["event"]["data"] == {"name": "benchy.gcode"}
        later = peer.status(lambda d: d["status"]["progress"]["completion"] > 0)
        latest = peer.status(
            lambda d: d["status"]["progress"]["completion"] > later["status"]["progress"]["completion"]
        )
        for message in (later, latest):
            status = message["status"]
            assert message["current_print_ts"] == print_ts
            assert status["state"]["text"] == "Printing"
            assert status["state"]["flags"]["printing"] is True
            assert status["job"]["file"]["name"] == "benchy.gcode"
            assert status["temperatures"]["tool0"] == {"actual": 220.0, "target": 220.0}
            assert status["temperatures"]["bed"] == {"actual": 60.0, "target": 60.0}
        assert latest["status"]["_ts"] > later["status"]["_ts"] > started["status"]["_ts"]
        assert latest["status"]["progress"]["printTimeLeft"] <= later["status"]["progress"]["printTimeLeft"]


def test_simulator_obeys_commands_once_per_cmd_id(_anon_broker: Broker, base: str, peer: Peer) -> None:
    with running_simulator(_anon_broker, base) as sim:
        peer.event("PrintStarted")

        pause_id = peer.send_command("pause")
        assert peer.ack(pause_id) == {"cmd_id": pause_id, "ok": True, "error": None}
        paused = peer.event("PrintPaused")
        assert paused["status"]["state"]["text"] == "Paused"
        assert paused["status"]["state"]["flags"]["paused"] is True
        assert sim.state == "Paused"
        frozen = paused["status"]["progress"]
        later = peer.status(lambda d: d["status"]["_ts"] > paused["status"]["_ts"] + 0.3)
        assert later["status"]["progress"] == frozen

        # The same cmd_id again: the first result again (a re-applied pause would be refused).
        mark = peer.mark()
        peer.send_command("pause", cmd_id=pause_id)
        assert peer.ack(pause_id) == {"cmd_id": pause_id, "ok": True, "error": None}
        second_pause = peer.send_command("pause")
        assert peer.ack(second_pause) == {"cmd_id": second_pause, "ok": False, "error": "already paused"}
        events = [m.json.get("event") for m in peer.messages[mark:] if m.topic.endswith("/status")]
        assert events == [None] * len(events)

        resume_id = peer.send_command("resume")
        assert peer.ack(resume_id)["ok"] is True
        resumed = peer.event("PrintResumed")
        assert resumed["status"]["state"]["text"] == "Printing"
        peer.status(lambda d: d["status"]["progress"]["completion"] > frozen["completion"])
        assert sim.state == "Printing"

        cancel_id = peer.send_command("cancel")
        assert peer.ack(cancel_id)["ok"] is True
        cancelling = peer.status(lambda d: d["status"]["state"]["text"] == "Cancelling")
        assert cancelling["status"]["state"]["flags"]["cancelling"] is True
        cancelled = peer.event("PrintCancelled")
        assert cancelled["current_print_ts"] == -1
        assert cancelled["status"]["state"]["text"] == "Operational"
        assert sim.state == "Operational"
        assert sim.current_print_ts == -1

        idle_pause = peer.send_command("pause")
        assert peer.ack(idle_pause) == {"cmd_id": idle_pause, "ok": False, "error": "not printing"}
        idle_resume = peer.send_command("resume")
        assert peer.ack(idle_resume) == {"cmd_id": idle_resume, "ok": False, "error": "not printing"}
        unknown = peer.send_command("explode")
        assert peer.ack(unknown) == {"cmd_id": unknown, "ok": False, "error": "unknown command 'explode'"}
        assert sim.state == "Operational"


def test_simulator_finishes_the_print_and_starts_another(_anon_broker: Broker, base: str, peer: Peer) -> None:
    with running_simulator(_anon_broker, base, print_duration_s=0.6, idle_between_prints_s=0.3, loop_prints=True):
        first = peer.event("PrintStarted")["current_print_ts"]
        done = peer.event("PrintDone")
        assert done["current_print_ts"] == -1
        assert done["status"]["state"]["text"] == "Operational"
        assert done["status"]["temperatures"]["tool0"]["target"] == 0.0
        second = peer.event("PrintStarted")["current_print_ts"]
        assert second > first


def test_simulator_exposes_remote_status(_anon_broker: Broker, base: str, peer: Peer) -> None:
    with running_simulator(_anon_broker, base) as sim:
        assert sim.should_watch is None
        peer.publish(peer.topics.remote_status(PRINTER_ID), b'{"should_watch": true}', retain=True)
        _wait_until(lambda: sim.should_watch is True)
        peer.publish(peer.topics.remote_status(PRINTER_ID), b"not json", retain=True)
        peer.publish(peer.topics.remote_status(PRINTER_ID), b'{"should_watch": false}', retain=True)
        _wait_until(lambda: sim.should_watch is False)


def test_simulator_stop_publishes_offline_and_a_dropped_connection_the_will(
    _anon_broker: Broker, base: str, peer: Peer
) -> None:
    with running_simulator(_anon_broker, base) as sim:
        peer.leaf("availability", b"online")
        peer.event("PrintStarted")
        sim.drop_connection()
        assert peer.leaf("availability", b"offline").payload == b"offline"
        peer.leaf("availability", b"online")  # paho reconnected
        again = peer.status(lambda d: "settings" in d)
        assert again["status"]["state"]["text"] == "Printing"
    peer.leaf("availability", b"offline")
    assert _retained(_anon_broker, base, "availability") == b"offline"


def test_simulator_refuses_to_start_without_a_broker(base: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sim = Simulator(SimulatorConfig(printer_id=1, password="x", host="127.0.0.1", port=port, base_topic=base))
    with pytest.raises(SimulatorError, match="cannot reach the broker"):
        sim.start()


def test_simulator_snapshot_is_a_baseline_jpeg(_anon_broker: Broker, base: str, peer: Peer) -> None:
    image = build_grey_jpeg(64, 48, shade=200)
    assert image.startswith(b"\xff\xd8\xff\xe0") and image.endswith(b"\xff\xd9")
    sof = image.index(b"\xff\xc0")
    assert image[sof + 5 : sof + 9] == (48).to_bytes(2, "big") + (64).to_bytes(2, "big")
    assert image.count(b"\xff\xc4") == 2 and image.count(b"\xff\xda") == 1
    with pytest.raises(ValueError):
        build_grey_jpeg(60, 48)
    with running_simulator(_anon_broker, base) as sim:
        sim.publish_snapshot()
        snapshot = peer.leaf("snapshot")
    assert snapshot.payload.startswith(b"\xff\xd8") and snapshot.payload.endswith(b"\xff\xd9")


# -- the test agent --------------------------------------------------------------------------------


@pytest.fixture
def agent(_anon_broker: Broker, base: str, peer: Peer) -> Iterator[TestAgent]:
    a = TestAgent(*_anon_broker, printer_id=PRINTER_ID, password="secret", base_topic=base)
    a.connect()
    yield a
    a.disconnect()


def test_agent_connects_publishes_and_receives(_anon_broker: Broker, base: str, agent: TestAgent, peer: Peer) -> None:
    peer.leaf("availability", b"online")
    assert _retained(_anon_broker, base, "availability") == b"online"
    message = agent_message(ts=1716904915.5, event="PrintStarted")
    agent.publish_status(message)
    received = peer.status()
    assert received == message
    assert received["status"]["state"]["flags"]["printing"] is True

    agent.publish_raw("snapshot", b"\xff\xd8jpeg\xff\xd9", qos=0)
    assert peer.leaf("snapshot").payload == b"\xff\xd8jpeg\xff\xd9"

    peer.publish(peer.topics.remote_status(PRINTER_ID), b'{"should_watch": true}', retain=True)
    assert agent.wait_remote_status() == {"should_watch": True}

    agent.set_availability(False)
    peer.leaf("availability", b"offline")
    assert _retained(_anon_broker, base, "availability") == b"offline"


def test_agent_message_variations_match_the_contract() -> None:
    idle = agent_message(ts=5.0, printing=False, current_print_ts=-1, settings=False, event="PrintDone")
    msg, status, settings = decode_agent_message(encoder.encode(idle))
    assert msg.current_print_ts == -1 and settings is None and status is not None
    assert msg.event is not None and msg.event.event_type == "PrintDone"
    assert idle["status"]["state"] == {
        "text": "Operational",
        "flags": {
            "operational": True,
            "printing": False,
            "paused": False,
            "cancelling": False,
            "pausing": False,
            "error": False,
            "ready": True,
            "closedOrError": False,
        },
    }
    paused = agent_message(ts=6.0, paused=True, current_print_ts=None, temps={"bed": {"actual": 1, "target": 2}})
    assert "current_print_ts" not in paused and paused["status"]["state"]["text"] == "Paused"
    assert paused["status"]["temperatures"] == {"bed": {"actual": 1, "target": 2}}
    offline = agent_message(ts=7.0, include_status=False)
    assert decode_agent_message(encoder.encode(offline))[1] is None


def test_agent_ack_modes(agent: TestAgent, peer: Peer) -> None:
    ok_id = peer.send_command("pause")
    received = agent.wait_command()
    assert received["cmd_id"] == ok_id and received["cmd"] == "pause" and received["initiator"] == "api"
    assert peer.ack(ok_id) == {"cmd_id": ok_id, "ok": True, "error": None}

    agent.ack_mode, agent.refuse_error = "refuse", "printer busy"
    refused = peer.send_command("resume")
    assert peer.ack(refused) == {"cmd_id": refused, "ok": False, "error": "printer busy"}

    agent.ack_mode = "silent"
    silent = peer.send_command("cancel")
    assert agent.wait_command()["cmd_id"] == refused
    assert agent.wait_command()["cmd_id"] == silent
    agent.ack_mode = "duplicate"
    duplicated = peer.send_command("pause")
    peer.ack(duplicated)
    peer.ack(duplicated)
    # The agent acks before it hands a command to wait_command(), so a silent ack would be here by now.
    acks = [m.json["cmd_id"] for m in peer.messages if m.topic == peer.topics.ack(PRINTER_ID)]
    assert acks == [ok_id, refused, duplicated, duplicated]

    agent.ack_mode, agent.ack_delay_s = "delay", 0.3
    sent_at = time.monotonic()
    delayed = peer.send_command("pause")
    assert peer.ack(delayed)["ok"] is True
    assert time.monotonic() - sent_at >= 0.3

    agent.send_ack(silent, ok=False, error="late")
    assert peer.ack(silent) == {"cmd_id": silent, "ok": False, "error": "late"}
    assert [c["cmd_id"] for c in agent.commands] == [ok_id, refused, silent, duplicated, delayed]


def test_agent_replies_to_mqtt5_response_topic_with_correlation_data(_anon_broker: Broker, base: str) -> None:
    peer = Peer(_anon_broker, base, protocol=MQTTProtocolVersion.MQTTv5)
    agent = TestAgent(
        *_anon_broker, printer_id=PRINTER_ID, password="x", base_topic=base, protocol=MQTTProtocolVersion.MQTTv5
    )
    agent.connect()
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = peer.topics.ack(PRINTER_ID)
        props.CorrelationData = b"corr-1"
        cmd_id = peer.send_command("pause", properties=props)
        assert peer.ack(cmd_id)["ok"] is True
        agent.wait_command()
        assert agent.command_properties == [
            {"response_topic": peer.topics.ack(PRINTER_ID), "correlation_data": b"corr-1"}
        ]
    finally:
        agent.disconnect()
        peer.close()


def test_agent_dropped_connection_fires_the_will(agent: TestAgent, peer: Peer) -> None:
    peer.leaf("availability", b"online")
    agent.drop_connection()
    assert peer.leaf("availability", b"offline").payload == b"offline"


def test_simulator_run_forever_stops_cleanly_on_sigterm(_anon_broker: Broker, base: str, peer: Peer) -> None:
    script = (
        "import sys; from bridge.agent.simulator import Simulator, SimulatorConfig; "
        "Simulator(SimulatorConfig(printer_id=int(sys.argv[1]), password='x', host=sys.argv[2], "
        "port=int(sys.argv[3]), base_topic=sys.argv[4], status_interval_s=0.2)).run_forever()"
    )
    args = [str(PRINTER_ID), _anon_broker[0], str(_anon_broker[1]), base]
    proc = subprocess.Popen([sys.executable, "-c", script, *args])
    try:
        peer.leaf("availability", b"online")
        peer.event("PrintStarted")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT_S) == 0
        peer.leaf("availability", b"offline")
    finally:
        proc.kill()
        proc.wait()
