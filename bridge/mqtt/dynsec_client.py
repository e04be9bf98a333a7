"""Dynamic-security commands from a short-lived connection, for the command line.

The running bridge talks to the plugin over its own connection (`bridge.accounts`); a CLI command that
changes a printer's credentials connects once as the plugin's admin, sends the commands and waits for the
answer, so that the broker has the change before the command returns. paho's loop is run by hand in short
steps (`brokercheck.loop_until`): no network thread, and it returns as soon as the answer is in.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from bridge.mqtt.brokercheck import loop_until
from bridge.mqtt.dynsec import CONTROL_TOPIC, RESPONSE_TOPIC, CommandResult, encode_request, parse_response
from bridge.mqtt.tls import broker_context
from bridge.mqtt.url import MqttUrl

TIMEOUT_S = 3.0


def call_dynsec(
    url: MqttUrl, commands: list[dict[str, Any]], timeout: float = TIMEOUT_S, ca_file: Path | None = None
) -> list[CommandResult] | None:
    """The plugin's answers to `commands`, in order; None when the broker could not be reached, refused
    the login, or did not answer within `timeout` (no plugin, or not its admin)."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"printbridge-cli-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
    )
    client.connect_timeout = timeout
    if url.tls:
        client.tls_set_context(broker_context(ca_file))
    if url.username is not None:
        client.username_pw_set(url.username, url.password)
    tag = uuid.uuid4().hex
    state: dict[str, Any] = {}

    def on_connect(c: paho.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        state["connected"] = not rc.is_failure

    def on_subscribe(c: paho.Client, _u: object, _mid: int, rcs: list[ReasonCode], _p: object) -> None:
        state["subscribed"] = all(not rc.is_failure for rc in rcs)

    def on_message(c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        try:
            results = parse_response(msg.payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if results and (results[0].correlation_data or "").startswith(tag):
            state["answer"] = results

    deadline = time.monotonic() + timeout

    def run_until(key: str) -> bool:
        return loop_until(client, lambda: key in state, deadline) and bool(state[key])

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(url.host, url.port, keepalive=10)
    except (TimeoutError, OSError):
        return None
    try:
        if not run_until("connected"):
            return None
        client.subscribe(RESPONSE_TOPIC, qos=1)
        if not run_until("subscribed"):
            return None
        tagged = [{**c, "correlationData": f"{tag}-{i}"} for i, c in enumerate(commands)]
        client.publish(CONTROL_TOPIC, encode_request(tagged), qos=1)
        if not run_until("answer"):
            return None
        answer: list[CommandResult] = state["answer"]
        return answer
    finally:
        client.disconnect()
