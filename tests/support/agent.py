"""A printer agent that integration tests drive precisely (paho-mqtt 2, blocking, thread-safe).

It connects like a real agent (username `printer-{id}`, `offline` Will, retained `online`), records every
command it receives and acks it from paho's thread according to `ack_mode`.
"""

from __future__ import annotations

import copy
import queue
import socket
import threading
from typing import Any, Literal

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bridge.agent.client import agent_client
from bridge.agent.messages import AgentIdentity, build_flags, build_status_message, temperature
from bridge.mqtt.payloads import Ack, encoder
from bridge.mqtt.topics import Topics

AckMode = Literal["ok", "refuse", "silent", "duplicate", "delay"]

_object_decoder = msgspec.json.Decoder(dict[str, Any])


class TestAgent:
    """Acks commands per `ack_mode`: `ok`, `refuse` (ok false, `refuse_error`), `silent` (no ack),
    `duplicate` (the same ack twice), `delay` (the ack `ack_delay_s` later)."""

    __test__ = False

    def __init__(
        self,
        host: str,
        port: int,
        printer_id: int,
        password: str,
        username: str | None = None,
        base_topic: str = "printbridge",
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
    ) -> None:
        self.host = host
        self.port = port
        self.printer_id = printer_id
        self.topics = Topics(base_topic)
        self.protocol = protocol
        self.ack_mode: AckMode = "ok"
        self.refuse_error = "refused by the test agent"
        self.ack_delay_s = 0.5
        self.commands: list[dict[str, Any]] = []
        # MQTT 5 request/response properties of each command, in the order of `commands`.
        self.command_properties: list[dict[str, Any]] = []
        self.remote_statuses: list[dict[str, Any]] = []
        self._command_queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._remote_status_queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._connack: queue.Queue[ReasonCode] = queue.Queue()
        self._subscribed = threading.Event()
        self._subscribe_mid: int | None = None
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._dropped = False

        client = agent_client(self.topics, printer_id, password, username=username, kind="test", protocol=protocol)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client

    # -- connection --------------------------------------------------------------------------------
    def connect(self, timeout: float = 5.0) -> None:
        """Connect, subscribe to `command` and `remote_status`, publish `online`; raise on failure."""
        self._subscribed.clear()
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        try:
            reason = self._connack.get(timeout=timeout)
        except queue.Empty:
            self._client.loop_stop()
            raise TimeoutError(f"no CONNACK within {timeout} s") from None
        if reason.is_failure:
            self._client.loop_stop()
            self._client.disconnect()
            raise ConnectionRefusedError(f"broker refused printer {self.printer_id}: {reason}")
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"no SUBACK within {timeout} s")
        self.set_availability(True)

    def disconnect(self, *, publish_offline: bool = True) -> None:
        """Disconnect cleanly (no Will), first publishing `offline` unless told not to."""
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        if self._dropped:
            return
        if publish_offline and self._client.is_connected():
            self.set_availability(False)
        self._client.disconnect()
        self._client.loop_stop()

    def drop_connection(self) -> None:
        """Die like a network failure: the broker publishes the Will; nothing reconnects."""
        self._dropped = True
        self._client.loop_stop()
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            sock.close()

    # -- publishing (all wait for the broker's PUBACK at QoS 1) -------------------------------------
    def publish_status(self, message: dict[str, Any] | bytes, *, retain: bool = False, qos: int = 1) -> None:
        payload = message if isinstance(message, bytes) else encoder.encode(message)
        self.publish_raw("status", payload, retain=retain, qos=qos)

    def publish_raw(self, topic_leaf: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        """Publish on `B/printers/{id}/{topic_leaf}` (status, snapshot, detection, availability, ack...)."""
        info = self._client.publish(self.topics.printer(self.printer_id, topic_leaf), payload, qos, retain)
        info.wait_for_publish(timeout=5.0)
        if not info.is_published():
            raise TimeoutError(f"publish on {topic_leaf} not acknowledged by the broker")

    def set_availability(self, online: bool) -> None:
        self.publish_raw("availability", b"online" if online else b"offline", retain=True)

    def send_ack(self, cmd_id: str, ok: bool = True, error: str | None = None) -> None:
        """A manual ack (a late one, say), waiting for the broker's PUBACK."""
        self.publish_raw("ack", encoder.encode(Ack(cmd_id=cmd_id, ok=ok, error=error)))

    # -- receiving ---------------------------------------------------------------------------------
    def wait_command(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next command received (decoded JSON), in order of arrival."""
        try:
            return self._command_queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no command for printer {self.printer_id} within {timeout} s") from None

    def wait_remote_status(self, timeout: float = 5.0) -> dict[str, Any]:
        try:
            return self._remote_status_queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no remote_status for printer {self.printer_id} within {timeout} s") from None

    # -- paho callbacks (paho's thread) ------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        if not reason.is_failure:
            pid = self.printer_id
            _, mid = client.subscribe([(self.topics.command(pid), 1), (self.topics.remote_status(pid), 1)])
            self._subscribe_mid = mid
        self._connack.put(reason)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Any
    ) -> None:
        if mid == self._subscribe_mid and not any(r.is_failure for r in reasons):
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        pid = self.printer_id
        try:
            payload = _object_decoder.decode(message.payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            payload = {"invalid_payload": message.payload.decode("utf-8", "replace")}
        if message.topic == self.topics.remote_status(pid):
            self.remote_statuses.append(payload)
            self._remote_status_queue.put(payload)
        elif message.topic == self.topics.command(pid):
            props = _request_properties(message)
            cmd_id = payload.get("cmd_id")
            if isinstance(cmd_id, str):  # ack first: once wait_command() returns, the ack is on its way
                self._ack_received(cmd_id, props)
            self.commands.append(payload)
            self.command_properties.append(props)
            self._command_queue.put(copy.deepcopy(payload))

    def _ack_received(self, cmd_id: str, props: dict[str, Any]) -> None:
        mode = self.ack_mode
        ack = Ack(cmd_id=cmd_id, ok=mode != "refuse", error=self.refuse_error if mode == "refuse" else None)
        if mode == "silent":
            return
        if mode == "delay":
            timer = threading.Timer(self.ack_delay_s, self._publish_ack, (ack, props))
            timer.daemon = True
            with self._lock:
                self._timers.append(timer)
            timer.start()
            return
        self._publish_ack(ack, props)
        if mode == "duplicate":
            self._publish_ack(ack, props)

    def _publish_ack(self, ack: Ack, props: dict[str, Any]) -> None:
        """Reply like a real agent: on the ack topic, or with MQTT 5 to the Response Topic with the
        command's Correlation Data. Never waits (it may run in paho's thread)."""
        topic = props.get("response_topic") or self.topics.ack(self.printer_id)
        properties = None
        if "correlation_data" in props:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = props["correlation_data"]
        self._client.publish(topic, encoder.encode(ack), qos=1, properties=properties)


def _request_properties(message: mqtt.MQTTMessage) -> dict[str, Any]:
    props = getattr(message, "properties", None)
    found: dict[str, Any] = {}
    if props is not None:
        if getattr(props, "ResponseTopic", None):
            found["response_topic"] = props.ResponseTopic
        if getattr(props, "CorrelationData", None) is not None:
            found["correlation_data"] = bytes(props.CorrelationData)
    return found


def agent_message(
    *,
    ts: float,
    printing: bool = True,
    paused: bool = False,
    current_print_ts: int | None = 1716904799,
    filename: str = "benchy.gcode",
    event: str | None = None,
    completion: float | None = 5.3,
    temps: dict[str, Any] | None = None,
    settings: bool | dict[str, Any] = True,
    state_text: str | None = None,
    include_status: bool = True,
) -> dict[str, Any]:
    """The docs/mqtt.md example agent message, varied by the arguments.

    `current_print_ts=None` leaves the key out; `settings=True` sends the example settings, a dict sends
    that dict, False none; `include_status=False` leaves `status` out (the bridge then marks it offline).
    """
    text = state_text or ("Paused" if paused else "Printing" if printing else "Operational")
    built = build_status_message(
        ts=ts,
        current_print_ts=current_print_ts,
        state_text=text,
        flags=build_flags(printing=printing and not paused, paused=paused),
        filename=filename,
        completion=completion,
        print_time=116,
        print_time_left=2068,
        temperatures=temps
        if temps is not None
        else {"tool0": temperature(220.0, 220.0), "bed": temperature(60.0, 60.0)},
        agent=AgentIdentity(name="octoprint_obico", version="2.6.1") if settings is True else None,
        event=event,
    )
    if not include_status:
        built.status = None
    message: dict[str, Any] = msgspec.to_builtins(built)
    if isinstance(settings, dict):
        message["settings"] = settings
    return message
