"""The Klippy stand-in with real Moonraker 0.11 (from `.venv-moonraker`) and a real broker, no printbridge: what
Moonraker publishes and answers over MQTT is what docs/moonraker.md describes, quirks included.
This is the ground the Moonraker dialect's tests stand on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.domain.moonraker_snippet import build_moonraker_snippet
from bridge.mqtt.jsonrpc import RpcReply, decode_reply, encode_request
from tests.support.broker import Broker, Received, connected_probe
from tests.support.moonraker import MessageLog, Moonraker, moonraker_binary, start_moonraker

INSTANCE = "standin/printers/1"


@pytest.fixture
def moonraker(broker: Broker, tmp_path: Path) -> Iterator[Moonraker]:
    assert moonraker_binary() is not None, "run `make install-moonraker` (make test does)"
    section = build_moonraker_snippet(
        f"mqtt://{broker.host}:{broker.port}", broker.admin_username or "", broker.admin_password or "", INSTANCE
    )
    m = start_moonraker(tmp_path / "moonraker", section)
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def log(broker: Broker, moonraker: Moonraker) -> Iterator[MessageLog]:
    with connected_probe(broker) as p:
        p.subscribe(f"{INSTANCE}/#")
        yield MessageLog(p)


def status_of(msg: Received) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(msg.payload)
    return doc["status"]


def klipper_status(log: MessageLog, predicate: Any = lambda s: True, timeout: float = 10.0) -> dict[str, Any]:
    msg = log.find(lambda m: m.topic == f"{INSTANCE}/klipper/status" and predicate(status_of(m)), timeout)
    return status_of(msg)


def rpc(log: MessageLog, method: str, request_id: str, params: dict[str, Any] | None = None) -> RpcReply:
    log.probe.publish(f"{INSTANCE}/moonraker/api/request", encode_request(method, request_id, params))
    msg = log.find(
        lambda m: m.topic == f"{INSTANCE}/moonraker/api/response" and json.loads(m.payload).get("id") == request_id
    )
    return decode_reply(msg.payload)


def print_state(status: dict[str, Any]) -> str | None:
    return status.get("print_stats", {}).get("state")


def test_online_snapshot_then_deltas_and_pause_confirmed_by_a_delta(log: MessageLog, moonraker: Moonraker) -> None:
    online = log.find(lambda m: m.topic == f"{INSTANCE}/moonraker/status")
    assert json.loads(online.payload) == {"server": "online"} and online.retain
    snapshot = klipper_status(log, lambda s: "webhooks" in s)
    assert snapshot["webhooks"] == {"state": "ready", "state_message": "Printer is ready"}
    assert snapshot["print_stats"]["state"] == "standby"
    assert set(snapshot["extruder"]) == {"temperature", "target"}  # only the configured fields

    moonraker.klippy.start_print("cube.gcode")
    started = klipper_status(log, lambda s: print_state(s) == "printing")
    assert started["print_stats"]["filename"] == "cube.gcode"

    log.mark()
    assert rpc(log, "printer.print.pause", "p-1").ok
    paused = klipper_status(log, lambda s: print_state(s) is not None)
    assert paused["print_stats"]["state"] == "paused" and paused["pause_resume"] == {"is_paused": True}

    # Klipper's quirk: "ok" to PAUSE when already paused, and no state change follows
    log.mark()
    assert rpc(log, "printer.print.pause", "p-2").ok
    assert rpc(log, "printer.objects.query", "q-1", {"objects": {"print_stats": ["state"]}}).result["status"] == {
        "print_stats": {"state": "paused"}
    }
    log.mark()
    assert rpc(log, "printer.print.resume", "r-1").ok
    assert print_state(klipper_status(log, lambda s: print_state(s) is not None)) == "printing"
    log.mark()
    assert rpc(log, "printer.print.cancel", "c-1").ok
    assert print_state(klipper_status(log, lambda s: print_state(s) is not None)) == "cancelled"


def test_a_pause_that_does_nothing_is_still_ok(log: MessageLog, moonraker: Moonraker) -> None:
    klipper_status(log, lambda s: "webhooks" in s)
    moonraker.klippy.start_print()
    moonraker.klippy.pause_macro_noop = True
    assert rpc(log, "printer.print.pause", "p-1").ok
    assert moonraker.klippy.snapshot()["print_stats"]["state"] == "printing"


def test_shutdown_startup_and_a_silent_disconnect(log: MessageLog, moonraker: Moonraker) -> None:
    klipper_status(log, lambda s: "webhooks" in s)
    moonraker.klippy.start_print()
    moonraker.klippy.shutdown("MCU 'mcu' shutdown: Timer too close")
    down = klipper_status(log, lambda s: s.get("webhooks", {}).get("state", "ready") != "ready")
    assert down["webhooks"]["state"] == "shutdown"
    reply = rpc(log, "printer.print.pause", "p-1")
    assert reply.code == 400 and reply.error is not None and "Printer is shutdown" in reply.error

    moonraker.klippy.set_startup()
    reply = rpc(log, "printer.print.resume", "r-1")
    assert reply.code == 400 and reply.error is not None and reply.error.startswith("Printer is not ready")

    moonraker.klippy.ready()
    klipper_status(log, lambda s: s.get("webhooks", {}).get("state") == "ready")
    moonraker.klippy.disconnect()
    # Nothing is said on MQTT; server.info and any Klippy request tell
    for attempt in range(200):  # Moonraker notices the closed socket within moments
        info = rpc(log, "server.info", f"i-{attempt}")
        if not info.result["klippy_connected"] and info.result["klippy_state"] == "disconnected":
            break  # (klippy_connected turns false a moment before klippy_state follows)
    assert (info.result["klippy_connected"], info.result["klippy_state"]) == (False, "disconnected")
    assert info.result["moonraker_version"]
    reply = rpc(log, "printer.print.pause", "p-2")
    assert (reply.code, reply.error) == (503, "Klippy Host not connected")

    log.mark()
    moonraker.klippy.reconnect()  # a new snapshot follows once Klippy is back
    assert klipper_status(log, lambda s: "webhooks" in s)["webhooks"]["state"] == "ready"


def test_moonraker_stopping_publishes_offline_retained(log: MessageLog, moonraker: Moonraker, broker: Broker) -> None:
    log.find(lambda m: m.topic == f"{INSTANCE}/moonraker/status" and b"online" in m.payload)
    moonraker.stop_moonraker()
    offline = log.find(lambda m: m.topic == f"{INSTANCE}/moonraker/status" and b"offline" in m.payload)
    assert json.loads(offline.payload) == {"server": "offline"}
    with connected_probe(broker) as late:  # retained: a bridge starting now learns it at once
        late.subscribe(f"{INSTANCE}/moonraker/status")
        retained = late.expect(lambda m: True)
        assert (retained.payload, retained.retain) == (b'{"server":"offline"}', True)


def test_replies_wait_behind_running_gcode_and_malformed_requests_get_errors(
    log: MessageLog, moonraker: Moonraker
) -> None:
    klipper_status(log, lambda s: "webhooks" in s)
    moonraker.klippy.start_print()
    moonraker.klippy.gcode_busy_s = 0.3
    log.mark()
    log.probe.publish(f"{INSTANCE}/moonraker/api/request", encode_request("printer.print.pause", "slow"))
    # the state changes only once the G-code ahead of it has run, and the "ok" comes with it
    paused = klipper_status(log, lambda s: print_state(s) not in (None, "printing"))
    assert print_state(paused) == "paused"
    reply = log.find(lambda m: m.topic.endswith("/api/response") and json.loads(m.payload).get("id") == "slow")
    assert decode_reply(reply.payload).ok
    log.probe.publish(f"{INSTANCE}/moonraker/api/request", b"{not json")
    parse_error = log.find(lambda m: m.topic.endswith("/api/response") and b"-32700" in m.payload)
    assert json.loads(parse_error.payload)["id"] is None
