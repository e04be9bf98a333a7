"""Status messages absorbed per second: 1,000 printers, QoS 1, ~600-byte agent messages, published by
paho-mqtt clients in separate processes as fast as the broker takes them.

    python -m bench.ingest [--printers 1000] [--rounds 40] [--publishers 2]

Baseline: a bare aiomqtt subscriber (MQTT 3.1.1, TCP_NODELAY, `async for message in client.messages`)
that only decodes each message's JSON, on the same broker with the same publishers. Its rate is
messages / (last message received - first publish). printbridge's rate is messages / (the moment REST
shows every printer's last status - first publish). Target: >= 1.0 x baseline, every printer's latest
status correct at the end, and no backlog (REST is current within a second of the last publish).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import sys
import time
from typing import Any

from bench.common import (
    TOPICS,
    http_get,
    mosquitto,
    print_table,
    result,
    rss_mib,
    run_publishers,
    seed_db,
    start_printbridge,
    stop_process,
    workdir,
)

MAX_EXTRA_LAG_S = 1.0  # printbridge may finish at most this much later after the last publish than the baseline
MAX_RSS_GROWTH_MIB = 30.0  # bounded backlog: memory must not grow with the number of messages


def bare_subscriber(port: int, expected: int, ready: Any, results: Any, protocol: str = "3.1.1") -> None:
    """The baseline: a bare aiomqtt subscriber that decodes each message's JSON and counts."""
    import json

    import aiomqtt

    async def run() -> None:
        count = 0
        first = last = 0.0
        async with aiomqtt.Client(
            "127.0.0.1",
            port,
            identifier=f"bench-bare-{time.time_ns()}",
            protocol=aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            max_queued_incoming_messages=0,
        ) as client:
            await client.subscribe(TOPICS.printer("+", "status"), qos=1)
            ready.put(True)
            async for message in client.messages:
                json.loads(message.payload)  # type: ignore[arg-type,unused-ignore]
                count += 1
                if count == 1:
                    first = time.time()
                if count >= expected:
                    last = time.time()
                    break
        results.put((count, first, last))

    asyncio.run(run())


def run_baseline(
    port: int, printers: list[int], rounds: int, publishers: int, protocol: str = "3.1.1"
) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    expected = len(printers) * rounds
    sub = ctx.Process(target=bare_subscriber, args=(port, expected, ready, results, protocol), daemon=True)
    sub.start()
    ready.get(timeout=30)
    sent, first_pub, all_acked, _ = run_publishers(port, printers, rounds, publishers)
    count, _, last = results.get(timeout=120)
    sub.join(timeout=10)
    return {
        "sent": sent,
        "received": count,
        "seconds": last - first_pub,
        "publish_s": all_acked - first_pub,
        "lag_s": last - all_acked,
    }


def run_printbridge(
    work: Any, broker_url: str, port: int, n: int, rounds: int, publishers: int, protocol: str = "3.1.1"
) -> dict[str, Any]:
    db = work / "ingest.db"
    token = seed_db(db, n, with_status=False, with_print=False)
    srv = start_printbridge(work, db, broker_url, PRINTBRIDGE_HA_DISCOVERY="true", PRINTBRIDGE_MQTT_PROTOCOL=protocol)
    try:
        status, body = http_get(srv.port, "/api/v1/printers/", token)
        assert status == 200
        import json

        ids = sorted(p["id"] for p in json.loads(body))
        rss_before = rss_mib(srv.pid)
        marker = 1_000_000.0
        final = marker + rounds
        sent, first_pub, all_acked, _ = run_publishers(port, ids, rounds, publishers, marker=marker)
        end, current = None, 0
        deadline = time.time() + 60
        while time.time() < deadline:
            status, body = http_get(srv.port, "/api/v1/printers/", token)
            printers = json.loads(body)
            current = sum(1 for p in printers if p["status"] is not None and p["status"]["_ts"] == final)
            if current == len(ids):
                end = time.time()
                break
            time.sleep(0.02)
        rss_after = rss_mib(srv.pid)
        return {
            "sent": sent,
            "seconds": (end or time.time()) - first_pub,
            "publish_s": all_acked - first_pub,
            "lag_s": (end - all_acked) if end else float("inf"),
            "current": current,
            "printers": len(ids),
            "rss_before": rss_before,
            "rss_after": rss_after,
        }
    finally:
        stop_process(srv.process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--printers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=40, help="status messages per printer")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--trials", type=int, default=2, help="alternated runs of each side; the best counts")
    parser.add_argument("--protocol", choices=["3.1.1", "5"], default="3.1.1", help="MQTT version of both subscribers")
    args = parser.parse_args(argv)
    bases, ourses = [], []
    for _ in range(args.trials):  # alternated; each side's best trial counts (shared machines drift)
        with workdir() as work:
            with mosquitto(work) as broker:
                bases.append(
                    run_baseline(
                        broker.port, list(range(1, args.printers + 1)), args.rounds, args.publishers, args.protocol
                    )
                )
            with mosquitto(work) as broker:
                ourses.append(
                    run_printbridge(
                        work, broker.url, broker.port, args.printers, args.rounds, args.publishers, args.protocol
                    )
                )
    base = min(bases, key=lambda r: r["seconds"])
    ours = min(ourses, key=lambda r: r["seconds"])
    base_rate = base["sent"] / base["seconds"]
    our_rate = ours["sent"] / ours["seconds"]
    print_table(
        f"status messages absorbed, {args.printers} printers x {args.rounds}, QoS 1, MQTT {args.protocol}, "
        f"{args.publishers} publishers, "
        f"best of {args.trials}",
        ["subscriber", "messages", "seconds", "msg/s", "publishers done s", "lag after publish s", "RSS MiB"],
        [
            [
                "bare aiomqtt (decode JSON)",
                base["sent"],
                base["seconds"],
                base_rate,
                base["publish_s"],
                base["lag_s"],
                "-",
            ],
            [
                "printbridge (REST current)",
                ours["sent"],
                ours["seconds"],
                our_rate,
                ours["publish_s"],
                ours["lag_s"],
                f"{ours['rss_before']:.0f} -> {ours['rss_after']:.0f}",
            ],
        ],
    )
    correct = ours["current"] == ours["printers"]
    print(f"printers whose REST status is their last message: {ours['current']}/{ours['printers']}")
    ratio = our_rate / base_rate
    growth = ours["rss_after"] - ours["rss_before"]
    bounded = growth <= MAX_RSS_GROWTH_MIB and ours["lag_s"] <= base["lag_s"] + MAX_EXTRA_LAG_S
    print(
        f"RSS growth {growth:.1f} MiB (limit {MAX_RSS_GROWTH_MIB:g}); lag {ours['lag_s']:.2f} s (limit baseline + 1 s)"
    )
    ok = ratio >= 1.0 and correct and bounded and base["received"] == base["sent"]
    return 0 if result("ingest", ratio, ">=1.0,all_current,bounded", ok) else 1


if __name__ == "__main__":
    sys.exit(main())
