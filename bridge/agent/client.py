"""The paho-mqtt client of an agent: `printer-{id}` with its auth token, an `offline` Will, TCP_NODELAY."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bridge.mqtt.dynsec import printer_username
from bridge.mqtt.tls import broker_context
from bridge.mqtt.topics import Topics


def set_nodelay(sock: Any) -> None:
    """Without TCP_NODELAY every MQTT round trip costs 40-90 ms (docs/mqtt.md)."""
    if isinstance(sock, socket.socket):  # ssl.SSLSocket is one too
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def nodelay_client(client_id: str, protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311) -> mqtt.Client:
    """A paho-mqtt 2 client that sets TCP_NODELAY on its socket."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    client.on_socket_open = lambda _client, _userdata, sock: set_nodelay(sock)
    return client


def agent_client(
    topics: Topics,
    printer_id: int,
    password: str,
    *,
    username: str | None = None,
    kind: str = "agent",
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
    tls: bool = False,
    ca: str | Path | None = None,
) -> mqtt.Client:
    """A client that logs in as the printer (`printer-{id}` unless `username`) with a retained `offline`
    Will on its availability topic; `kind` goes into the client id. With `tls` the broker's certificate and
    host name are verified against the system's authorities, or only the CA file `ca` (PRINTBRIDGE_MQTT_CA)."""
    client = nodelay_client(f"printer-{printer_id}-{kind}-{secrets.token_hex(3)}", protocol)
    client.username_pw_set(username if username is not None else printer_username(printer_id), password)
    client.will_set(topics.availability(printer_id), b"offline", qos=1, retain=True)
    if tls:
        client.tls_set_context(broker_context(Path(ca) if ca else None))
    return client
