"""Memory and CPU of the bridge with 200 Bambu printers connected (outbound TLS) at one report per second
each, against the same bridge with 200 agents of its own protocol publishing one status per second each.

    python -m bench.bambu_fleet [--printers 200] [--seconds 20]

The Bambu printers are the simulated ones of tests/support/bambu.py: one Mosquitto with a TLS listener and a
certificate per printer, and firmware (in this process) that sends each printer's delta report every second
(temperatures, and progress while printing; a quarter of them print). The bridge pins each certificate, asks
each printer once for everything, and holds 200 TLS sessions. Baseline: the same `printbridge serve` with 200
printers of the `printbridge` dialect whose agent messages (SPEC 5.2, ~600 bytes) arrive at 200/s through its
own broker. Both are measured over the same window after they have settled: the bridge's CPU time (user +
system, from /proc) and its resident memory. Targets (an outbound TLS session and a merged state per
printer cost something an inbound agent does not): CPU <= 2 x baseline, RSS <= baseline + 40 MiB.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
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

CPU_RATIO_LIMIT = 2.0
RSS_EXTRA_LIMIT_MIB = 40.0
CODE = "12345678"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed_bambu(db: Path, ports: dict[str, int]) -> str:
    from bridge.state.store import Store

    store = Store(db)
    store.load()
    _, token = store.users.add("bench")
    owner = store.users.id_of("bench")
    assert owner is not None
    for serial, port in ports.items():
        config = {"host": "127.0.0.1", "port": port, "serial": serial, "access_code": CODE}
        store.printers.create(owner, f"Bambu {serial}", {"dialect": "bambu", "dialect_config": config})
    store.flush()
    store.conn.close()
    return token


def states(port: int, token: str) -> list[str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/api/v1/printers/", headers={"Authorization": f"Bearer {token}"})
        body = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    return [(p["status"] or {}).get("state", {}).get("text") for p in body]


def measure(pid: int, seconds: float) -> tuple[float, float]:
    """(CPU % of one core, RSS MiB at the end) over `seconds`."""
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    return (cpu1 - cpu0) / (t1 - t0) * 100, rss_mib(pid)


def run_baseline(work: Path, printers: int, seconds: float) -> tuple[float, float]:
    with mosquitto(work) as broker:
        db = work / "baseline.db"
        seed_db(db, printers)
        srv = start_printbridge(work, db, broker.url)
        try:
            # The publishers run for settle + window; measure inside the window, from another thread.
            import threading

            out: dict[str, tuple[float, float]] = {}

            def window() -> None:
                time.sleep(5.0)
                out["m"] = measure(srv.pid, seconds)

            t = threading.Thread(target=window)
            rounds = int(seconds + 8)
            t.start()
            run_publishers(broker.port, list(range(1, printers + 1)), rounds, 2, rate_per_s=printers)
            t.join()
            return out["m"]
        finally:
            stop_process(srv.process)


def run_bambu(work: Path, printers: int, seconds: float) -> tuple[float, float, float]:
    from tests.support.bambu import start_bambu

    serials = [f"01P00A{n:09d}" for n in range(printers)]
    farm = start_bambu(work / "farm", serials, access_code=CODE, report_interval_s=1.0)
    try:
        for serial in serials[: printers // 4]:
            farm.printer(serial).start_print("benchy")
        with mosquitto(work) as broker:
            db = work / "bambu.db"
            token = seed_bambu(db, {s: farm.identity(s).tls_port for s in serials})
            started = time.monotonic()
            srv = start_printbridge(work, db, broker.url)
            try:
                deadline = time.monotonic() + 120
                while True:
                    texts = states(srv.port, token)
                    if all(t in ("Operational", "Printing") for t in texts) and len(texts) == printers:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"not every printer connected: {texts}")
                    time.sleep(0.5)
                connected_s = time.monotonic() - started
                time.sleep(5.0)  # settle: the pushall answers and the first reports are behind us
                cpu, rss = measure(srv.pid, seconds)
                pushalls = sum(farm.printer(s).pushalls for s in serials)
                if pushalls != printers:
                    raise RuntimeError(f"{pushalls} pushall requests for {printers} printers")
                return cpu, rss, connected_s
            finally:
                stop_process(srv.process)
    finally:
        farm.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--printers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    with workdir() as work:
        base_cpu, base_rss = run_baseline(work, args.printers, args.seconds)
        cpu, rss, connected_s = run_bambu(work, args.printers, args.seconds)
    rows: list[list[Any]] = [
        [f"printbridge agents, {args.printers} x 1 status/s (baseline)", base_cpu, base_rss, "-"],
        [f"Bambu printers, {args.printers} x 1 report/s, outbound TLS", cpu, rss, connected_s],
    ]
    print_table(
        f"{args.printers} printers at 1 message/s each, {args.seconds:.0f} s window",
        ["bridge", "CPU % of one core", "RSS MiB", "all connected after s"],
        rows,
    )
    ratio = cpu / base_cpu if base_cpu > 0 else float("inf")
    print(
        f"CPU ratio {ratio:.2f} (limit {CPU_RATIO_LIMIT}); RSS +{rss - base_rss:.1f} MiB (limit {RSS_EXTRA_LIMIT_MIB})"
    )
    ok = ratio <= CPU_RATIO_LIMIT and rss - base_rss <= RSS_EXTRA_LIMIT_MIB
    result("bambu_fleet", ratio, f"cpu<={CPU_RATIO_LIMIT}x,rss<=+{RSS_EXTRA_LIMIT_MIB:.0f}MiB", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
