"""Shared by the soak scripts: a broker and a `printbridge serve` subprocess in a temporary folder."""

from __future__ import annotations

import contextlib
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.reliability.serve import Served
from tests.support.broker import Broker, broker_from_env, start_broker


@contextlib.contextmanager
def broker_and_bridge(base_topic: str, **env: str) -> Iterator[tuple[Broker, Served]]:
    with tempfile.TemporaryDirectory(prefix="printbridge-soak-") as tmp:
        workdir = Path(tmp)
        broker = broker_from_env() or start_broker(workdir / "mosquitto")
        served = Served(broker, workdir, base_topic, **env)
        try:
            served.start(timeout=30)
            yield broker, served
        finally:
            served.stop()
            broker.stop()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def admin_client(broker: Broker, name: str) -> paho.Client:
    """A connected paho client with the broker's admin account (it may publish for every printer)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv311)
    client.username_pw_set(broker.admin_username, broker.admin_password)
    client.max_inflight_messages_set(1000)
    client.reconnect_delay_set(0.05, 1)

    def nodelay(_c: paho.Client, _u: object, sock: object) -> None:
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client.on_socket_open = nodelay
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    return client
