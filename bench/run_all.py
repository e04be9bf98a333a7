"""Run every benchmark (`make bench`): each prints its table and one RESULT line; a summary follows.

    python -m bench.run_all [--only NAME,...]

Exit status 0 only when every RESULT is PASS.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

from bench.common import ROOT

BENCHMARKS = [
    "http_list",
    "http_single",
    "change_check",
    "ingest",
    "freshness",
    "actions",
    "memory",
    "startup",
    "stream",
    "moonraker",
    "bambu_fleet",
    "bambu_pause",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(unknown)}")
    summary: list[tuple[str, str, float]] = []
    for name in names:
        print(f"\n# {name}: python -m bench.{name}", flush=True)
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", f"bench.{name}"], cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=300
        )
        sys.stdout.write(proc.stdout)
        lines = re.findall(r"^RESULT .*$", proc.stdout, re.M)
        line = lines[-1] if lines else f"RESULT {name} ratio=nan target=? FAIL (exit {proc.returncode}, no RESULT)"
        summary.append((name, line, time.monotonic() - started))
    print("\n# summary\n")
    for _, line, seconds in summary:
        print(f"{line}   ({seconds:.0f} s)")
    return 0 if all(line.endswith("PASS") for _, line, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
