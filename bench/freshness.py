"""Freshness: publish -> visible in REST, p99, while 1,000 printers publish 1 status per second each.

    python -m bench.freshness [--printers 1000] [--seconds 20] [--publishers 2]

Background load: paho publishers in separate processes, 1,000 printers x 1 msg/s, QoS 1. A probe (a
paho client with TCP_NODELAY in this process) publishes a status with a new `_ts` for one printer at a
time and polls `GET /api/v1/printers/{id}/` on a kept-alive connection until it shows that `_ts`.
Target: p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import random
import sys
import time

from bench.common import (
    TOPICS,
    mosquitto,
    paho_client,
    percentile,
    print_table,
    result,
    seed_db,
    start_background_load,
    start_printbridge,
    status_message,
    stop_process,
    workdir,
)

TARGET_MS = 100.0


def probe(port: int, http_port: int, token: str, printers: int, seconds: float) -> list[float]:
    client = paho_client("bench-freshness-probe")
    client.connect("127.0.0.1", port)
    client.loop_start()
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    samples: list[float] = []
    rng = random.Random(7)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        pid = rng.randint(1, printers)
        ts = 2_000_000_000.0 + n  # newer than any background message
        started = time.perf_counter()
        client.publish(TOPICS.status(pid), status_message(ts), qos=1)
        while True:
            conn.request("GET", f"/api/v1/printers/{pid}/", headers=headers)
            body = conn.getresponse().read()
            status = json.loads(body)["status"]
            if status is not None and status["_ts"] == ts:
                break
            if time.perf_counter() - started > 5:
                raise RuntimeError(f"printer {pid}: status {ts} not visible after 5 s")
            time.sleep(0.0005)
        samples.append((time.perf_counter() - started) * 1000)
        time.sleep(0.02)
    client.loop_stop()
    client.disconnect()
    conn.close()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--printers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of background load")
    parser.add_argument("--publishers", type=int, default=2)
    args = parser.parse_args(argv)
    with workdir() as work, mosquitto(work) as broker:
        db = work / "fresh.db"
        token = seed_db(db, args.printers, with_status=False, with_print=False)
        srv = start_printbridge(work, db, broker.url)
        try:
            load = start_background_load(broker.port, list(range(1, args.printers + 1)), args.seconds, args.publishers)
            samples = probe(broker.port, srv.port, token, args.printers, max(1.0, args.seconds - 3.0))
            load.join(timeout=args.seconds + 60)
        finally:
            stop_process(srv.process)
    p50, p99, worst = percentile(samples, 50), percentile(samples, 99), max(samples)
    rate = load.rate
    print_table(
        f"freshness: publish -> visible in REST, {args.printers} printers x 1 msg/s background",
        ["samples", "background msg/s", "p50 ms", "p99 ms", "max ms", "target p99 ms"],
        [[len(samples), rate, p50, p99, worst, TARGET_MS]],
    )
    return 0 if result("freshness", p99 / TARGET_MS, "<=1.0(p99<=100ms)", p99 <= TARGET_MS) else 1


if __name__ == "__main__":
    mp.freeze_support()
    sys.exit(main())
