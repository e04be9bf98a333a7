"""The pause round trip of a Bambu printer through printbridge, against a bare client doing the same request
and confirmation against the same simulated printer.

    python -m bench.bambu_pause [--rounds 50]

The printer is the simulated one of tests/support/bambu.py, printing, with its state changes made at once
(no simulated motion delay), so that what is measured is the path, not the printer. Baseline: a paho client
on the printer's broker (TLS, certificate verified for the serial, TCP_NODELAY) publishes `print.pause` at
QoS 1 with a sequence_id and waits until it has seen both the echo with that sequence_id and a report with
`gcode_state` PAUSE; then resumes the same way (not timed). printbridge: `POST
/api/v1/printers/{id}/pause_print` on a kept-alive connection to `printbridge serve`, which does the same
and answers `succeeded: true`; then `resume_print` (not timed). Both run in alternation against the same
printer. Target: printbridge p50 <= baseline p50 + 2 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import mosquitto, percentile, print_table, result, start_printbridge, stop_process, workdir

SERIAL = "01P00A000000001"
CODE = "12345678"
MARGIN_MS = 2.0


class BareClient:
    """What any LAN-mode client does: request, then wait for the echo and the confirming state."""

    def __init__(self, port: int, ca_pem: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from bridge.mqtt.tls import printer_context

        self.reports: queue.Queue[dict[str, Any]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bare-{uuid.uuid4().hex[:8]}")
        self.client.username_pw_set("bblp", CODE)
        self.client.tls_set_context(printer_context(SERIAL, ca_pem, pinned=False))
        self.client.on_socket_open = lambda c, u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.on_message = lambda c, u, m: self.reports.put(json.loads(m.payload))
        subscribed = queue.Queue[bool]()
        self.client.on_subscribe = lambda *a: subscribed.put(True)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"device/{SERIAL}/report", qos=1)
        self.client.loop_start()
        subscribed.get(timeout=10)

    def command(self, command: str, wanted: str) -> float:
        """Milliseconds from publishing to having seen the echo and `gcode_state == wanted`."""
        while not self.reports.empty():
            self.reports.get_nowait()
        sequence_id = uuid.uuid4().hex
        body = json.dumps({"print": {"sequence_id": sequence_id, "command": command, "param": ""}})
        started = time.perf_counter()
        self.client.publish(f"device/{SERIAL}/request", body, qos=1)
        echoed = reached = False
        while not (echoed and reached):
            report = self.reports.get(timeout=10)["print"]
            if report.get("sequence_id") == sequence_id:
                if str(report.get("result", "success")).lower() != "success":
                    raise RuntimeError(f"the printer refused {command}: {report}")
                echoed = True
            elif echoed and report.get("command") == "push_status" and report.get("gcode_state") == wanted:
                reached = True  # after the echo: a report from before the request proves nothing
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def seed(db: Path, port: int, ca_pem: str) -> str:
    from bridge.state.store import Store

    store = Store(db)
    store.load()
    _, token = store.users.add("bench")
    owner = store.users.id_of("bench")
    assert owner is not None
    config = {"host": "127.0.0.1", "port": port, "serial": SERIAL, "access_code": CODE, "ca": ca_pem}
    store.printers.create(owner, "Bambu", {"dialect": "bambu", "dialect_config": config})
    store.flush()
    store.conn.close()
    return token


def action(conn: http.client.HTTPConnection, token: str, name: str) -> float:
    started = time.perf_counter()
    conn.request("POST", f"/api/v1/printers/1/{name}", headers={"Authorization": f"Bearer {token}"})
    body = json.loads(conn.getresponse().read())
    elapsed = (time.perf_counter() - started) * 1000
    if not body["succeeded"]:
        raise RuntimeError(f"{name}: {body['error']}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    from tests.support.bambu import Timing, start_bambu

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args(argv)
    instant = Timing(prepare_s=0.0, pause_s=0.0, resume_s=0.0, stop_s=0.0, clear_error_s=1.0)
    with workdir() as work, mosquitto(work) as broker:
        farm = start_bambu(work / "farm", [SERIAL], access_code=CODE, timing=instant)
        try:
            port, ca_pem = farm.identity(SERIAL).tls_port, farm.vendor_ca.cert_pem
            farm.printer(SERIAL).start_print("benchy")
            token = seed(work / "pause.db", port, ca_pem)
            srv = start_printbridge(work, work / "pause.db", broker.url)
            bare = BareClient(port, ca_pem)
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            try:
                deadline = time.monotonic() + 30
                while True:  # until the bridge sees the print running
                    conn.request("GET", "/api/v1/printers/1/", headers={"Authorization": f"Bearer {token}"})
                    status = json.loads(conn.getresponse().read())["status"]
                    if status is not None and status["state"]["text"] == "Printing":
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the bridge never saw the print: {status}")
                    time.sleep(0.1)
                bare_ms, bridge_ms = [], []
                for i in range(args.rounds + 5):  # the first 5 of each warm up
                    b = bare.command("pause", "PAUSE")
                    bare.command("resume", "RUNNING")
                    p = action(conn, token, "pause_print")
                    action(conn, token, "resume_print")
                    if i >= 5:
                        bare_ms.append(b)
                        bridge_ms.append(p)
            finally:
                conn.close()
                bare.close()
                stop_process(srv.process)
        finally:
            farm.stop()
    rows = [
        ["bare paho client (baseline)", percentile(bare_ms, 50), percentile(bare_ms, 95), max(bare_ms)],
        ["printbridge POST pause_print", percentile(bridge_ms, 50), percentile(bridge_ms, 95), max(bridge_ms)],
    ]
    print_table(
        f"pause round trip, request to confirming gcode_state (n={args.rounds})",
        ["path", "p50 ms", "p95 ms", "max ms"],
        rows,
    )
    base, ours = percentile(bare_ms, 50), percentile(bridge_ms, 50)
    ok = ours <= base + MARGIN_MS
    result("bambu_pause", ours / base if base > 0 else float("inf"), f"p50<=baseline+{MARGIN_MS:.0f}ms", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
