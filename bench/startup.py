"""Start-up with 10,000 printers in the database: from spawning `printbridge serve` to `/health` 200.

    python -m bench.startup [--printers 10000] [--runs 3]

For reference, the bare Litestar app of bench/apps.py under uvicorn is timed the same way (spawn to
first 200). Target: printbridge ready <= 3 s (median of the runs).
"""

from __future__ import annotations

import argparse
import sys

from bench.common import (
    mosquitto,
    percentile,
    print_table,
    result,
    seed_db,
    start_baseline,
    start_printbridge,
    stop_process,
    wait_healthy,
    workdir,
)

LIMIT_S = 3.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--printers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    ours, bare = [], []
    with workdir() as work, mosquitto(work) as broker:
        db = work / "startup.db"
        seed_db(db, args.printers)
        for _ in range(args.runs):
            srv = start_printbridge(work, db, broker.url, wait=False)
            try:
                ours.append(wait_healthy(srv, work / f"printbridge-{srv.port}.log"))
            finally:
                stop_process(srv.process)
            base = start_baseline(work, {})
            bare.append(base.ready_s)
            stop_process(base.process)
    median = percentile(ours, 50)
    print_table(
        f"start-up to /health 200 with {args.printers:,} printers, {args.runs} runs",
        ["server", "median s", "max s"],
        [["printbridge serve", median, max(ours)], ["bare Litestar app (uvicorn)", percentile(bare, 50), max(bare)]],
    )
    return 0 if result("startup", median / LIMIT_S, "<=1.0(ready<=3s)", median <= LIMIT_S) else 1


if __name__ == "__main__":
    sys.exit(main())
