"""The simulated Bambu printer behaves as OpenBambuAPI describes a real one (checked with a bare paho
client, as any LAN-mode client would see it)."""

from __future__ import annotations

import json
import queue
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.mqtt.tls import printer_context
from tests.support.bambu import CANCEL_ERROR, BambuSetup, Timing, bambu_printers

SERIAL = "01P00A000000001"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[BambuSetup]:
    with bambu_printers(tmp_path / "bambu", [SERIAL], timing=Timing(0.05, 0.05, 0.05, 0.05, 0.2)) as s:
        yield s


class LanClient:
    def __init__(self, setup: BambuSetup, access_code: str, serial: str = SERIAL) -> None:
        ident = setup.identity(SERIAL)
        self.reports: queue.Queue[dict[str, Any]] = queue.Queue()
        self.rc: queue.Queue[int] = queue.Queue()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self.client.username_pw_set("bblp", access_code)
        self.client.tls_set_context(printer_context(serial, setup.vendor_ca.cert_pem, pinned=False))
        self.client.on_connect = lambda c, u, f, rc, p: self.rc.put(int(rc.value))
        self.client.on_message = lambda c, u, m: self.reports.put(json.loads(m.payload))
        self.subscribed: queue.Queue[bool] = queue.Queue()
        self.client.on_subscribe = lambda *_: self.subscribed.put(True)
        self.client.connect("127.0.0.1", ident.tls_port)
        self.client.loop_start()

    def request(self, body: dict[str, Any]) -> None:
        self.client.publish(f"device/{SERIAL}/request", json.dumps(body), qos=1)

    def next(self, predicate: Any = lambda r: True) -> dict[str, Any]:
        while True:
            report = self.reports.get(timeout=5)
            if predicate(report):
                return report

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_only_bblp_with_the_access_code_gets_in(setup: BambuSetup) -> None:
    wrong = LanClient(setup, "00000000")
    try:
        assert wrong.rc.get(timeout=5) == 135  # 3.1.1 "not authorised" (5), as paho 2 names it
    finally:
        wrong.close()
    right = LanClient(setup, "12345678")
    try:
        assert right.rc.get(timeout=5) == 0
    finally:
        right.close()


def test_the_certificate_names_the_serial(setup: BambuSetup) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match=r"Hostname mismatch.*'01P00A000000999'"):
        LanClient(setup, "12345678", serial="01P00A000000999")


def test_pushall_then_deltas_then_commands(setup: BambuSetup) -> None:
    lan = LanClient(setup, "12345678")
    printer = setup.printer(SERIAL)
    try:
        assert lan.rc.get(timeout=5) == 0
        lan.client.subscribe(f"device/{SERIAL}/report")
        lan.subscribed.get(timeout=5)  # a report published before the SUBACK would not reach us
        lan.request({"pushing": {"sequence_id": "1", "command": "pushall", "version": 1, "push_target": 1}})
        full = lan.next()["print"]
        assert full["command"] == "push_status" and full["gcode_state"] == "IDLE" and "ams" in full
        printer.start_print("benchy")
        prepare = lan.next()["print"]
        assert prepare["gcode_state"] == "PREPARE" and "ams" not in prepare  # a P1 sends what changed
        assert lan.next()["print"] == {
            "gcode_state": "RUNNING",
            "layer_num": 1,
            "command": "push_status",
            "msg": 1,
            "sequence_id": str(int(prepare["sequence_id"]) + 1),
        }
        lan.request({"print": {"sequence_id": "77", "command": "pause", "param": ""}})
        echo = lan.next()["print"]
        assert echo == {"sequence_id": "77", "command": "pause", "param": "", "result": "success", "reason": ""}
        assert lan.next()["print"]["gcode_state"] == "PAUSE"
        lan.request({"print": {"sequence_id": "78", "command": "pause", "param": ""}})
        assert lan.next()["print"]["result"] == "failed"
        printer.echo_result = False
        lan.request({"print": {"sequence_id": "79", "command": "stop", "param": ""}})
        assert lan.next()["print"] == {"sequence_id": "79", "command": "stop", "param": ""}
        stopped = lan.next()["print"]
        assert (stopped["gcode_state"], stopped["print_error"]) == ("FAILED", CANCEL_ERROR)
        assert lan.next()["print"]["print_error"] == 0
        assert printer.pushalls == 1
    finally:
        lan.close()
