"""SIGTERM to `printbridge serve`: pending actions answered, `offline` published, writes flushed, exit 0 in 5 s."""

from __future__ import annotations

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


def test_sigterm_answers_pending_action_publishes_offline_and_flushes(broker: Broker, tmp_path: Path) -> None:
    served = Served(broker, tmp_path, "pbshut", PRINTBRIDGE_COMMAND_TIMEOUT_S="30")
    topics = Topics("pbshut")
    served.start()
    try:
        printer = served.request("POST", "/api/v1/printers/", json={"name": "Shut"}).json()
        pid = printer["id"]
        with connected_probe(broker) as agent:  # the admin plays a silent agent: it never acks
            agent.subscribe(topics.command(pid))
            agent.subscribe(topics.bridge_state)
            agent.publish(topics.status(pid), msgspec.json.encode(agent_message(ts=time.time(), event="PrintStarted")))
            deadline = time.monotonic() + 5
            while served.request("GET", f"/api/v1/printers/{pid}/").json()["current_print"] is None:
                assert time.monotonic() < deadline, "the print never showed up"
                time.sleep(0.02)

            answer: dict[str, Any] = {}

            def pause() -> None:
                try:
                    answer["response"] = served.request("POST", f"/api/v1/printers/{pid}/pause_print", timeout=20)
                except httpx.HTTPError as exc:
                    answer["error"] = repr(exc)

            waiter = threading.Thread(target=pause)
            waiter.start()
            agent.expect(lambda m: m.topic == topics.command(pid))
            last = agent_message(ts=time.time() + 1, completion=77.5)
            agent.publish(topics.status(pid), msgspec.json.encode(last))

            sent = time.monotonic()
            served.terminate()
            assert served.process is not None
            code = served.process.wait(10)
            took = time.monotonic() - sent
            waiter.join(5)
            print(f"\nSIGTERM -> exit {code} in {took:.2f} s")
            assert code == 0, served.stderr()
            assert took < 5.0
            assert "response" in answer, f"the pending action was dropped: {answer.get('error')}"
            response = answer["response"]
            assert response.status_code == 200
            assert response.json()["succeeded"] is False
            assert response.json()["error"] == "bridge shutting down"
            state = agent.expect(lambda m: m.topic == topics.bridge_state and m.payload == b"offline", 5)
            assert state.payload == b"offline"
        with connected_probe(broker) as late:  # the retained state says offline too
            late.subscribe(topics.bridge_state)
            retained = late.expect(lambda m: m.topic == topics.bridge_state)
            assert (retained.payload, retained.retain) == (b"offline", True)
        conn = sqlite3.connect(served.db)
        try:
            (status,) = conn.execute("SELECT status FROM printers WHERE id = ?", (pid,)).fetchone()
            assert msgspec.json.decode(status)["progress"]["completion"] == 77.5
            (outcome, error) = conn.execute("SELECT outcome, error FROM commands WHERE cmd = 'pause'").fetchone()
            assert (outcome, error) == ("timeout", "bridge shutting down")
        finally:
            conn.close()
    finally:
        served.stop()
