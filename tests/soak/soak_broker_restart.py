"""Soak: restart the broker K times (default 5) under a `printbridge serve` subprocess while a printer publishes
status at 10 Hz, optionally keeping the broker down for a while to exercise the back-off. For each restart it
prints the time from "broker accepts connections again" to the bridge reconnected (/health) and to the first
status published after that moment being served by REST. Exit 1 if a status never arrives or the median is
over 2 s.

    .venv/bin/python -m tests.soak.soak_broker_restart [--restarts 5] [--down 0]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import httpx
import msgspec

from bridge.mqtt.topics import Topics
from tests.soak.common import admin_client, broker_and_bridge
from tests.support.agent import agent_message

BASE = "soakrestart"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--down", type=float, default=0.0, help="seconds the broker stays down each time")
    args = parser.parse_args()
    topics = Topics(BASE)
    with broker_and_bridge(BASE) as (broker, served):
        http = httpx.Client(base_url=served.url, headers=served.headers(), timeout=10)
        pid = http.post("/api/v1/printers/", json={"name": "restart"}).json()["id"]
        publisher = admin_client(broker, "soak-restart-pub")
        stop = threading.Event()
        seq = [0]

        def publish() -> None:
            while not stop.is_set():
                seq[0] += 1
                msg = agent_message(
                    ts=time.time(), completion=float(seq[0]), event="PrintStarted" if seq[0] == 1 else None
                )
                publisher.publish(topics.status(pid), msgspec.json.encode(msg), qos=1)
                stop.wait(0.1)

        thread = threading.Thread(target=publish)
        thread.start()
        reconnects: list[float] = []
        firsts: list[float] = []
        try:
            for i in range(args.restarts):
                time.sleep(1.0)
                broker.stop()
                time.sleep(args.down)
                broker._launch()
                back = time.monotonic()
                after_back = seq[0]  # statuses numbered above this were published after the broker was back
                reconnected = first = None
                deadline = back + 30
                while (reconnected is None or first is None) and time.monotonic() < deadline:
                    if reconnected is None and http.get("/health").json()["mqtt"] == "connected":
                        reconnected = time.monotonic() - back
                    status = http.get(f"/api/v1/printers/{pid}/").json()["status"]
                    if first is None and status and status["progress"]["completion"] > after_back:
                        first = time.monotonic() - back
                    time.sleep(0.005)
                print(
                    f"restart {i + 1}: bridge reconnected {reconnected:.3f} s, first new status in REST {first:.3f} s"
                    if reconnected is not None and first is not None
                    else f"restart {i + 1}: reconnected {reconnected}, first status {first}"
                )
                if reconnected is None or first is None:
                    return 1
                reconnects.append(reconnected)
                firsts.append(first)
        finally:
            stop.set()
            thread.join(5)
            publisher.disconnect()
            publisher.loop_stop()
        print(
            f"\nRESULT restarts={args.restarts} down={args.down} s\n"
            f"  broker back -> bridge reconnected: median {statistics.median(reconnects):.3f} s, "
            f"max {max(reconnects):.3f} s\n"
            f"  broker back -> first status ingested: median {statistics.median(firsts):.3f} s, max {max(firsts):.3f} s"
        )
        return 0 if statistics.median(firsts) < 2.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
