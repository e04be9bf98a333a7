"""`GET /api/v1/printers/` (50 printers with full status) against a bare Litestar app returning the same
bytes from memory, on the same server, with wrk (32 connections).

    python -m bench.http_list [--printers 50] [--duration 5] [--rounds 2] [--servers uvicorn,granian]

Runs alternate printbridge / baseline `--rounds` times; each side's best run counts (shared machines
drift). Target: req/s >= 0.85 x baseline and p99 <= 2 x baseline p99, on printbridge's default server
(uvicorn with uvloop + httptools); other servers are measured for comparison.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from bench.common import (
    BIN,
    WrkResult,
    mosquitto,
    print_table,
    result,
    run_wrk,
    seed_db,
    start_baseline,
    start_printbridge,
    stop_process,
    workdir,
)
from bench.common import http_get as get

DEFAULT_SERVER = "uvicorn"


@dataclass
class Side:
    best: WrkResult | None = None
    p99_min: float = float("inf")
    errors: int = 0

    def add(self, r: WrkResult) -> None:
        if self.best is None or r.rps > self.best.rps:
            self.best = r
        self.p99_min = min(self.p99_min, r.p99_ms)
        self.errors += r.errors


def measure(kind: str, args: argparse.Namespace) -> dict[str, tuple[Side, Side]]:
    """For each server: (printbridge, baseline) sides."""
    out: dict[str, tuple[Side, Side]] = {}
    with workdir() as work, mosquitto(work) as broker:
        db = work / "bench.db"
        token = seed_db(db, args.printers)
        path = "/api/v1/printers/" if kind == "list" else "/api/v1/printers/1/"
        for server in args.servers:
            bridge = start_printbridge(work, db, broker.url, server=server)
            try:
                status, list_body = get(bridge.port, "/api/v1/printers/", token)
                assert status == 200, list_body[:200]
                status, single_body = get(bridge.port, "/api/v1/printers/1/", token)
                assert status == 200, single_body[:200]
                (work / "list.json").write_bytes(list_body)
                (work / "single.json").write_bytes(single_body)
                baseline = start_baseline(
                    work, {"list": work / "list.json", "single": work / "single.json"}, server=server
                )
                try:
                    _, base_body = get(baseline.port, path)
                    assert base_body == (list_body if kind == "list" else single_body)
                    ours, theirs = Side(), Side()
                    run_wrk(bridge.url(path), duration=1, token=token)  # warm-up
                    run_wrk(baseline.url(path), duration=1)
                    for _ in range(args.rounds):
                        ours.add(run_wrk(bridge.url(path), duration=args.duration, token=token))
                        theirs.add(run_wrk(baseline.url(path), duration=args.duration))
                    out[server] = (ours, theirs)
                finally:
                    stop_process(baseline.process)
            finally:
                stop_process(bridge.process)
    return out


def report(kind: str, args: argparse.Namespace, results: dict[str, tuple[Side, Side]], check_p99: bool) -> bool:
    rows = []
    for server, (ours, theirs) in results.items():
        assert ours.best and theirs.best
        rows.append(
            [
                server,
                ours.best.rps,
                theirs.best.rps,
                f"{ours.best.rps / theirs.best.rps:.3f}",
                ours.p99_min,
                theirs.p99_min,
                f"{ours.p99_min / theirs.p99_min:.2f}",
                ours.errors + theirs.errors,
            ]
        )
    what = f"{args.printers} printers" if kind == "list" else "one printer"
    print_table(
        f"GET {'/api/v1/printers/' if kind == 'list' else '/api/v1/printers/1/'} ({what}, full status), wrk "
        f"-c32, best of {args.rounds} x {args.duration:g} s",
        [
            "server",
            "printbridge req/s",
            "bare Litestar req/s",
            "ratio",
            "printbridge p99 ms",
            "bare p99 ms",
            "p99 ratio",
            "errors",
        ],
        rows,
    )
    if len(results) > 1:
        best = max(results, key=lambda s: results[s][0].best.rps)  # type: ignore[union-attr]
        print(f"fastest server for printbridge here: {best}")
    ours, theirs = results.get(DEFAULT_SERVER) or next(iter(results.values()))
    assert ours.best and theirs.best
    ratio = ours.best.rps / theirs.best.rps
    ok = ratio >= 0.85 and ours.errors == 0 and theirs.errors == 0
    target = ">=0.85"
    if check_p99:
        p99_ratio = ours.p99_min / theirs.p99_min
        print(f"p99 ratio {p99_ratio:.2f} (target <= 2.00)")
        ok = ok and p99_ratio <= 2.0
        target = ">=0.85,p99<=2x"
    return result(f"http_{kind}", ratio, target, ok)


def parse(argv: list[str] | None, default_printers: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--printers", type=int, default=default_printers)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2)
    default_servers = "uvicorn,granian" if (BIN / "granian").exists() else "uvicorn"
    parser.add_argument("--servers", default=default_servers, help="comma-separated: uvicorn, granian")
    args = parser.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv, 50)
    return 0 if report("list", args, measure("list", args), check_p99=True) else 1


if __name__ == "__main__":
    sys.exit(main())
