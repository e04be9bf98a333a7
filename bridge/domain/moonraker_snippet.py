"""The `[mqtt]` section of moonraker.conf that makes a Klipper printer's own Moonraker talk to printbridge. Pure.

Moonraker's MQTT client (`components/mqtt.py`) then publishes Klipper's status under `instance_name`, which is
the printer's own topic space (`{base}/printers/{id}`, SPEC 10), and takes JSON-RPC requests there.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from bridge.domain.klipper import STATUS_OBJECTS


def instance_name(base_topic: str, printer_id: int) -> str:
    return f"{base_topic}/printers/{printer_id}"


def build_moonraker_snippet(broker_url: str, username: str, password: str, instance: str) -> str:
    """An INI section Moonraker accepts as is. `broker_url` is `mqtt://host[:port]` or `mqtts://host[:port]`
    (the address printers reach the broker at); the password is an url-safe token (no INI or template syntax)."""
    parts = urlsplit(broker_url)
    tls = parts.scheme == "mqtts"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (8883 if tls else 1883)
    lines = [
        "[mqtt]",
        f"address: {host}",
        f"port: {port}",
        f"username: {username}",
        f"password: {password}",
        "mqtt_protocol: v3.1.1",
    ]
    if tls:
        lines.append("enable_tls: True")
    lines += [
        f"instance_name: {instance}",
        # QoS 1: a status change or a reply is not lost on a busy broker; the API follows default_qos
        "default_qos: 1",
        "status_objects:",
    ]
    lines += [f"  {name}={','.join(fields)}" for name, fields in STATUS_OBJECTS.items()]
    return "\n".join(lines) + "\n"
