"""Does the broker let anonymous clients publish to the bridge's topics? (README, Configuration)

Uses a short-lived paho client with MQTT 5, because only MQTT 5 tells a publisher that its publish was
denied (reason code 135); with 3.1.1 a denied publish is silently dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from bridge.mqtt.tls import broker_context
from bridge.mqtt.url import MqttUrl


def loop_until(client: paho.Client, done: Callable[[], bool], deadline: float) -> bool:
    """Run paho's loop in short steps until `done()` or the monotonic `deadline`, or the connection fails;
    whether `done()`."""
    while not done() and time.monotonic() < deadline:
        if client.loop(timeout=0.05) != paho.MQTT_ERR_SUCCESS:
            break
    return done()


def anonymous_can_publish(url: MqttUrl, topic: str, timeout: float = 3.0, ca_file: Path | None = None) -> bool | None:
    """True: an anonymous client's QoS 1 publish to `topic` was accepted. False: refused (at connect or
    publish). None: the broker could not be reached.

    Runs paho's loop by hand in short steps, so that it returns as soon as it knows (no network thread to
    join)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    if url.tls:
        client.tls_set_context(broker_context(ca_file))
    result: dict[str, bool] = {}

    def on_connect(c: paho.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        result["connect"] = not rc.is_failure

    def on_publish(c: paho.Client, _u: object, _mid: int, rc: ReasonCode, _p: object) -> None:
        result["publish"] = not rc.is_failure

    def run_until(key: str) -> bool:
        return loop_until(client, lambda: key in result, time.monotonic() + timeout)

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect(url.host, url.port, keepalive=10)
    except (TimeoutError, OSError):
        return None
    try:
        if not run_until("connect"):
            return None
        if not result["connect"]:
            return False
        client.publish(topic, b"", qos=1, retain=False)
        return run_until("publish") and result["publish"]
    finally:
        client.disconnect()
