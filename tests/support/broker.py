"""A real Mosquitto for tests: started per test on a free port, or taken from PRINTBRIDGE_TEST_MQTT_URL.

Also a small paho-mqtt 2 client (`Probe`) for tests that play a printer, Home Assistant or the admin,
and `dynsec_call`, which sends dynamic-security commands as the admin and returns the plugin's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import queue
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote, urlsplit

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bridge.mqtt.dynsec import (
    CONTROL_TOPIC,
    RESPONSE_TOPIC,
    CommandResult,
    build_initial_config,
    encode_request,
    parse_response,
)
from tests.support.processes import end_process, wait_listening

ENV_URL = "PRINTBRIDGE_TEST_MQTT_URL"
DYNSEC_PLUGIN_CANDIDATES = (
    Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"),
    Path("/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so"),
    Path("/usr/lib/mosquitto_dynamic_security.so"),
    Path("/usr/local/lib/mosquitto_dynamic_security.so"),
)
START_TIMEOUT_S = 10.0
ADMIN_USERNAME = "printbridge-admin"


class BrokerError(RuntimeError):
    """The broker could not be started (the message carries the end of its log)."""


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


def dynsec_plugin_path() -> Path | None:
    return next((p for p in DYNSEC_PLUGIN_CANDIDATES if p.exists()), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    host: str
    port: int
    admin_username: str | None
    admin_password: str | None
    dynsec: bool
    tls_port: int | None = None  # a TLS listener besides the plain one (`start_broker(tls=...)`)
    log_path: Path | None = None
    config_path: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_file: IO[bytes] | None = field(default=None, repr=False)
    _on_stop: Callable[[], None] | None = field(default=None, repr=False)

    def url(self, username: str | None = None, password: str | None = None) -> str:
        """`mqtt://user:password@host:port`; the admin's credentials unless others are given."""
        if username is None:
            username, password = self.admin_username, self.admin_password
        if username is None:
            return f"mqtt://{self.host}:{self.port}"
        auth = quote(username, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"mqtt://{auth}@{self.host}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the broker and wait for it (it saves its database first). Idempotent."""
        process, self._process = self._process, None
        end_process(process)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        on_stop, self._on_stop = self._on_stop, None
        if on_stop is not None:
            on_stop()

    def restart(self) -> None:
        """Stop, then start again on the same port with the same config and data (persistence on)."""
        if self.config_path is None:
            raise BrokerError("this broker was not started by the tests and cannot be restarted")
        self.stop()
        self._launch()

    def _launch(self) -> None:
        assert self.config_path is not None and self.log_path is not None
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("no mosquitto binary found")
        self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
        )
        failure = wait_listening(self._process, self.host, self.port, START_TIMEOUT_S)
        if failure is not None:
            self.stop()
            raise BrokerError(f"mosquitto {failure}:\n{self.log_tail()}")


def build_test_config(workdir: Path, port: int, plugin: Path, tls: tuple[int, Path, Path] | None = None) -> str:
    """The settings of mosquitto/mosquitto.conf, with this test's port and paths, and optionally the TLS
    listener that mosquitto/mosquitto.conf describes (port, certificate file, key file)."""
    tls_lines = [] if tls is None else [f"listener {tls[0]} 127.0.0.1", f"certfile {tls[1]}", f"keyfile {tls[2]}"]
    return "\n".join(
        [
            "per_listener_settings false",
            "allow_anonymous false",
            # Started as root, mosquitto would drop to the `mosquitto` user, who cannot write workdir.
            f"user {getpass.getuser()}",
            f"listener {port} 127.0.0.1",
            f"plugin {plugin}",
            f"plugin_opt_config_file {workdir / 'dynamic-security.json'}",
            "persistence true",
            f"persistence_location {workdir}/",
            "set_tcp_nodelay true",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "message_size_limit 5242880",
            "log_dest stderr",
            "log_type all",
            *tls_lines,
            "",
        ]
    )


def start_broker(workdir: Path, tls: tuple[Path, Path] | None = None) -> Broker:
    """Start Debian's mosquitto with dynamic security on a free 127.0.0.1 port, data kept in `workdir`."""
    plugin = dynsec_plugin_path()
    if plugin is None:
        raise BrokerError("mosquitto_dynamic_security.so not found")
    workdir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    (workdir / "dynamic-security.json").write_bytes(build_initial_config(ADMIN_USERNAME, password))
    port = free_port()
    tls_port = free_port() if tls is not None else None
    config_path = workdir / "mosquitto.conf"
    listener = None if tls is None or tls_port is None else (tls_port, *tls)
    config_path.write_text(build_test_config(workdir, port, plugin, listener))
    broker = Broker(
        host="127.0.0.1",
        port=port,
        admin_username=ADMIN_USERNAME,
        admin_password=password,
        dynsec=True,
        tls_port=tls_port,
        log_path=workdir / "mosquitto.log",
        config_path=config_path,
    )
    broker._launch()
    return broker


def broker_from_url(url: str, dynsec: bool = False, on_stop: Callable[[], None] | None = None) -> Broker:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise BrokerError(f"{ENV_URL} must look like mqtt://[user:password@]host[:port], not {url!r}")
    return Broker(
        host=parts.hostname,
        port=parts.port or 1883,
        admin_username=unquote(parts.username) if parts.username is not None else None,
        admin_password=unquote(parts.password) if parts.password is not None else None,
        dynsec=dynsec,
        _on_stop=on_stop,
    )


def broker_from_env() -> Broker | None:
    """The external broker named by PRINTBRIDGE_TEST_MQTT_URL (no dynamic security assumed)."""
    url = os.environ.get(ENV_URL, "").strip()
    return broker_from_url(url) if url else None


# -- a paho-mqtt 2 client for tests ----------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Probe:
    """A paho client on its own network thread, with TCP_NODELAY, recording what happens to it.

    `connect()` returns the CONNACK reason code (0 = accepted) instead of raising, so refusals can be
    asserted on. Messages land in `self.messages`; `disconnected` is set when the broker drops it.
    """

    def __init__(
        self,
        broker: Broker,
        username: str | None = None,
        password: str | None = None,
        *,
        client_id: str = "",
        mqtt5: bool = True,
    ) -> None:
        self.broker = broker
        protocol = paho.MQTTv5 if mqtt5 else paho.MQTTv311
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{uuid.uuid4().hex[:12]}",
            protocol=protocol,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.messages: queue.Queue[Received] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connect_rc: int | None = None
        self._subacks: dict[int, list[int]] = {}
        self._suback_event = threading.Condition()
        self._puback: dict[int, int] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    # paho callbacks (network thread)
    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.connect_rc = int(rc.value)
        if not rc.is_failure:
            sock = client.socket()
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connected.set()
        else:
            client.disconnect()  # otherwise paho's thread waits a second to reconnect
            self.disconnected.set()

    def _on_disconnect(self, client: paho.Client, _u: Any, _f: Any, _rc: ReasonCode, _p: Any) -> None:
        client.disconnect()  # a probe never reconnects by itself
        self.disconnected.set()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        self.messages.put(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, rcs: list[ReasonCode], _p: Any) -> None:
        with self._suback_event:
            self._subacks[mid] = [int(rc.value) for rc in rcs]
            self._suback_event.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self._suback_event:
            self._puback[mid] = int(rc.value)
            self._suback_event.notify_all()

    # API (test thread)
    def connect(self, timeout: float = 5.0) -> int:
        """Connect and wait for the CONNACK; the reason code (0 when accepted)."""
        self.connected.clear()
        self.disconnected.clear()
        self.connect_rc = None
        self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connect_rc is not None:
                break
            if self.disconnected.wait(0.01):
                break
        if self.connect_rc is None:
            self.close()
            raise TimeoutError(f"no CONNACK within {timeout} s (disconnected={self.disconnected.is_set()})")
        if self.connect_rc != 0:
            self.close()
        return self.connect_rc

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 5.0) -> list[int]:
        """Subscribe and wait for the SUBACK; its reason codes (granted QoS, or >= 0x80 on refusal)."""
        rc, mid = self.client.subscribe(topic, qos)
        if rc != paho.MQTT_ERR_SUCCESS or mid is None:
            raise RuntimeError(f"subscribe({topic!r}) failed: {paho.error_string(rc)}")
        with self._suback_event:
            if not self._suback_event.wait_for(lambda: mid in self._subacks, timeout):
                raise TimeoutError(f"no SUBACK for {topic!r} within {timeout} s")
            return self._subacks.pop(mid)

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 1,
        retain: bool = False,
        timeout: float = 5.0,
        properties: Properties | None = None,
    ) -> int:
        """Publish and, at QoS >= 1, wait for the PUBACK; its reason code (MQTT 5: 135 = not authorized)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish({topic!r}) failed: {paho.error_string(info.rc)}")
        if qos == 0:
            return 0
        with self._suback_event:
            if not self._suback_event.wait_for(lambda: info.mid in self._puback, timeout):
                raise TimeoutError(f"no PUBACK for {topic!r} within {timeout} s")
            return self._puback.pop(info.mid)

    def expect(self, predicate: Callable[[Received], bool], timeout: float = 5.0) -> Received:
        """The first message matching `predicate`; earlier non-matching ones are discarded."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching message within {timeout} s")
            try:
                msg = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if predicate(msg):
                return msg

    def collect_until(self, topic: str, payload: bytes, timeout: float = 5.0) -> list[Received]:
        """Every message received before the sentinel (`topic`, `payload`), which is not included."""
        seen: list[Received] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"sentinel {topic!r} did not arrive within {timeout} s; saw {seen}")
            try:
                msg = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if msg.topic == topic and msg.payload == payload:
                return seen
            seen.append(msg)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.asynccontextmanager
async def subscribed_admin_probe(broker: Broker, *topics: str) -> AsyncIterator[Probe]:
    """For async tests: a Probe connected as the broker's admin and subscribed to `topics` before it is
    handed out (the blocking paho calls run in a thread), closed afterwards."""
    p = Probe(broker, broker.admin_username, broker.admin_password)
    rc = await asyncio.to_thread(p.connect)
    assert rc == 0, f"the admin probe was refused: {rc}"
    try:
        for topic in topics:
            codes = await asyncio.to_thread(p.subscribe, topic)
            assert codes[0] < 0x80, f"subscription to {topic} refused"
        yield p
    finally:
        await asyncio.to_thread(p.close)


@contextlib.contextmanager
def connected_probe(
    broker: Broker, username: str | None = None, password: str | None = None, *, mqtt5: bool = True
) -> Iterator[Probe]:
    """A connected Probe (the broker's admin unless other credentials are given), closed afterwards."""
    if username is None:
        username, password = broker.admin_username, broker.admin_password
    probe = Probe(broker, username, password, mqtt5=mqtt5)
    rc = probe.connect()
    if rc != 0:
        raise ConnectionRefusedError(f"{username!r} refused by the broker: reason code {rc}")
    try:
        yield probe
    finally:
        probe.close()


def retained_payload(broker: Broker, topic: str, timeout: float = 5.0) -> bytes:
    """The payload the broker keeps retained on `topic`, as a new subscriber (the admin) receives it."""
    with connected_probe(broker) as probe:
        probe.subscribe(topic)
        return probe.expect(lambda m: m.topic == topic and m.retain, timeout).payload


def dynsec_call(probe: Probe, commands: list[dict[str, object]], timeout: float = 5.0) -> list[CommandResult]:
    """Send dynamic-security commands as `probe` (the admin) and return the plugin's answers in order.

    The probe must be subscribed to RESPONSE_TOPIC (see `admin_probe`). Each command is tagged with
    a correlationData so that answers to other requests are skipped.
    """
    tag = uuid.uuid4().hex
    tagged = [{**c, "correlationData": f"{tag}-{i}"} for i, c in enumerate(commands)]
    probe.publish(CONTROL_TOPIC, encode_request(tagged), qos=1, timeout=timeout)

    def ours(msg: Received) -> bool:
        if msg.topic != RESPONSE_TOPIC:
            return False
        results = parse_response(msg.payload)
        return bool(results) and (results[0].correlation_data or "").startswith(tag)

    return parse_response(probe.expect(ours, timeout).payload)


@contextlib.contextmanager
def admin_probe(broker: Broker) -> Iterator[Probe]:
    """The admin, connected and subscribed to the plugin's responses, ready for `dynsec_call`."""
    if not broker.dynsec:
        raise BrokerError("this broker has no dynamic-security plugin")
    with connected_probe(broker) as probe:
        codes = probe.subscribe(RESPONSE_TOPIC)
        if codes[0] >= 0x80:
            raise BrokerError(f"the admin may not subscribe to {RESPONSE_TOPIC}: reason code {codes[0]}")
        yield probe


def dynsec_ok(probe: Probe, commands: list[dict[str, object]], timeout: float = 5.0) -> list[CommandResult]:
    """`dynsec_call`, raising if any command failed."""
    results = dynsec_call(probe, commands, timeout)
    failed = [r for r in results if r.error is not None]
    if failed or len(results) != len(commands):
        raise BrokerError(f"dynamic-security commands failed: {failed or results}")
    return results


def docker_answers() -> bool:
    """Whether a Docker engine responds (the `docker` package comes with testcontainers)."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def start_container_broker() -> Broker:
    """testcontainers' Mosquitto (anonymous, no dynamic security); only call when `docker_answers()`."""
    try:
        from testcontainers.community.mqtt import MosquittoContainer
    except ImportError:
        from testcontainers.mqtt import MosquittoContainer

    container = MosquittoContainer()
    container.start()
    host = container.get_container_host_ip()
    port = int(container.get_exposed_port(1883))
    return broker_from_url(f"mqtt://{host}:{port}", on_stop=container.stop)


# Security tests need the broker the tests start themselves: an external one has unknown accounts.
requires_dynsec = pytest.mark.skipif(
    bool(os.environ.get(ENV_URL, "").strip()),
    reason=f"{ENV_URL} points at an external broker without the dynamic-security plugin",
)
