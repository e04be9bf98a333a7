"""Bambu printers through the whole bridge (REST, Home Assistant state, events, commands), each against
the simulated printer of tests/support/bambu.py."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.bambu import FAILURE_ERROR, BambuSetup, Timing, bambu_printers
from tests.support.broker import Broker, Probe, connected_probe, subscribed_admin_probe
from tests.support.env import BridgeEnv, running_bridge, wait_for

SERIAL = "01P00A000000001"
PRINTBRIDGE = Path(sys.executable).with_name("printbridge")
CODE = "12345678"
FAST = Timing(prepare_s=0.05, pause_s=0.15, resume_s=0.1, stop_s=0.1, clear_error_s=0.3)


@pytest.fixture
def printer(tmp_path: Path) -> Iterator[BambuSetup]:
    with bambu_printers(tmp_path / "bambu", [SERIAL], access_code=CODE, timing=FAST) as setup:
        yield setup


@pytest.fixture
async def benv(broker: Broker, tmp_path: Path) -> AsyncIterator[BridgeEnv]:
    async with running_bridge(broker, tmp_path / "pb.db", reconnect_cap_s=0.2, command_timeout_s=3.0) as env:
        yield env


def bambu(setup: BambuSetup, serial: str = SERIAL, **changes: Any) -> dict[str, Any]:
    body = {"host": "127.0.0.1", "port": setup.identity(serial).tls_port, "serial": serial, "access_code": CODE}
    body.update(changes)
    return body


async def add(env: BridgeEnv, setup: BambuSetup, serial: str = SERIAL, **changes: Any) -> dict[str, Any]:
    return await env.create_printer(f"Bambu {serial[-3:]}", dialect="bambu", bambu=bambu(setup, serial, **changes))


async def state_text(env: BridgeEnv, printer_id: int) -> str | None:
    resp = await env.client.get(f"/api/v1/printers/{printer_id}/", headers=env.auth())
    if resp.status_code == 404:
        return None  # created by another process and not picked up yet
    assert resp.status_code == 200, resp.text
    status = resp.json()["status"]
    return None if status is None else status["state"]["text"]


async def until_state(env: BridgeEnv, printer_id: int, text: str, timeout: float = 10.0) -> None:
    async def check() -> bool:
        return await state_text(env, printer_id) == text

    await wait_for(check, timeout, f"state {text!r}")


class Watch:
    """Everything a probe receives, searched per topic without losing what another search skipped."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.log: list[tuple[str, bytes]] = []
        self.cursors: dict[str, int] = {}

    async def on(self, topic: str, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        i = self.cursors.get(topic, 0)
        while True:
            while i < len(self.log):
                got_topic, payload = self.log[i]
                i += 1
                if got_topic == topic and payload and predicate(doc := json.loads(payload)):
                    self.cursors[topic] = i
                    return doc  # type: ignore[no-any-return]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no message on {topic} matching within {timeout} s")
            try:
                msg = await asyncio.to_thread(self.probe.messages.get, True, remaining)
            except queue.Empty:
                continue
            self.log.append((msg.topic, msg.payload))


@asynccontextmanager
async def watching(env: BridgeEnv, *topics: str) -> AsyncIterator[Watch]:
    async with subscribed_admin_probe(env.broker, *topics) as p:
        yield Watch(p)


async def test_status_and_print_lifecycle_in_rest_and_home_assistant(benv: BridgeEnv, printer: BambuSetup) -> None:
    env = benv
    created = await add(env, printer)
    pid = created["id"]
    assert created["dialect"] == "bambu"
    assert CODE not in json.dumps(created)
    await until_state(env, pid, "Operational")
    body = await env.get_printer(pid)
    assert body["agent_name"] == "Bambu Lab (LAN mode)"
    assert body["status"]["temperatures"] == {
        "tool0": {"actual": 25.0, "target": 0.0},
        "bed": {"actual": 25.0, "target": 0.0},
    }
    assert CODE not in json.dumps(body)
    resp = await env.client.get(f"/api/v1/printers/{pid}/agent_config/", headers=env.auth())
    assert resp.status_code == 200, resp.text
    config = resp.json()
    port = printer.identity(SERIAL).tls_port
    assert config["dialect"] == "bambu" and config["printer_id"] == pid
    assert config["broker"] == {"url": f"mqtts://127.0.0.1:{port}", "username": "bblp", "password": ""}
    assert "LAN mode" in config["snippet"] and SERIAL in config["snippet"] and CODE not in resp.text
    sim = printer.printer(SERIAL)
    async with watching(env, env.topics.state(pid), env.topics.event(pid)) as w:
        sim.start_print("benchy")
        state = await w.on(env.topics.state(pid), lambda d: d["printing"] and d["state_text"] == "Printing")
        assert state["file"] == "benchy" and state["online"] is True
        assert state["time_left_s"] == 42 * 60
        started = await w.on(env.topics.event(pid), lambda d: d["event_type"] == "STARTED")
        assert started["print"]["filename"] == "benchy"
        muted = await env.action(pid, "mute_current_print")  # the actions that do not reach the printer
        assert muted["succeeded"] is True and muted["printer"]["current_print"]["alert_muted_at"] is not None
        await w.on(env.topics.state(pid), lambda d: d["muted"])
        assert (await env.action(pid, "acknowledge_alert"))["succeeded"] is True
        sim.push_delta(mc_percent=57, mc_remaining_time=12)
        state = await w.on(env.topics.state(pid), lambda d: d["progress"] == 57.0)
        assert state["time_left_s"] == 720
        sim.finish()
        ended = await w.on(env.topics.event(pid), lambda d: d["event_type"] == "ENDED")
        assert ended["print"]["finished_at"] is not None and ended["print"]["cancelled_at"] is None
        await w.on(env.topics.state(pid), lambda d: not d["printing"] and d["current_print_id"] is None)
    body = await env.get_printer(pid)
    assert body["current_print"] is None and body["status"]["state"]["text"] == "Operational"


async def test_pause_resume_cancel_confirmed(benv: BridgeEnv, printer: BambuSetup) -> None:
    env = benv
    pid = (await add(env, printer))["id"]
    await until_state(env, pid, "Operational")
    sim = printer.printer(SERIAL)
    sim.start_print("benchy")
    await until_state(env, pid, "Printing")
    paused = await env.action(pid, "pause_print")
    assert (paused["succeeded"], paused["error"]) == (True, None)
    assert paused["printer"]["status"]["state"]["text"] == "Paused"  # the confirming state, not just the echo
    assert paused["printer"]["current_print"]["filename"] == "benchy"
    resumed = await env.action(pid, "resume_print")
    assert (resumed["succeeded"], resumed["error"]) == (True, None)
    assert resumed["printer"]["status"]["state"]["text"] == "Printing"
    cancelled = await env.action(pid, "cancel_print")
    assert (cancelled["succeeded"], cancelled["error"]) == (True, None)
    body = await env.get_printer(pid)
    assert body["current_print"] is None
    prints = env.bridge.store.conn.execute(
        "SELECT cancelled_at, finished_at FROM prints WHERE printer_id = ?", (pid,)
    ).fetchall()
    assert len(prints) == 1 and prints[0][0] is not None and prints[0][1] is None  # a cancel, not a finish
    commands = (await env.client.get(f"/api/v1/printers/{pid}/commands/", headers=env.auth())).json()
    assert [(c["cmd"], c["outcome"]) for c in commands] == [
        ("cancel", "acked"),
        ("resume", "acked"),
        ("pause", "acked"),
    ]
    requests = [r["print"] for r in sim.requests if "print" in r]
    assert [r["sequence_id"] for r in requests] == [c["cmd_id"] for c in reversed(commands)]
    assert [r["command"] for r in requests] == ["pause", "resume", "stop"]


async def test_refused_commands(benv: BridgeEnv, printer: BambuSetup) -> None:
    env = benv
    pid = (await add(env, printer))["id"]
    await until_state(env, pid, "Operational")
    sim = printer.printer(SERIAL)
    sim.start_print("benchy")
    await until_state(env, pid, "Printing")
    not_paused = await env.action(pid, "resume_print")
    assert (not_paused["succeeded"], not_paused["error"]) == (False, "not paused")
    sim.refuse_next = "the printer is busy"
    refused = await env.action(pid, "pause_print")
    assert (refused["succeeded"], refused["error"]) == (False, "refused by the printer: the printer is busy")
    assert (await env.action(pid, "pause_print"))["succeeded"] is True
    already = await env.action(pid, "pause_print")
    assert (already["succeeded"], already["error"]) == (False, "already paused")
    commands = (await env.client.get(f"/api/v1/printers/{pid}/commands/", headers=env.auth())).json()
    assert commands[0]["outcome"] == "refused" and commands[0]["error"] == "already paused"
    sent = [r["print"]["command"] for r in sim.requests if "print" in r]
    assert sent == ["pause", "pause"]  # the refusals decided from the known state sent nothing


async def test_an_echo_without_result_and_a_state_that_does_not_follow(benv: BridgeEnv, printer: BambuSetup) -> None:
    env = benv
    pid = (await add(env, printer))["id"]
    await until_state(env, pid, "Operational")
    sim = printer.printer(SERIAL)
    sim.start_print("benchy")
    await until_state(env, pid, "Printing")
    sim.echo_result = False
    paused = await env.action(pid, "pause_print")
    assert (paused["succeeded"], paused["error"]) == (True, None)
    resumed = await env.action(pid, "resume_print")
    assert resumed["succeeded"] is True
    sim.ignore_commands = True  # the echo says nothing against it, and nothing happens
    stuck = await env.action(pid, "pause_print")
    assert (stuck["succeeded"], stuck["error"]) == (False, "printer did not pause: state is RUNNING")


async def test_a_failed_print_is_an_error_and_ends_the_print(benv: BridgeEnv, printer: BambuSetup) -> None:
    env = benv
    pid = (await add(env, printer))["id"]
    await until_state(env, pid, "Operational")
    sim = printer.printer(SERIAL)
    async with watching(env, env.topics.event(pid)) as w:
        sim.start_print("benchy")
        await w.on(env.topics.event(pid), lambda d: d["event_type"] == "STARTED")
        sim.fail(FAILURE_ERROR)
        await w.on(env.topics.event(pid), lambda d: d["event_type"] == "PRINTER_ERROR")
        ended = await w.on(env.topics.event(pid), lambda d: d["event_type"] == "ENDED")
        assert ended["print"]["cancelled_at"] is not None
    status = (await env.get_printer(pid))["status"]
    assert status["state"]["text"] == "Error: print failed (print_error 0700_8011)"
    assert status["state"]["flags"]["error"] is True
    assert status["errors"] == [{"source": "print_error", "code": "0700_8011", "value": FAILURE_ERROR}]


async def test_a_printer_that_goes_away_and_comes_back(benv: BridgeEnv, printer: BambuSetup) -> None:
    env = benv
    pid = (await add(env, printer))["id"]
    await until_state(env, pid, "Operational")
    await asyncio.to_thread(printer.power_off)

    async def offline() -> bool:
        return (await env.get_printer(pid))["status"] is None

    await wait_for(offline, 10, "the printer offline")
    refused = await env.action(pid, "pause_print")
    assert refused["succeeded"] is False
    await asyncio.to_thread(printer.power_on)
    await until_state(env, pid, "Operational")
    assert printer.printer(SERIAL).pushalls == 1  # within five minutes: not asked again


async def test_a_wrong_access_code_is_reported_and_can_be_changed(
    benv: BridgeEnv, printer: BambuSetup, caplog: pytest.LogCaptureFixture
) -> None:
    env = benv
    caplog.set_level(logging.DEBUG)
    pid = (await add(env, printer, access_code="87654321"))["id"]

    async def refused() -> bool:
        text = await state_text(env, pid)
        return text is not None and "refused the access code" in text

    await wait_for(refused, 10, "the refusal in the status")
    resp = await env.client.patch(f"/api/v1/printers/{pid}/", json={"bambu": {"access_code": CODE}}, headers=env.auth())
    assert resp.status_code == 200, resp.text
    await until_state(env, pid, "Operational")
    assert env.bridge.store.printers.get(pid) is not None
    config = env.bridge.store.printers.get(pid).dialect_config  # type: ignore[union-attr]
    assert (config["host"], config["serial"], config["access_code"]) == ("127.0.0.1", SERIAL, CODE)
    assert "87654321" not in caplog.text and CODE not in caplog.text
    assert CODE not in resp.text


async def test_a_changed_certificate_is_refused(benv: BridgeEnv, printer: BambuSetup) -> None:
    env = benv
    pid = (await add(env, printer))["id"]
    await until_state(env, pid, "Operational")
    pinned = env.bridge.store.printers.get(pid).dialect_config["pinned"]  # type: ignore[union-attr]
    assert pinned == printer.identity(SERIAL).cert.read_text()
    await asyncio.to_thread(printer.replace_certificate, SERIAL, printer.vendor_ca.issue(SERIAL))

    async def refused() -> bool:
        text = await state_text(env, pid)
        return text is not None and "another certificate" in text

    await wait_for(refused, 10, "the changed certificate refused")
    # The owner says the printer really changed: the next certificate seen is pinned.
    resp = await env.client.patch(f"/api/v1/printers/{pid}/", json={"bambu": {"ca": None}}, headers=env.auth())
    assert resp.status_code == 200, resp.text
    await until_state(env, pid, "Operational")
    assert env.bridge.store.printers.get(pid).dialect_config["pinned"] != pinned  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"bambu": {"serial": SERIAL, "access_code": CODE}}, "bambu.host"),
        ({"bambu": {"host": "127.0.0.1", "access_code": CODE}}, "bambu.serial"),
        ({"bambu": {"host": "127.0.0.1", "serial": SERIAL}}, "bambu.access_code"),
        ({"bambu": {"host": "not a host!", "serial": SERIAL, "access_code": CODE}}, "bambu.host"),
        ({"bambu": {"host": "127.0.0.1", "serial": "01-P", "access_code": CODE}}, "bambu.serial"),
        ({"bambu": {"host": "127.0.0.1", "serial": SERIAL, "access_code": CODE, "port": 0}}, "bambu.port"),
        ({"bambu": {"host": "127.0.0.1", "serial": SERIAL, "access_code": CODE, "ca": "nope"}}, "bambu.ca"),
        ({"bambu": {"host": "127.0.0.1", "serial": SERIAL, "access_code": CODE, "pin": 1}}, "bambu.pin"),
        ({"bambu": "127.0.0.1"}, "bambu"),
        ({}, "bambu"),  # a Bambu printer without its settings
    ],
)
async def test_bad_bambu_settings_are_400_naming_the_field(env: BridgeEnv, body: dict[str, Any], field: str) -> None:
    resp = await env.client.post(
        "/api/v1/printers/", json={"name": "X1C", "dialect": "bambu", **body}, headers=env.auth()
    )
    assert resp.status_code == 400, resp.text
    assert field in resp.json()["detail"]
    assert CODE not in resp.text


async def test_patch_changes_only_the_fields_given(benv: BridgeEnv, printer: BambuSetup) -> None:
    env = benv
    pid = (await add(env, printer))["id"]
    await until_state(env, pid, "Operational")
    resp = await env.client.patch(f"/api/v1/printers/{pid}/", json={"bambu": {"port": 0}}, headers=env.auth())
    assert resp.status_code == 400 and "bambu.port" in resp.json()["detail"]
    resp = await env.client.patch(f"/api/v1/printers/{pid}/", json={"name": "Renamed"}, headers=env.auth())
    assert resp.status_code == 200
    config = env.bridge.store.printers.get(pid).dialect_config  # type: ignore[union-attr]
    assert config["access_code"] == CODE and "pinned" in config  # untouched, still pinned


async def test_fifty_bambu_printers_at_once(benv: BridgeEnv, tmp_path: Path) -> None:
    env = benv
    serials = [f"01P00A{n:09d}" for n in range(50)]
    with bambu_printers(tmp_path / "farm", serials, access_code=CODE, timing=FAST) as farm:
        ids = [(await add(env, farm, serial))["id"] for serial in serials]

        async def all_operational() -> bool:
            resp = await env.client.get("/api/v1/printers/", headers=env.auth())
            texts = {p["id"]: (p["status"] or {}).get("state", {}).get("text") for p in resp.json()}
            return all(texts.get(i) == "Operational" for i in ids)

        await wait_for(all_operational, 60, "50 printers connected")
        for serial in serials[:5]:
            farm.printer(serial).start_print(f"part-{serial[-2:]}")
        for pid in ids[:5]:
            await until_state(env, pid, "Printing")
        results = await asyncio.gather(*(env.action(pid, "pause_print") for pid in ids[:5]))
        assert all(r["succeeded"] for r in results), results
        assert sum(farm.printer(s).pushalls for s in serials) == 50


async def test_cli_adds_a_bambu_printer_that_the_running_bridge_connects_to(
    benv: BridgeEnv, printer: BambuSetup
) -> None:
    env = benv
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PRINTBRIDGE_")}
    environ["PRINTBRIDGE_DB"] = str(env.settings.db_path)
    port = str(printer.identity(SERIAL).tls_port)
    command = [str(PRINTBRIDGE), "printer", "add", "--owner", "alice", "--name", "P1S", "--dialect", "bambu"]
    command += ["--host", "127.0.0.1", "--port", port, "--serial", SERIAL, "--access-code", "-"]
    result = await asyncio.to_thread(
        subprocess.run, command, env=environ, input=CODE + "\n", capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["dialect"] == "bambu" and doc["bambu"] == {"host": "127.0.0.1", "serial": SERIAL, "port": int(port)}
    assert "mqtt" not in doc and CODE not in result.stdout + result.stderr
    assert doc["agent_config"]["broker"]["url"] == f"mqtts://127.0.0.1:{port}"
    await until_state(env, doc["id"], "Operational")  # picked up by the running bridge, no restart
    wrong = await asyncio.to_thread(
        subprocess.run,
        [str(PRINTBRIDGE), "printer", "add", "--owner", "alice", "--name", "X", "--host", "127.0.0.1"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert wrong.returncode == 2 and "--host: only for --dialect bambu" in wrong.stderr


async def test_failure_detection_pauses_a_bambu_printer(benv: BridgeEnv, printer: BambuSetup) -> None:
    """A detector publishes frames with the printer's own account on the bridge's broker (which for a Bambu
    printer allows exactly that and snapshots); a likely failure pauses the printer through its dialect."""
    from bridge.domain import detection as d

    env = benv
    created = await add(env, printer)
    pid = created["id"]
    await until_state(env, pid, "Operational")
    printer.printer(SERIAL).start_print("benchy")
    await until_state(env, pid, "Printing")
    state, frames = d.PredictionState(), [0.0] * 200  # a calm print first, then a spaghetti monster
    for p in frames:
        state = d.update_prediction(state, p)
    while not d.should_pause(state, 1.0):
        frames.append(1.0)
        state = d.update_prediction(state, 1.0)
    await wait_for(
        lambda: env.bridge.store.accounts.broker_tokens().get(pid) == created["auth_token"],
        10,
        "the printer's broker account",
    )
    username = f"printer-{pid}"
    with connected_probe(env.broker, username, created["auth_token"]) as detector:
        for p in frames:
            await asyncio.to_thread(detector.publish, env.topics.detection(pid), json.dumps({"p": p}))
        denied = await asyncio.to_thread(detector.publish, env.topics.status(pid), b"{}")
        assert denied == 135  # its account may not pose as an agent
    await until_state(env, pid, "Paused")
    commands = (await env.client.get(f"/api/v1/printers/{pid}/commands/", headers=env.auth())).json()
    assert [(c["cmd"], c["initiator"], c["outcome"]) for c in commands] == [("pause", "system", "acked")]
    body = await env.get_printer(pid)
    assert body["current_print"]["alerted_at"] is not None and body["normalized_p"] > 2 / 3


async def test_home_assistant_discovery_names_the_bambu_printer(benv: BridgeEnv, printer: BambuSetup) -> None:
    env = benv
    pid = (await add(env, printer))["id"]
    await until_state(env, pid, "Operational")
    async with watching(env, env.topics.ha_device_config(pid)) as w:
        config = await w.on(
            env.topics.ha_device_config(pid), lambda d: d["device"].get("model") == "Bambu Lab (LAN mode)"
        )
    assert config["device"]["identifiers"] == [f"printbridge_{pid}"]
    assert {"pause", "resume", "cancel"} <= {
        c.get("command_topic", "").rsplit("/", 1)[-1] for c in config["components"].values()
    }
    assert CODE not in json.dumps(config)


async def test_a_bridge_restarted_mid_print_keeps_the_print_and_the_pin(
    broker: Broker, printer: BambuSetup, tmp_path: Path
) -> None:
    db = tmp_path / "restart.db"
    sim = printer.printer(SERIAL)
    async with running_bridge(broker, db, reconnect_cap_s=0.2) as env:
        pid = (await add(env, printer))["id"]
        await until_state(env, pid, "Operational")
        sim.start_print("benchy", start_time=0)  # no gcode_start_time: the print is known by when it was seen
        await until_state(env, pid, "Printing")
        first = await env.get_printer(pid)
        pinned = env.bridge.store.printers.get(pid).dialect_config["pinned"]  # type: ignore[union-attr]
    async with running_bridge(broker, db, reconnect_cap_s=0.2) as env:
        await until_state(env, pid, "Printing")
        again = await env.get_printer(pid)
        assert again["current_print"]["id"] == first["current_print"]["id"]
        assert again["current_print"]["started_at"] == first["current_print"]["started_at"]
        assert env.bridge.store.printers.get(pid).dialect_config["pinned"] == pinned  # type: ignore[union-attr]
        paused = await env.action(pid, "pause_print")
        assert paused["succeeded"] is True
