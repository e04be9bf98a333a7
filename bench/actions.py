"""Actions through HTTP against bare MQTT command -> ack round trips, with the same agent.

    python -m bench.actions [--printers 100] [--sequential 300] [--duration 5]

The agent: one paho client (TCP_NODELAY, own process) that acks every command on its printer's ack topic.
Baseline: an aiomqtt client publishing commands (QoS 1) and awaiting the acks: sequentially (p50), and
with 100 in flight (acks/s). printbridge: `POST /api/v1/printers/{id}/pause_print` sequentially over a
kept-alive connection (p50), and with wrk -c100 over 100 printers (actions/s, every body checked for
`"succeeded":true`). Targets: p50 <= baseline p50 + 2 ms; actions/s >= 0.5 x baseline; zero errors.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing as mp
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    TOPICS,
    mosquitto,
    paho_client,
    percentile,
    print_table,
    result,
    run_wrk,
    seed_db,
    start_printbridge,
    stop_process,
    workdir,
)

LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) failures = 0; counter = 0 end
function request()
  counter = counter + 1
  return wrk.format("POST", "/api/v1/printers/" .. ((counter % PRINTERS) + 1) .. "/pause_print")
end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"succeeded":true', 1, true) then failures = failures + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("failures") end
  io.write("EXTRA failures=" .. total .. "\\n")
end
"""


def agent(port: int, ready: Any) -> None:
    """Acks every command at once, from paho's network thread."""
    client = paho_client(f"bench-agent-{time.time_ns()}")

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        printer = TOPICS.parse(msg.topic).printer_id  # type: ignore[union-attr]
        cmd_id = json.loads(msg.payload)["cmd_id"]
        ack = json.dumps({"cmd_id": cmd_id, "ok": True, "error": None}).encode()
        client.publish(TOPICS.ack(printer), ack, qos=1)

    def on_subscribe(*args: Any) -> None:
        ready.put(True)

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.subscribe(TOPICS.printer("+", "command"), qos=1)
    client.loop_forever()


async def bare_round_trips(port: int, printers: int, sequential: int, duration: float) -> tuple[list[float], float]:
    """(sequential latencies in ms, acks per second with `printers` in flight)."""
    import aiomqtt

    pending: dict[str, asyncio.Future[None]] = {}
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"bench-bare-rt-{time.time_ns()}",
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        max_inflight_messages=1000,
    ) as client:
        client.pending_calls_threshold = 100_000  # as printbridge: no warning per publish in flight
        await client.subscribe(TOPICS.printer("+", "ack"), qos=1)

        async def reader() -> None:
            async for message in client.messages:
                fut = pending.pop(json.loads(message.payload)["cmd_id"], None)  # type: ignore[arg-type,unused-ignore]
                if fut is not None and not fut.done():
                    fut.set_result(None)

        task = asyncio.create_task(reader())

        async def round_trip(printer: int) -> None:
            cmd_id = uuid.uuid4().hex
            fut = asyncio.get_running_loop().create_future()
            pending[cmd_id] = fut
            body: dict[str, Any] = {"cmd_id": cmd_id, "cmd": "pause", "args": {"retract": 6.5, "lift_z": 2.5}}
            body.update(initiator="api", ts=time.time())
            await client.publish(TOPICS.command(printer), json.dumps(body).encode(), qos=1)
            await asyncio.wait_for(fut, 5)

        for _ in range(20):
            await round_trip(1)
        latencies = []
        for _ in range(sequential):
            started = time.perf_counter()
            await round_trip(1)
            latencies.append((time.perf_counter() - started) * 1000)
        done = 0
        stop_at = time.perf_counter() + duration

        async def worker(printer: int) -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                await round_trip(printer)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(p) for p in range(1, printers + 1)))
        rate = done / (time.perf_counter() - started)
        task.cancel()
    return latencies, rate


def http_sequential(port: int, token: str, n: int) -> tuple[list[float], int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    latencies, errors = [], 0
    for i in range(n + 20):
        started = time.perf_counter()
        conn.request("POST", "/api/v1/printers/1/pause_print", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if i >= 20:
            latencies.append((time.perf_counter() - started) * 1000)
        if resp.status != 200 or not json.loads(body)["succeeded"]:
            errors += 1
    conn.close()
    return latencies, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--printers", type=int, default=100, help="printers, and actions in flight")
    parser.add_argument("--sequential", type=int, default=300, help="sequential round trips")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds with all printers in flight")
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    with workdir() as work, mosquitto(work) as broker:
        ready = ctx.Queue()
        agent_proc = ctx.Process(target=agent, args=(broker.port, ready), daemon=True)
        agent_proc.start()
        try:
            ready.get(timeout=30)
            base_lat, base_rate = asyncio.run(
                bare_round_trips(broker.port, args.printers, args.sequential, args.duration)
            )
            db = work / "actions.db"
            token = seed_db(db, args.printers)
            srv = start_printbridge(work, db, broker.url)
            try:
                our_lat, seq_errors = http_sequential(srv.port, token, args.sequential)
                script = Path(work / "actions.lua")
                script.write_text(LUA.replace("PRINTERS", str(args.printers)))
                wrk = run_wrk(
                    srv.url("/"), duration=args.duration, connections=args.printers, token=token, script=script
                )
            finally:
                stop_process(srv.process)
        finally:
            agent_proc.kill()
            agent_proc.join(timeout=10)
    errors = seq_errors + wrk.errors + int(wrk.extra.get("failures", "0"))
    base_p50, our_p50 = percentile(base_lat, 50), percentile(our_lat, 50)
    rate_ratio = wrk.rps / base_rate
    print_table(
        "action round trips: HTTP pause_print vs bare MQTT command -> ack, same agent",
        ["path", "sequential p50 ms", "sequential p99 ms", f"{args.printers} in flight /s", "errors"],
        [
            ["bare aiomqtt command -> ack", base_p50, percentile(base_lat, 99), base_rate, 0],
            ["printbridge HTTP action", our_p50, percentile(our_lat, 99), wrk.rps, errors],
        ],
    )
    p50_ok = our_p50 <= base_p50 + 2.0
    print(f"p50 {our_p50:.2f} ms vs baseline {base_p50:.2f} ms + 2 ms: {'ok' if p50_ok else 'too slow'}")
    ok = p50_ok and rate_ratio >= 0.5 and errors == 0
    return 0 if result("actions", rate_ratio, ">=0.5,p50<=base+2ms,0_errors", ok) else 1


if __name__ == "__main__":
    sys.exit(main())
