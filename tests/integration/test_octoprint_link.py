"""The OctoPrint plugin's MQTT link against a real Mosquitto (no OctoPrint needed): TCP_NODELAY on its
socket (docs/mqtt.md), a retained `online` after connecting, and `offline` published on a clean stop."""

from __future__ import annotations

import socket
import threading

from octoprint_printbridge.link import MqttLink
from octoprint_printbridge.settings import DEFAULTS, parse_settings

from tests.support.broker import Broker, connected_probe, retained_payload


def test_link_sets_nodelay_announces_itself_and_says_offline_on_stop(broker: Broker) -> None:
    settings = parse_settings(
        {
            **DEFAULTS,
            "broker_url": f"mqtt://{broker.host}:{broker.port}",
            "printer_id": 41,
            "username": broker.admin_username or "",
            "password": broker.admin_password or "anonymous",
            "base_topic": "pblink",
        }
    )
    connected = threading.Event()
    received: list[tuple[str, bytes]] = []
    got_message = threading.Event()

    def on_message(topic: str, payload: bytes) -> None:
        received.append((topic, payload))
        got_message.set()

    link = MqttLink(settings, connected.set, on_message)
    link.start()
    try:
        assert connected.wait(10), link.last_error
        sock = link._client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert retained_payload(broker, "pblink/printers/41/availability") == b"online"
        with connected_probe(broker) as probe:
            probe.publish("pblink/printers/41/command", b'{"cmd_id": "x"}')
        assert got_message.wait(10)
        assert link.publish("pblink/printers/41/status", b"{}")
    finally:
        link.stop()
    assert received == [("pblink/printers/41/command", b'{"cmd_id": "x"}')]
    assert retained_payload(broker, "pblink/printers/41/availability") == b"offline"
    assert not link.publish("pblink/printers/41/status", b"{}")  # nothing is queued while disconnected
