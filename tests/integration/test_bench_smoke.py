"""Smoke runs of the benchmarks (bench/): each script, with tiny parameters, runs to its end, prints a
table and a RESULT line. Nothing is asserted about the figures: `make bench` measures them.

The eight scripts run at the same time (each starts its own Mosquitto and servers on free ports), once
per module, so that together they add only a few seconds to the suite.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SMOKE_ARGS = {
    "http_list": ["--printers", "3", "--duration", "1", "--rounds", "1", "--servers", "uvicorn"],
    "http_single": ["--printers", "3", "--duration", "1", "--rounds", "1", "--servers", "uvicorn"],
    "change_check": ["--printers", "3", "--calls", "200", "--rounds", "1", "--duration", "1"],
    "ingest": ["--printers", "20", "--rounds", "5", "--publishers", "1", "--trials", "1"],
    "freshness": ["--printers", "20", "--seconds", "4", "--publishers", "1"],
    "actions": ["--printers", "5", "--sequential", "20", "--duration", "1"],
    "memory": ["--printers", "200", "--gets", "2"],
    "startup": ["--printers", "200", "--runs", "1"],
}
RESULT_LINE = re.compile(r"^RESULT (\w+) ratio=(\S+) target=(\S+) (PASS|FAIL)$", re.M)


@pytest.fixture(scope="module")
def smoke_runs() -> Iterator[dict[str, subprocess.CompletedProcess[str]]]:
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"bench.{name}", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in SMOKE_ARGS.items()
    }
    deadline = time.monotonic() + 100
    done: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    yield done


@pytest.mark.parametrize("name", sorted(SMOKE_ARGS))
def test_benchmark_runs_and_reports(smoke_runs: dict[str, subprocess.CompletedProcess[str]], name: str) -> None:
    run = smoke_runs[name]
    assert run.returncode in (0, 1), f"bench.{name} crashed (exit {run.returncode}):\n{run.stderr[-3000:]}"
    results = RESULT_LINE.findall(run.stdout)
    assert results, f"bench.{name} printed no RESULT line:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    assert run.stdout.rstrip().splitlines()[-1].startswith("RESULT "), "the RESULT line must come last"
    assert results[-1][0] in (name, f"http_{name.split('_')[-1]}")
    assert float(results[-1][1]) > 0
    assert (results[-1][3] == "PASS") == (run.returncode == 0)
    assert "|" in run.stdout, "no table printed"
