"""Soak: N simulated printers (default 1,000) publish status at 1 Hz for M minutes (default 3) through a few
multi-printer paho clients (the broker's admin account), while REST clients read and run actions against a
`printbridge serve` subprocess. Prints messages published, lost, the backlog (how far REST lags behind the
publishers), action latencies and the bridge's memory at start and end. Exit 1 if anything was lost, an
action failed or timed out, or the backlog grew without bound.

    .venv/bin/python -m tests.soak.soak_load [--printers 1000] [--minutes 3] [--clients 8]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import httpx
import msgspec
import paho.mqtt.client as paho

from bridge.mqtt.topics import Topics
from tests.soak.common import admin_client, broker_and_bridge, rss_mib
from tests.support.agent import agent_message

BASE = "soak"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--printers", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--acting", type=int, default=5, help="printers whose agent acks the actions")
    args = parser.parse_args()
    topics = Topics(BASE)
    with broker_and_bridge(BASE, PRINTBRIDGE_COMMAND_TIMEOUT_S="5") as (broker, served):
        assert served.process is not None
        http = httpx.Client(base_url=served.url, headers=served.headers(), timeout=30)
        ids = [http.post("/api/v1/printers/", json={"name": f"soak-{i}"}).json()["id"] for i in range(args.printers)]
        acting = ids[: args.acting]
        # The acting printers' agent: acks every command at once.
        acker = admin_client(broker, "soak-acker")

        def ack(client: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
            pid = int(msg.topic.split("/")[2])
            cmd = msgspec.json.decode(msg.payload)
            client.publish(topics.ack(pid), msgspec.json.encode({"cmd_id": cmd["cmd_id"], "ok": True}), qos=1)

        acker.on_message = ack
        for pid in acting:
            acker.subscribe(topics.command(pid), qos=1)
        rss_start = rss_mib(served.process.pid)
        print(f"{args.printers} printers created; bridge RSS {rss_start:.1f} MiB", flush=True)

        stop = threading.Event()
        published = [0] * args.clients
        last_seq = [0]
        errors: list[str] = []

        def publisher(index: int) -> None:
            mine = ids[index :: args.clients]
            client = admin_client(broker, f"soak-pub-{index}")
            seq = 0
            start = time.monotonic()
            try:
                while not stop.is_set():
                    seq += 1
                    infos = []
                    for pid in mine:
                        event = "PrintStarted" if seq == 1 else None
                        msg = agent_message(ts=time.time(), completion=float(seq), event=event, settings=seq == 1)
                        infos.append(client.publish(topics.status(pid), msgspec.json.encode(msg), qos=1))
                    for info in infos:
                        info.wait_for_publish(30)
                    published[index] += len(infos)
                    if index == 0:
                        last_seq[0] = seq
                    delay = start + seq - time.monotonic()
                    if delay > 0:
                        stop.wait(delay)
            except Exception as exc:  # reported at the end
                errors.append(f"publisher {index}: {exc!r}")
            finally:
                client.disconnect()
                client.loop_stop()

        latencies: list[float] = []
        failed_actions: list[str] = []
        reads = [0]

        def rest_client() -> None:
            n = 0
            while not stop.is_set():
                http.get("/api/v1/printers/")
                http.get(f"/api/v1/printers/{ids[n % len(ids)]}/")
                reads[0] += 2
                pid = acting[n % len(acting)]
                name = "pause_print" if n % 2 == 0 else "resume_print"
                began = time.monotonic()
                body = http.post(f"/api/v1/printers/{pid}/{name}").json()
                latencies.append(time.monotonic() - began)
                if not body["succeeded"]:
                    failed_actions.append(f"{name} {pid}: {body['error']}")
                n += 1
                stop.wait(0.05)

        threads = [threading.Thread(target=publisher, args=(i,)) for i in range(args.clients)]
        threads.append(threading.Thread(target=rest_client))
        for t in threads:
            t.start()
        lags: list[int] = []
        deadline = time.monotonic() + args.minutes * 60
        try:
            while time.monotonic() < deadline:
                time.sleep(5)
                body = http.get("/api/v1/printers/").json()
                seen = min((p["status"] or {}).get("progress", {}).get("completion", 0) for p in body)
                lag = int(last_seq[0] - seen)
                lags.append(lag)
                print(
                    f"t={args.minutes * 60 - (deadline - time.monotonic()):5.0f} s published {sum(published)} "
                    f"backlog {lag} s actions {len(latencies)} RSS {rss_mib(served.process.pid):.1f} MiB",
                    flush=True,
                )
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        final = {
            p["id"]: (p["status"] or {}).get("progress", {}).get("completion")
            for p in http.get("/api/v1/printers/").json()
        }
        # Publishers stop at different rounds; each printer's last value is its publisher's last round.
        expected: dict[int, float] = {}
        for index in range(args.clients):
            rounds = published[index] // max(1, len(ids[index :: args.clients]))
            for pid in ids[index :: args.clients]:
                expected[pid] = float(rounds)
        settle = time.monotonic() + 10
        while time.monotonic() < settle and any(final.get(pid) != want for pid, want in expected.items()):
            time.sleep(0.2)
            final = {
                p["id"]: (p["status"] or {}).get("progress", {}).get("completion")
                for p in http.get("/api/v1/printers/").json()
            }
        lost = [pid for pid, want in expected.items() if final.get(pid) != want]
        rss_end = rss_mib(served.process.pid)
        p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
        worst = max(latencies, default=0.0) * 1000
        print(
            f"\nRESULT printers={args.printers} minutes={args.minutes} clients={args.clients}\n"
            f"  messages published (PUBACKed): {sum(published)}\n"
            f"  printers whose final status was lost or stale: {len(lost)}\n"
            f"  backlog (REST behind publishers, s): max {max(lags, default=0)}, last {lags[-1] if lags else 0}\n"
            f"  REST reads: {reads[0]}; actions: {len(latencies)}, failed {len(failed_actions)}, "
            f"p50 {p50:.1f} ms, max {worst:.1f} ms\n"
            f"  bridge RSS: start {rss_start:.1f} MiB, end {rss_end:.1f} MiB\n"
            f"  errors: {errors or 'none'}",
            flush=True,
        )
        acker.disconnect()
        acker.loop_stop()
        bounded = not lags or lags[-1] <= max(5, min(lags) + 5)
        return 0 if not lost and not failed_actions and not errors and bounded else 1


if __name__ == "__main__":
    raise SystemExit(main())
