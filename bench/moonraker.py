"""The pause round trip through printbridge and real Moonraker, against a bare MQTT client doing the same work.

    python -m bench.moonraker [--rounds 100]

Real Moonraker 0.11 (`.venv-moonraker`, `make install-moonraker`) configured with the `[mqtt]` section
printbridge gives, the Klippy stand-in of tests/support/klippy.py printing, Mosquitto (the benchmark
configuration) and `printbridge serve`.

Baseline: a paho client (TCP_NODELAY) does what a pause is: JSON-RPC `printer.print.pause` (at the QoS
printbridge uses for requests), waits for
Moonraker's "ok" and for the `klipper/status` delta saying `paused` (in either order); then resumes the same
way (not timed). printbridge: `POST /api/v1/printers/1/pause_print` over a kept-alive connection, which
answers `succeeded: true` only after the same "ok" and the same delta; then `resume_print` (not timed).
Target: p50 <= baseline p50 + 2 ms, every action succeeded.

Also reported (no target): the time from a Klipper state change (PAUSE from the printer's own screen) to
`GET /api/v1/printers/1/` showing `Paused`, against the same delta reaching a bare MQTT subscriber.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BASE_TOPIC,
    mosquitto,
    paho_client,
    percentile,
    print_table,
    result,
    seed_db,
    start_printbridge,
    stop_process,
    workdir,
)
from bridge.dialects.moonraker import REQUEST_QOS
from bridge.domain.moonraker_snippet import build_moonraker_snippet, instance_name
from tests.support.moonraker import Moonraker, moonraker_binary, start_moonraker

INST = instance_name(BASE_TOPIC, 1)


def make_moonraker_printer(db: Path) -> str:
    """The benchmark's database with printer 1 of dialect `moonraker` (and no print: Klipper opens it)."""
    token = seed_db(db, 1, with_status=False, with_print=False)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE printers SET dialect = 'moonraker' WHERE id = 1")
    return token


class Bare:
    """A paho client on the printer's Moonraker topics: JSON-RPC requests, and the state from the deltas."""

    def __init__(self, port: int) -> None:
        self.cond = threading.Condition()
        self.replies: dict[str, dict[str, Any]] = {}
        self.state: str | None = None
        self.state_at = 0.0  # perf_counter() of the last print_stats.state change seen
        self.client = paho_client(f"bench-bare-moonraker-{time.time_ns()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(f"{INST}/moonraker/api/response", 1), (f"{INST}/klipper/status", 1)])
        self.client.loop_start()
        self._seq = 0

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        body = json.loads(msg.payload)
        with self.cond:
            if msg.topic.endswith("/api/response"):
                if isinstance(body.get("id"), str):
                    self.replies[body["id"]] = body
            else:
                state = body["status"].get("print_stats", {}).get("state")
                if state is not None and state != self.state:
                    self.state, self.state_at = state, time.perf_counter()
            self.cond.notify_all()

    def wait(self, predicate: Any, timeout: float = 10.0) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise TimeoutError("no answer from Moonraker")

    def command(self, method: str, confirming: str) -> None:
        """A request, then both its "ok" and the delta with the confirming state."""
        self._seq += 1
        request_id = f"bare-{self._seq}"
        body = {"jsonrpc": "2.0", "method": method, "id": request_id}
        self.client.publish(f"{INST}/moonraker/api/request", json.dumps(body), qos=REQUEST_QOS)
        self.wait(lambda: request_id in self.replies and self.state == confirming)
        if self.replies.pop(request_id).get("result") != "ok":
            raise RuntimeError(f"{method} failed")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def bare_round_trips(bare: Bare, rounds: int) -> list[float]:
    latencies = []
    for i in range(rounds + 10):
        started = time.perf_counter()
        bare.command("printer.print.pause", "paused")
        if i >= 10:
            latencies.append((time.perf_counter() - started) * 1000)
        bare.command("printer.print.resume", "printing")
    return latencies


def http_action(conn: http.client.HTTPConnection, token: str, name: str) -> dict[str, Any]:
    conn.request("POST", f"/api/v1/printers/1/{name}", headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    body: dict[str, Any] = json.loads(resp.read())
    if resp.status != 200:
        raise RuntimeError(f"{name}: HTTP {resp.status} {body}")
    return body


def printbridge_round_trips(port: int, token: str, rounds: int) -> tuple[list[float], int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies, failures = [], 0
    for i in range(rounds + 10):
        started = time.perf_counter()
        paused = http_action(conn, token, "pause_print")
        if i >= 10:
            latencies.append((time.perf_counter() - started) * 1000)
        resumed = http_action(conn, token, "resume_print")
        failures += (not paused["succeeded"]) + (not resumed["succeeded"])
    conn.close()
    return latencies, failures


def state_text(conn: http.client.HTTPConnection, token: str) -> str | None:
    conn.request("GET", "/api/v1/printers/1/", headers={"Authorization": f"Bearer {token}"})
    body = json.loads(conn.getresponse().read())
    return None if body["status"] is None else str(body["status"]["state"]["text"])


def freshness(moonraker: Moonraker, bare: Bare, port: int, token: str, rounds: int) -> tuple[list[float], list[float]]:
    """(ms from a PAUSE on the printer to the delta at a bare subscriber, ms to REST showing Paused)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    to_mqtt, to_rest = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        moonraker.klippy.pause_locally()
        while state_text(conn, token) != "Paused":
            pass
        to_rest.append((time.perf_counter() - started) * 1000)
        bare.wait(lambda: bare.state == "paused")
        to_mqtt.append((bare.state_at - started) * 1000)
        http_action(conn, token, "resume_print")
        bare.wait(lambda: bare.state == "printing")
    conn.close()
    return to_mqtt, to_rest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100, help="timed pauses on each path")
    args = parser.parse_args(argv)
    if moonraker_binary() is None:
        raise SystemExit("moonraker is not installed: make install-moonraker")
    with workdir() as work, mosquitto(work) as broker:
        db = work / "moonraker.db"
        token = make_moonraker_printer(db)
        # the anonymous benchmark broker takes any login; the section is exactly the one printbridge gives
        section = build_moonraker_snippet(broker.url, "printer-1", "bench", INST)
        moonraker = start_moonraker(work / "moonraker", section)
        srv = start_printbridge(work, db, broker.url)
        bare = Bare(broker.port)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            deadline = time.monotonic() + 30
            while state_text(conn, token) != "Operational":
                if time.monotonic() > deadline:
                    raise RuntimeError("printbridge never showed the Moonraker printer")
                time.sleep(0.02)
            moonraker.klippy.start_print("bench.gcode")
            while state_text(conn, token) != "Printing":
                time.sleep(0.01)
            conn.close()
            bare.wait(lambda: bare.state == "printing")
            base = bare_round_trips(bare, args.rounds)
            ours, failures = printbridge_round_trips(srv.port, token, args.rounds)
            to_mqtt, to_rest = freshness(moonraker, bare, srv.port, token, max(10, args.rounds // 5))
        finally:
            bare.close()
            stop_process(srv.process)
            moonraker.stop()
    base_p50, our_p50 = percentile(base, 50), percentile(ours, 50)
    print_table(
        "pause round trip through Moonraker: request, Moonraker's ok and the confirming delta",
        ["path", "p50 ms", "p90 ms", "p99 ms", "failures"],
        [
            ["bare paho client", base_p50, percentile(base, 90), percentile(base, 99), 0],
            ["printbridge POST pause_print", our_p50, percentile(ours, 90), percentile(ours, 99), failures],
        ],
    )
    print_table(
        "Klipper state change (PAUSE on the printer) -> seen",
        ["where", "p50 ms", "p90 ms", "max ms"],
        [
            ["delta at a bare MQTT subscriber", percentile(to_mqtt, 50), percentile(to_mqtt, 90), max(to_mqtt)],
            ["printbridge REST shows Paused", percentile(to_rest, 50), percentile(to_rest, 90), max(to_rest)],
        ],
    )
    ok = our_p50 <= base_p50 + 2.0 and failures == 0
    print(f"p50 {our_p50:.2f} ms vs baseline {base_p50:.2f} ms + 2 ms: {'ok' if ok else 'too slow'}")
    return 0 if result("moonraker", our_p50 / base_p50, "p50<=base+2ms,0_failures", ok) else 1


if __name__ == "__main__":
    sys.exit(main())
