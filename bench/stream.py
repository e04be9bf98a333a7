"""Event stream: 100 clients watching 1,000 printers that publish 1 status per second each.

    python -m bench.stream [--clients 100] [--printers 1000] [--seconds 20] [--client-processes 4]

Background load: paho publishers in separate processes, `--printers` printers x 1 msg/s, QoS 1 (as
bench.freshness). `--clients` stream clients (raw sockets, asyncio, in `--client-processes` processes) hold
`GET /api/v1/printers/stream/` open for the user who owns every printer, so each status is an event on
every stream. A probe publishes a status with a unique `_ts` on one of ten probe printers (not in the
background set, so that their newer `_ts` does not make the background messages out of order) twenty times
a second; each client notes when that `_ts` reaches it.

Targets: status message -> stream event p99 <= 50 ms over every (probe, client) pair; and ingest still
keeps up: every background message applied (the REST list shows each printer's last `_ts` once the
publishers stop) and every probe status seen by every client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import re
import sys
import time
from typing import Any

from bench.common import (
    BASE_TOPIC,
    http_get,
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

TARGET_MS = 50.0
PROBE_PRINTERS = 10
PROBE_RATE_PER_S = 20.0
PROBE_TS_BASE = 3_000_000_000.0
_PROBE_TS = re.compile(rb'"_ts":(3\d{9}(?:\.\d+)?)')


async def _one_client(port: int, token: str, ready: list[int], seen: dict[float, float], stop: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET /api/v1/printers/stream/ HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
    writer.write(request.encode())
    head = b""
    while b"event: printers" not in head or b"\n\n" not in head[head.index(b"event: printers") :]:
        head += await reader.read(1 << 20)  # the first event: the whole list
    ready[0] += 1
    tail = b""
    while not stop.is_set():
        try:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 0.25)
        except TimeoutError:
            continue
        if not chunk:
            raise RuntimeError("the bridge closed a stream")
        now = time.time()
        data = tail + chunk
        for match in _PROBE_TS.finditer(data):
            seen.setdefault(float(match.group(1)), now)
        tail = data[-48:]
    writer.close()


def clients_process(port: int, token: str, count: int, stop: Any, ready_q: Any, results_q: Any) -> None:
    async def main() -> list[dict[float, float]]:
        ready = [0]
        seen: list[dict[float, float]] = [{} for _ in range(count)]
        tasks = [asyncio.create_task(_one_client(port, token, ready, seen[i], stop)) for i in range(count)]
        while ready[0] < count:
            await asyncio.sleep(0.05)
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        ready_q.put(count)
        await asyncio.gather(*tasks)
        return seen

    results_q.put(asyncio.run(main()))


def probe(broker_port: int, first_id: int, seconds: float) -> dict[float, float]:
    """Publish a status with a unique `_ts` on the probe printers in turn; returns _ts -> publish time."""
    client = paho_client("bench-stream-probe")
    client.connect("127.0.0.1", broker_port)
    client.loop_start()
    published: dict[float, float] = {}
    n = 0
    next_at = time.monotonic()
    deadline = next_at + seconds
    while time.monotonic() < deadline:
        n += 1
        pid = first_id + n % PROBE_PRINTERS
        ts = PROBE_TS_BASE + n
        published[ts] = time.time()
        client.publish(f"{BASE_TOPIC}/printers/{pid}/status", status_message(ts), qos=1)
        next_at += 1.0 / PROBE_RATE_PER_S
        time.sleep(max(next_at - time.monotonic(), 0))
    client.loop_stop()
    client.disconnect()
    return published


def hub_cost_us(clients: int, changes: int = 50_000) -> float:
    """Microseconds one printer change costs the code that made it (ingest, an action) when `clients`
    streams of the printer's owner are open: the store's change listener marking it for each client."""
    import tempfile
    from pathlib import Path

    from bridge.http.live import LiveHub
    from bridge.http.readmodel import ReadModel
    from bridge.state.store import Store

    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "hub.db")
        store.load()
        owner, _ = store.users.add("bench")
        printers = [store.printers.create(owner, f"P{n}") for n in range(100)]
        hub = LiveHub(store, ReadModel(store.printers))
        store.listen(hub)
        subs = [hub.subscribe(owner) for _ in range(clients)]
        started = time.perf_counter()
        for n in range(changes):
            store.printers.touch(printers[n % 100])
        cost = (time.perf_counter() - started) / changes * 1e6
        for sub in subs:
            hub.unsubscribe(sub)
        store.close()
    return cost


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    import os

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--printers", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of background load")
    parser.add_argument("--publishers", type=int, default=2)
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    with workdir() as work, mosquitto(work) as broker:
        db = work / "stream.db"
        total = args.printers + PROBE_PRINTERS
        token = seed_db(db, total, with_status=False, with_print=False)
        srv = start_printbridge(work, db, broker.url)
        try:
            ready_q, results_q, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
            per = [
                args.clients // args.client_processes + (i < args.clients % args.client_processes)
                for i in range(args.client_processes)
            ]
            procs = [
                ctx.Process(target=clients_process, args=(srv.port, token, n, stop, ready_q, results_q), daemon=True)
                for n in per
                if n
            ]
            for p in procs:
                p.start()
            connected = sum(ready_q.get(timeout=120) for _ in procs)
            load = start_background_load(broker.port, list(range(1, args.printers + 1)), args.seconds, args.publishers)
            cpu_before, wall_before = cpu_seconds(srv.pid), time.monotonic()
            published = probe(broker.port, args.printers + 1, max(1.0, args.seconds - 3.0))
            cpu_share = (cpu_seconds(srv.pid) - cpu_before) / (time.monotonic() - wall_before)
            load.join(timeout=args.seconds + 60)
            # Every background message applied: each printer's last `_ts` (round k carries k + 1).
            last_ts = float(round(args.seconds))
            current = 0
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status, body = http_get(srv.port, "/api/v1/printers/", token)
                printers = json.loads(body) if status == 200 else []
                current = sum(1 for p in printers if p["id"] <= args.printers and p["status"]["_ts"] == last_ts)
                if current == args.printers:
                    break
                time.sleep(0.2)
            time.sleep(1.0)  # the last probe events reach the clients
            stop.set()
            seen_all: list[dict[float, float]] = []
            for _ in procs:
                seen_all.extend(results_q.get(timeout=60))
            for p in procs:
                p.join(timeout=10)
        finally:
            stop_process(srv.process)
    samples = [(recv - published[ts]) * 1000 for seen in seen_all for ts, recv in seen.items() if ts in published]
    expected = len(published) * connected
    missing = expected - len(samples)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    rate = load.rate
    print_table(
        "what a printer change costs its caller (in process, the store's change listener)",
        ["no stream open", "1 stream", f"{args.clients} streams of the owner"],
        [[f"{hub_cost_us(0):.2f} µs", f"{hub_cost_us(1):.2f} µs", f"{hub_cost_us(args.clients):.2f} µs"]],
    )
    print_table(
        f"stream: status -> event, {connected} clients x {total} printers, {args.printers} msg/s background",
        ["clients", "background msg/s", "applied (current)", "bridge CPU", "samples", "missing", "p50 ms", "p99 ms"],
        [[connected, rate, f"{current}/{args.printers}", f"{cpu_share:.0%}", len(samples), missing, p50, p99]],
    )
    ok = p99 <= TARGET_MS and current == args.printers and missing == 0 and connected == args.clients
    return 0 if result("stream", p99 / TARGET_MS, "<=1.0(p99<=50ms,all_applied,none_missing)", ok) else 1


if __name__ == "__main__":
    mp.freeze_support()
    sys.exit(main())
