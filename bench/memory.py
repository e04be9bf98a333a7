"""Resident memory with 10,000 printers and their statuses, and the time of one GET of all 10,000.

    python -m bench.memory [--printers 10000] [--gets 10]

The database is seeded through the bridge's Store (one user owns every printer; each has a fresh
status and a print in progress). `printbridge serve` starts; RSS is read from /proc after every printer's
JSON has been served (the encoded cache is full). Targets: RSS <= 120 MiB; GET of all <= 60 ms (median,
measured by a Python client on a kept-alive connection, transfer included).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time

from bench.common import (
    mosquitto,
    percentile,
    print_table,
    result,
    rss_mib,
    seed_db,
    start_printbridge,
    stop_process,
    workdir,
)

RSS_LIMIT_MIB = 120.0
GET_LIMIT_MS = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--printers", type=int, default=10_000)
    parser.add_argument("--gets", type=int, default=10)
    args = parser.parse_args(argv)
    with workdir() as work, mosquitto(work) as broker:
        db = work / "memory.db"
        started = time.perf_counter()
        token = seed_db(db, args.printers)
        seed_s = time.perf_counter() - started
        srv = start_printbridge(work, db, broker.url)
        try:
            rss_start = rss_mib(srv.pid)
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            headers = {"Authorization": f"Bearer {token}"}
            times, size, count = [], 0, 0
            for i in range(args.gets + 1):
                t = time.perf_counter()
                conn.request("GET", "/api/v1/printers/", headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                elapsed = (time.perf_counter() - t) * 1000
                assert resp.status == 200, body[:200]
                if i == 0:
                    first_ms = elapsed
                    printers = json.loads(body)
                    count = len(printers)
                    with_status = sum(1 for p in printers if p["status"] is not None)
                else:
                    times.append(elapsed)
                size = len(body)
            conn.close()
            time.sleep(0.5)
            rss = rss_mib(srv.pid)
        finally:
            stop_process(srv.process)
    median = percentile(times, 50)
    print_table(
        f"memory and full list with {args.printers:,} printers (seeded in {seed_s:.1f} s)",
        [
            "printers listed",
            "with status",
            "list MiB",
            "RSS at start MiB",
            "RSS after GETs MiB",
            "first GET ms",
            "GET median ms",
            "GET max ms",
        ],
        [[count, with_status, size / 2**20, rss_start, rss, first_ms, median, max(times)]],
    )
    ok = count == args.printers and with_status == args.printers and rss <= RSS_LIMIT_MIB and median <= GET_LIMIT_MS
    print(f"RSS {rss:.1f} MiB (limit {RSS_LIMIT_MIB:g}); GET median {median:.1f} ms (limit {GET_LIMIT_MS:g})")
    return (
        0
        if result("memory", max(rss / RSS_LIMIT_MIB, median / GET_LIMIT_MS), "<=1.0(RSS<=120MiB,GET<=60ms)", ok)
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
