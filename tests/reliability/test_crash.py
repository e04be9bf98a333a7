"""`kill -9` of `printbridge serve` during a burst of status messages and during an action: on restart the
database is intact (integrity check), every record is there once, and the in-flight command is a timeout."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bridge.mqtt.topics import Topics
from tests.reliability.serve import Served
from tests.support.agent import agent_message
from tests.support.broker import Broker, connected_probe


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_kill_9_during_burst_and_action_loses_and_duplicates_nothing(broker: Broker, tmp_path: Path) -> None:
    served = Served(broker, tmp_path, "pbcrash", PRINTBRIDGE_COMMAND_TIMEOUT_S="30")
    topics = Topics("pbcrash")
    served.start()
    try:
        ids = [served.request("POST", "/api/v1/printers/", json={"name": f"P{i}"}).json()["id"] for i in range(4)]
        with connected_probe(broker) as agent:  # the admin publishes for every printer and never acks
            agent.subscribe(topics.command(ids[0]))
            for n, pid in enumerate(ids):
                started = agent_message(ts=time.time(), event="PrintStarted", current_print_ts=1716904000 + n)
                agent.publish(topics.status(pid), msgspec.json.encode(started))

            def all_printing() -> list[dict[str, Any]] | None:
                body: list[dict[str, Any]] = served.request("GET", "/api/v1/printers/").json()
                return body if all(p["current_print"] for p in body) and len(body) == len(ids) else None

            before = {p["id"]: p for p in _wait(all_printing, 5, "every print")}

            def pause() -> None:
                with contextlib.suppress(httpx.HTTPError):  # the bridge dies under it: expected
                    served.request("POST", f"/api/v1/printers/{ids[0]}/pause_print", timeout=40)

            waiter = threading.Thread(target=pause, daemon=True)
            waiter.start()
            command = agent.expect(lambda m: m.topic == topics.command(ids[0]))
            cmd_id = msgspec.json.decode(command.payload)["cmd_id"]

            stop = threading.Event()
            sent = [0]

            def burst() -> None:
                i = 0
                while not stop.is_set():
                    for n, pid in enumerate(ids):
                        msg = agent_message(ts=time.time(), current_print_ts=1716904000 + n, completion=float(i % 100))
                        agent.client.publish(topics.status(pid), msgspec.json.encode(msg), qos=0)
                    i += 1
                    sent[0] = i * len(ids)
                    time.sleep(0.0005)

            burster = threading.Thread(target=burst, daemon=True)
            burster.start()
            _wait(lambda: sent[0] > 2000, 10, "the burst to get going")
            served.kill()
            stop.set()
            burster.join(5)
            waiter.join(5)
        print(f"\nkilled after {sent[0]} burst messages")

        (check,) = _rows(served.db, "PRAGMA integrity_check")[0]
        assert check == "ok"
        served.start()
        (check,) = _rows(served.db, "PRAGMA integrity_check")[0]
        assert check == "ok"

        after = {p["id"]: p for p in served.request("GET", "/api/v1/printers/").json()}
        assert sorted(after) == sorted(before)
        for pid, printer in before.items():
            again = after[pid]
            assert again["name"] == printer["name"]
            assert again["auth_token"] == printer["auth_token"]
            assert again["current_print"]["id"] == printer["current_print"]["id"]
            assert again["current_print"]["started_at"] == printer["current_print"]["started_at"]
        prints = _rows(served.db, "SELECT printer_id, ts, count(*) FROM prints GROUP BY printer_id, ts")
        assert sorted(prints) == sorted((pid, 1716904000.0 + n, 1) for n, pid in enumerate(ids))
        assert _rows(served.db, "SELECT username FROM users") == [("admin",)]
        commands = served.request("GET", f"/api/v1/printers/{ids[0]}/commands/").json()
        assert [(c["cmd_id"], c["cmd"], c["outcome"]) for c in commands] == [(cmd_id, "pause", "timeout")]
        assert commands[0]["error"] == "bridge stopped before the ack arrived"
        assert "in flight when the bridge last stopped" in served.stderr()
    finally:
        served.stop()
