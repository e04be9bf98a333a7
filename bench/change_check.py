"""What the change check costs a request: `Bridge.catch_up()` (one `PRAGMA data_version`) when no other
process wrote, against the baseline of `bench.http_single`: what the server process spends on one request
to a bare Litestar app answering the same bytes from memory (uvicorn's CPU time during a wrk run, divided by
the requests it answered). Called in process beside it: the bare app and printbridge's fast path (the
check included), with no server around them.

    python -m bench.change_check [--printers 50] [--calls 20000] [--rounds 3] [--duration 3]

Target: the check costs at most 0.15 of the served bare Litestar request. The read targets ask printbridge
for at least 0.85 of that baseline's rate, so a check within 0.15 of its cost cannot by itself push a read
that met its target below it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    free_port,
    print_table,
    result,
    run_wrk,
    seed_db,
    start_baseline,
    stop_process,
    workdir,
)


def _best_us(rounds: int, calls: int, run: Any) -> float:
    """Best of `rounds` runs of `calls` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run(calls)
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--printers", type=int, default=50)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of the wrk run")
    args = parser.parse_args(argv)

    from bench.apps import baseline_app
    from bridge.app import create_app
    from bridge.config import MqttUrl, Settings

    with workdir() as work:
        db = work / "bench.db"
        token = seed_db(db, args.printers)
        # no broker: nothing here connects (the lifespan, which would, is not run)
        app = create_app(Settings(db_path=db, mqtt_url=MqttUrl.parse(f"mqtt://127.0.0.1:{free_port()}")))
        bridge = app.state.bridge
        bridge.store.load()  # what the lifespan does first; the MQTT link is not needed here
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/api/v1/printers/1/",
            "query_string": b"",
            "headers": [(b"authorization", f"Bearer {token}".encode())],
        }
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        def answer(asgi_app: Any) -> Callable[[int], None]:
            async def requests(n: int) -> None:
                for _ in range(n):
                    await asgi_app(scope, receive, send)
                sent.clear()

            return lambda n: asyncio.run(requests(n))

        def check(n: int) -> None:
            catch_up = bridge.catch_up
            for _ in range(n):
                catch_up()

        asyncio.run(app(scope, receive, send))
        assert sent[0]["status"] == 200 and len(sent) == 2, sent  # answered by the fast path
        body = sent[1]["body"]
        assert bridge.catch_up() is False
        sent.clear()
        (work / "single.json").write_bytes(body)
        os.environ["BENCH_BODY_SINGLE"] = str(work / "single.json")
        bare = baseline_app()
        asyncio.run(bare(scope, receive, send))
        assert sent[0]["status"] == 200 and sent[1]["body"] == body, sent
        sent.clear()

        check_us = _best_us(args.rounds, args.calls, check)
        ours_us = _best_us(args.rounds, args.calls, answer(app))
        bare_us = _best_us(args.rounds, args.calls, answer(bare))
        bridge.store.close()

        server = start_baseline(work, {"single": work / "single.json"})
        try:
            run_wrk(server.url("/api/v1/printers/1/"), duration=1)  # warm-up
            cpu_before = _cpu_s(server.pid)
            served = run_wrk(server.url("/api/v1/printers/1/"), duration=args.duration)
            served_us = (_cpu_s(server.pid) - cpu_before) / served.requests * 1e6
        finally:
            stop_process(server.process)

    ratio = check_us / served_us
    print_table(
        f"The change check per request ({args.printers} printers; in process: best of {args.rounds} x "
        f"{args.calls:,} calls; served: wrk -c32, {args.duration:g} s)",
        ["figure", "us per call"],
        [
            ["Bridge.catch_up(), nothing changed", f"{check_us:.2f}"],
            ["GET /api/v1/printers/1/, bare Litestar under uvicorn, server CPU (baseline)", f"{served_us:.2f}"],
            ["GET /api/v1/printers/1/, bare Litestar, in process", f"{bare_us:.2f}"],
            ["GET /api/v1/printers/1/, printbridge fast path (check included)", f"{ours_us:.2f}"],
        ],
    )
    return 0 if result("change_check", ratio, "<=0.15", ratio <= 0.15) else 1


if __name__ == "__main__":
    sys.exit(main())
