"""Klipper printers through real Moonraker 0.11 (its own MQTT client) and printbridge, end to end: Moonraker is
configured by exactly the `[mqtt]` section printbridge gives for the printer, Klippy is the stand-in
(tests/support/klippy.py), the broker is a real Mosquitto with dynamic security, and the bridge is the real
app. What a user sees is checked where a user sees it: the REST API, the Home Assistant state and event
topics, and the command history.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.dialects.moonraker import MoonrakerDialect
from bridge.domain.moonraker_snippet import instance_name
from tests.support.broker import Broker, connected_probe, requires_dynsec
from tests.support.env import BridgeEnv, running_bridge, wait_for
from tests.support.moonraker import MessageLog, Moonraker, moonraker_binary, start_moonraker

pytestmark = requires_dynsec


async def moonraker_printer(env: BridgeEnv, name: str = "Voron 2.4") -> tuple[dict[str, Any], str]:
    """A printer of dialect `moonraker` created through the API, its broker account in place, and the
    `[mqtt]` section printbridge gives for it."""
    printer = await env.create_printer(name, dialect="moonraker")
    assert printer["dialect"] == "moonraker"
    await wait_for(
        lambda: env.bridge.store.accounts.broker_tokens().get(printer["id"]) == printer["auth_token"],
        what="the printer's broker account",
    )
    return printer, await mqtt_section(env, printer)


async def mqtt_section(env: BridgeEnv, printer: dict[str, Any]) -> str:
    """The `[mqtt]` section printbridge gives for the printer (`agent_config`, SPEC 10), as a user pastes it."""
    resp = await env.client.get(f"/api/v1/printers/{printer['id']}/agent_config/", headers=env.auth())
    assert resp.status_code == 200, resp.text
    config: dict[str, Any] = resp.json()
    login = {"url": f"mqtt://{env.broker.host}:{env.broker.port}", "username": f"printer-{printer['id']}"}
    assert config["dialect"] == "moonraker"
    assert config["broker"] == {**login, "password": printer["auth_token"]}
    section: str = config["snippet"]
    assert f"instance_name: {instance_name(env.settings.base_topic, printer['id'])}\n" in section
    return section


class Klipper:
    """One Moonraker printer in a running bridge: REST, Moonraker with its Klippy stand-in, and a probe on the
    printer's Home Assistant state and event topics."""

    def __init__(
        self, env: BridgeEnv, printer: dict[str, Any], moonraker: Moonraker, log: MessageLog | None = None
    ) -> None:
        self.env = env
        self.printer = printer
        self.pid: int = printer["id"]
        self.moonraker = moonraker
        self.klippy = moonraker.klippy
        self.log = log

    async def rest(self) -> dict[str, Any]:
        return await self.env.get_printer(self.pid)

    async def until(self, predicate: Any, what: str, timeout: float = 10.0) -> dict[str, Any]:
        """The Printer object once `predicate(printer)` holds."""

        async def check() -> dict[str, Any] | None:
            body = await self.rest()
            return body if predicate(body) else None

        result: dict[str, Any] = await wait_for(check, timeout, what)
        return result

    async def until_text(self, text: str | None) -> dict[str, Any]:
        return await self.until(lambda p: state_text(p) == text, f"state text {text!r}")

    async def action(self, name: str) -> dict[str, Any]:
        return await self.env.action(self.pid, name)

    async def history(self) -> list[dict[str, Any]]:
        resp = await self.env.client.get(f"/api/v1/printers/{self.pid}/commands/", headers=self.env.auth())
        assert resp.status_code == 200, resp.text
        rows: list[dict[str, Any]] = resp.json()
        return rows

    async def ha_state(self, predicate: Any, what: str) -> dict[str, Any]:
        assert self.log is not None
        topic = self.env.topics.state(self.pid)
        msg = await asyncio.to_thread(
            self.log.find, lambda m: m.topic == topic and bool(m.payload) and predicate(json.loads(m.payload))
        )
        state: dict[str, Any] = json.loads(msg.payload)
        return state

    async def event(self, event_type: str) -> dict[str, Any]:
        assert self.log is not None
        topic = self.env.topics.event(self.pid)
        msg = await asyncio.to_thread(
            self.log.find, lambda m: m.topic == topic and json.loads(m.payload)["event_type"] == event_type
        )
        event: dict[str, Any] = json.loads(msg.payload)
        return event

    async def do(self, fn: Any, *args: Any) -> None:
        """A stand-in control (blocking: it waits until the change is pushed)."""
        await asyncio.to_thread(fn, *args)


def state_text(printer: dict[str, Any]) -> str | None:
    status = printer["status"]
    return None if status is None else status["state"]["text"]


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """`server.info` every 0.2 s (request it before the bridge starts, i.e. before `env` or `klipper`)."""
    monkeypatch.setattr(MoonrakerDialect, "poll_interval_s", 0.2)


@pytest.fixture
def no_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """No `server.info` poll during the test (request it before the bridge starts)."""
    monkeypatch.setattr(MoonrakerDialect, "poll_interval_s", 3600.0)


@pytest.fixture
async def klipper(env: BridgeEnv, tmp_path: Path) -> AsyncIterator[Klipper]:
    assert moonraker_binary() is not None, "run `make install-moonraker` (make test does)"
    printer, section = await moonraker_printer(env)
    with connected_probe(env.broker) as probe:
        probe.subscribe(f"{env.settings.base_topic}/printers/{printer['id']}/#")
        moonraker = await asyncio.to_thread(start_moonraker, tmp_path / "moonraker", section)
        try:
            k = Klipper(env, printer, moonraker, MessageLog(probe))
            await k.until_text("Operational")
            yield k
        finally:
            await asyncio.to_thread(moonraker.stop)


# -- status and the print's life cycle ---------------------------------------------------------------------


async def test_status_and_print_life_cycle_in_rest_and_home_assistant(klipper: Klipper) -> None:
    idle = await klipper.rest()
    assert idle["status"]["state"]["flags"]["ready"] is True
    assert idle["current_print"] is None
    assert idle["agent_name"] == "moonraker"
    await klipper.until(lambda p: p["agent_version"] is not None, "Moonraker's version from server.info")

    await klipper.do(klipper.klippy.start_print, "benchy.gcode")
    await klipper.do(klipper.klippy.set_progress, 0.25, 300.0)
    printing = await klipper.until(
        lambda p: state_text(p) == "Printing" and p["status"]["progress"]["completion"] >= 25, "printing at 25 %"
    )
    status = printing["status"]
    assert status["job"]["file"]["name"] == "benchy.gcode"
    assert status["state"]["flags"]["printing"] is True
    left = status["progress"]["printTimeLeft"]
    assert left is not None and 800 <= left <= 900  # Obico's estimate: 300 s for 25 % -> about 900 s in all
    assert set(status["temperatures"]) == {"tool0", "bed"}
    assert status["temperatures"]["tool0"]["target"] == 215.0
    current = printing["current_print"]
    assert current["filename"] == "benchy.gcode" and current["ended_at"] is None
    started = await klipper.event("STARTED")
    assert started["print"]["id"] == current["id"]

    ha = await klipper.ha_state(lambda s: s["printing"] and (s["progress"] or 0) >= 25, "HA: printing")
    assert (ha["online"], ha["state_text"], ha["file"]) == (True, "Printing", "benchy.gcode")
    assert ha["current_print_id"] == current["id"]
    assert ha["temperatures"]["bed"]["target"] == 60.0

    await klipper.do(klipper.klippy.finish_print)
    done = await klipper.until(lambda p: p["current_print"] is None, "the print closed")
    assert state_text(done) == "Operational"
    ended = await klipper.event("ENDED")
    assert ended["print"]["id"] == current["id"]
    assert ended["print"]["finished_at"] is not None and ended["print"]["cancelled_at"] is None
    await klipper.ha_state(lambda s: not s["printing"] and s["current_print_id"] is None, "HA: idle again")
    assert klipper.log is not None
    mirror = await asyncio.to_thread(
        klipper.log.find, lambda m: m.topic == klipper.env.topics.availability(klipper.pid)
    )
    assert mirror.payload == b"online"  # what Home Assistant's availability reads, kept by the bridge
    await asyncio.to_thread(discovered_as_moonraker, klipper)


def discovered_as_moonraker(klipper: Klipper) -> None:
    """Home Assistant's device for the printer names Moonraker as its model, with its version."""
    topic = klipper.env.topics.ha_device_config(klipper.pid)
    with connected_probe(klipper.env.broker) as probe:
        probe.subscribe(topic)
        doc = json.loads(probe.expect(lambda m: m.topic == topic and b'"model":"moonraker"' in m.payload).payload)
    assert doc["device"]["model"] == "moonraker"
    assert doc["device"]["sw_version"]


async def test_a_print_error_and_a_klipper_shutdown_fail_the_print(klipper: Klipper) -> None:
    await klipper.do(klipper.klippy.start_print, "a.gcode")
    first = (await klipper.until(lambda p: p["current_print"] is not None, "print opened"))["current_print"]
    await klipper.do(klipper.klippy.fail_print, "Move out of range: 0.000 0.000 -5.000")
    failed = await klipper.until(lambda p: p["current_print"] is None, "the failed print closed")
    assert state_text(failed) == "Error: Move out of range: 0.000 0.000 -5.000"
    ended = await klipper.event("ENDED")
    assert ended["print"]["id"] == first["id"] and ended["print"]["cancelled_at"] is not None
    await klipper.event("PRINTER_ERROR")

    klipper.log.mark()
    await klipper.do(klipper.klippy.start_print, "b.gcode")
    await klipper.until(lambda p: p["current_print"] is not None, "second print opened")
    await klipper.do(klipper.klippy.shutdown, "MCU 'mcu' shutdown: Timer too close")
    down = await klipper.until(lambda p: p["current_print"] is None, "the print closed by the shutdown")
    assert state_text(down) == "Error: MCU 'mcu' shutdown: Timer too close"
    assert down["status"]["state"]["flags"]["closedOrError"] is True
    assert (await klipper.event("ENDED"))["print"]["filename"] == "b.gcode"
    # Klipper shut down: nothing to pause
    result = await klipper.action("pause_print")
    assert (result["succeeded"], result["error"]) == (False, "not printing")


# -- actions ----------------------------------------------------------------------------------------------


async def test_pause_resume_cancel_are_acked_and_confirmed(klipper: Klipper) -> None:
    await klipper.do(klipper.klippy.start_print, "cube.gcode")
    await klipper.until_text("Printing")

    paused = await klipper.action("pause_print")
    assert (paused["succeeded"], paused["error"]) == (True, None)
    assert state_text(paused["printer"]) == "Paused"  # the answer shows the confirmed state
    assert klipper.klippy.snapshot()["print_stats"]["state"] == "paused"
    await klipper.event("PAUSED")

    resumed = await klipper.action("resume_print")
    assert (resumed["succeeded"], resumed["error"]) == (True, None)
    assert state_text(resumed["printer"]) == "Printing"
    await klipper.event("RESUMED")

    cancelled = await klipper.action("cancel_print")
    assert (cancelled["succeeded"], cancelled["error"]) == (True, None)
    assert cancelled["printer"]["current_print"] is None
    ended = await klipper.event("ENDED")
    assert ended["print"]["cancelled_at"] is not None

    history = await klipper.history()
    assert [(r["cmd"], r["initiator"], r["outcome"], r["error"]) for r in history] == [
        ("cancel", "api", "acked", None),
        ("resume", "api", "acked", None),
        ("pause", "api", "acked", None),
    ]
    assert all(r["latency_ms"] is not None for r in history)
    sent = [m for m in klipper.klippy.requests if m.startswith("pause_resume/")]
    assert sent == ["pause_resume/pause", "pause_resume/resume", "pause_resume/cancel"]


async def test_already_paused_and_not_paused_are_refused_without_sending(klipper: Klipper) -> None:
    await klipper.do(klipper.klippy.start_print)
    await klipper.until_text("Printing")
    not_paused = await klipper.action("resume_print")
    assert (not_paused["succeeded"], not_paused["error"]) == (False, "not paused")

    await klipper.do(klipper.klippy.pause_locally)  # from the printer's own screen
    await klipper.until_text("Paused")
    again = await klipper.action("pause_print")
    assert (again["succeeded"], again["error"]) == (False, "already paused")
    assert not [m for m in klipper.klippy.requests if m.startswith("pause_resume/")]
    history = await klipper.history()
    assert [(r["cmd"], r["outcome"], r["error"]) for r in history] == [
        ("pause", "refused", "already paused"),
        ("resume", "refused", "not paused"),
    ]


async def test_ok_without_the_state_change_is_not_success(klipper: Klipper) -> None:
    await klipper.do(klipper.klippy.start_print)
    await klipper.until_text("Printing")
    klipper.klippy.pause_macro_noop = True  # Klipper answers "ok" and keeps printing
    result = await klipper.action("pause_print")
    assert (result["succeeded"], result["error"]) == (False, "printer did not pause: state is printing")
    assert klipper.klippy.requests.count("pause_resume/pause") == 1
    row = (await klipper.history())[0]
    assert (row["cmd"], row["outcome"], row["error"]) == (
        "pause",
        "timeout",
        "printer did not pause: state is printing",
    )


async def test_a_reply_behind_running_gcode_still_confirms(klipper: Klipper) -> None:
    await klipper.do(klipper.klippy.start_print)
    await klipper.until_text("Printing")
    klipper.klippy.gcode_busy_s = 0.5  # a long G-code ahead: the "ok" and the state change wait for it
    result = await klipper.action("pause_print")
    assert (result["succeeded"], result["error"]) == (True, None)
    assert (await klipper.history())[0]["latency_ms"] >= 500


async def test_klippy_not_connected_fails_with_moonrakers_message(no_poll: None, klipper: Klipper) -> None:
    await klipper.do(klipper.klippy.start_print)
    await klipper.until_text("Printing")
    await klipper.do(klipper.klippy.disconnect)  # silent on MQTT: the status still says printing
    await asyncio.to_thread(wait_klippy_gone, klipper)
    assert state_text(await klipper.rest()) == "Printing"
    result = await klipper.action("pause_print")
    assert (result["succeeded"], result["error"]) == (False, "Klippy Host not connected")
    row = (await klipper.history())[0]
    assert (row["cmd"], row["outcome"], row["error"]) == ("pause", "refused", "Klippy Host not connected")


async def test_a_silent_klippy_disconnect_is_noticed_by_the_poll(fast_poll: None, klipper: Klipper) -> None:
    await klipper.do(klipper.klippy.start_print)
    printing = await klipper.until_text("Printing")
    await klipper.do(klipper.klippy.disconnect)
    # server.info (every 0.2 s here) tells: no status (offline); the print is still open, its fate unknown
    gone = await klipper.until(lambda p: p["status"] is None, "offline after the poll")
    assert gone["current_print"]["id"] == printing["current_print"]["id"]
    await klipper.ha_state(lambda s: not s["online"], "HA: not online")
    offline = await klipper.action("pause_print")
    assert (offline["succeeded"], offline["error"]) == (False, "printer offline")

    await klipper.do(klipper.klippy.reconnect)
    back = await klipper.until_text("Printing")
    assert back["current_print"]["id"] == printing["current_print"]["id"]


async def test_an_idle_printer_does_not_go_stale_while_moonraker_answers(fast_poll: None, klipper: Klipper) -> None:
    """Klipper idle publishes nothing; the answers to server.info keep the status fresh, well past the TTL."""
    klipper.klippy.periodic = False  # not even the clocks: nothing at all from Klipper
    rec = klipper.env.bridge.store.printers.get(klipper.pid)
    assert rec is not None
    ttl = klipper.env.settings.status_ttl_s
    for _ in range(3):
        klipper.env.clock.advance(ttl * 0.6)
        heard = klipper.env.clock()
        await wait_for(lambda at=heard: (rec.status_received_at or 0) >= at, what="an answer to server.info")
        assert state_text(await klipper.rest()) == "Operational"


def wait_klippy_gone(klipper: Klipper) -> None:
    """Until Moonraker itself has noticed the closed socket (asked over MQTT as the broker's admin)."""
    inst = instance_name(klipper.env.settings.base_topic, klipper.pid)
    with connected_probe(klipper.env.broker) as probe:
        probe.subscribe(f"{inst}/moonraker/api/response")
        for attempt in range(500):
            request = {"jsonrpc": "2.0", "method": "server.info", "id": f"admin-{attempt}"}
            probe.publish(f"{inst}/moonraker/api/request", json.dumps(request))
            tag = f'"admin-{attempt}"'.encode()
            reply = json.loads(probe.expect(lambda m, tag=tag: tag in m.payload).payload)
            if not reply["result"]["klippy_connected"]:
                return
    raise AssertionError("Moonraker never noticed that Klippy went away")


async def test_moonraker_stopped_is_offline_and_back_when_it_starts(klipper: Klipper) -> None:
    await asyncio.to_thread(klipper.moonraker.stop_moonraker)
    gone = await klipper.until(lambda p: p["status"] is None, "offline")
    assert gone["status"] is None
    await klipper.ha_state(lambda s: not s["online"], "HA: offline")
    assert klipper.log is not None
    availability = await asyncio.to_thread(
        klipper.log.find, lambda m: m.topic == klipper.env.topics.availability(klipper.pid) and m.payload == b"offline"
    )
    assert availability.payload == b"offline"
    await asyncio.to_thread(klipper.moonraker.launch)
    await klipper.until_text("Operational")


async def test_bridge_restarted_mid_print_has_the_state_at_once(broker: Broker, tmp_path: Path) -> None:
    db = tmp_path / "printbridge.db"
    async with running_bridge(broker, db) as env:
        printer, section = await moonraker_printer(env)
        moonraker = await asyncio.to_thread(start_moonraker, tmp_path / "moonraker", section)
        settings = env.settings
        k = Klipper(env, printer, moonraker)
        await k.until_text("Operational")
        await k.do(moonraker.klippy.start_print, "long.gcode")
        opened = (await k.until_text("Printing"))["current_print"]
    try:
        # while the bridge is away, the print ends, another starts and is paused; then Klipper goes quiet
        await k.do(moonraker.klippy.standby)
        await k.do(moonraker.klippy.start_print, "next.gcode")
        await k.do(moonraker.klippy.pause_locally)
        moonraker.klippy.periodic = False  # from now on Klipper pushes nothing by itself: no delta will come
        queries = moonraker.klippy.requests.count("objects/query")
        async with running_bridge(broker, db, settings=settings) as again:
            k2 = Klipper(again, printer, moonraker)
            # the stored status said printing; only the query's answer can say paused
            now = await k2.until_text("Paused")
            assert moonraker.klippy.requests.count("objects/query") > queries
            assert now["current_print"]["filename"] == "next.gcode"
            assert now["current_print"]["id"] != opened["id"]
            history = await again.client.get(f"/api/v1/printers/{printer['id']}/", headers=again.auth())
            assert history.status_code == 200
    finally:
        await asyncio.to_thread(moonraker.stop)


# -- the broker ----------------------------------------------------------------------------------------------


async def test_moonrakers_topics_are_refused_to_another_printers_account(env: BridgeEnv) -> None:
    a, _ = await moonraker_printer(env, "A")
    b, _ = await moonraker_printer(env, "B")
    a_space = instance_name(env.settings.base_topic, a["id"])
    b_space = instance_name(env.settings.base_topic, b["id"])

    def check() -> None:
        with connected_probe(env.broker, f"printer-{b['id']}", b["auth_token"]) as probe:
            for leaf in ("moonraker/status", "klipper/status", "moonraker/api/response"):
                assert probe.publish(f"{a_space}/{leaf}", b"{}") == 135, leaf
                assert probe.publish(f"{b_space}/{leaf}", b"{}") == 0, leaf
            for leaf in ("status", "availability", "ack", "detection", "snapshot", "moonraker/api/request"):
                assert probe.publish(f"{b_space}/{leaf}", b"{}") == 135, leaf  # not Moonraker's
            assert probe.subscribe(f"{a_space}/moonraker/api/request")[0] >= 0x80
            assert probe.subscribe(f"{b_space}/moonraker/api/request")[0] < 0x80
            assert probe.subscribe(f"{b_space}/klipper/status")[0] >= 0x80
            assert probe.subscribe(f"{b_space}/command")[0] >= 0x80

    await asyncio.to_thread(check)


async def test_malformed_replies_and_deltas_are_dropped_without_harm(klipper: Klipper) -> None:
    await klipper.do(klipper.klippy.start_print, "m.gcode")
    before = await klipper.until_text("Printing")
    inst = instance_name(klipper.env.settings.base_topic, klipper.pid)
    inbound = klipper.env.bridge.inbound
    dropped = inbound.drops.total
    garbage = [
        ("klipper/status", b"not json"),
        ("klipper/status", b'{"eventtime": 1.0}'),
        ("klipper/status", b'{"eventtime": 1.0, "status": {"print_stats": {"state": 42}}}'),
        ("klipper/status", b'{"eventtime": 1.0, "status": {"print_stats": {"state": "standby"}, "extruder": 3}}'),
        ("moonraker/status", b'{"server": "maybe"}'),
        ("moonraker/api/response", b"{"),
    ]
    ignored = [
        ("moonraker/api/response", b'{"jsonrpc": "2.0", "result": "ok", "id": 42}'),  # another client's
        ("moonraker/api/response", b'{"jsonrpc": "2.0", "error": {"code": -32700, "message": "x"}, "id": null}'),
    ]

    def publish() -> None:
        with connected_probe(klipper.env.broker) as probe:
            for leaf, payload in garbage + ignored:
                probe.publish(f"{inst}/{leaf}", payload)

    await asyncio.to_thread(publish)
    await wait_for(lambda: inbound.drops.total >= dropped + len(garbage), what="the malformed messages dropped")
    after = await klipper.rest()
    assert state_text(after) == "Printing"
    assert after["current_print"]["id"] == before["current_print"]["id"]
    # and the printer still works
    result = await klipper.action("pause_print")
    assert (result["succeeded"], result["error"]) == (True, None)
    assert inbound.drops.total == dropped + len(garbage)


async def test_a_command_reply_that_is_malformed_leaves_the_command_to_time_out(env: BridgeEnv, tmp_path: Path) -> None:
    """Moonraker's reply is replaced by garbage carrying the command's id: dropped, and the action times out."""
    printer, section = await moonraker_printer(env)
    moonraker = await asyncio.to_thread(start_moonraker, tmp_path / "moonraker", section)
    inst = instance_name(env.settings.base_topic, printer["id"])
    try:
        k = Klipper(env, printer, moonraker)
        await k.until_text("Operational")
        await k.do(moonraker.klippy.start_print)
        await k.until_text("Printing")
        moonraker.klippy.gcode_busy_s = 30.0  # Moonraker's own reply will not come in time
        with connected_probe(env.broker) as probe:
            await asyncio.to_thread(probe.subscribe, f"{inst}/moonraker/api/request")
            action = asyncio.create_task(k.action("pause_print"))
            request = await asyncio.to_thread(probe.expect, lambda m: b"printer.print.pause" in m.payload)
            cmd_id = json.loads(request.payload)["id"]
            bad = {"jsonrpc": "2.0", "result": "ok", "error": {"code": 1, "message": "x"}, "id": cmd_id}
            await asyncio.to_thread(probe.publish, f"{inst}/moonraker/api/response", json.dumps(bad))
            result = await action
        assert (result["succeeded"], result["error"]) == (False, "timeout")
        assert env.bridge.inbound.drops.by_reason["moonraker/api/response"] == 1
    finally:
        await asyncio.to_thread(moonraker.stop)


# -- failure detection and the command line ------------------------------------------------------------------


async def test_a_detected_failure_pauses_through_moonraker_and_is_confirmed(klipper: Klipper) -> None:
    await klipper.do(klipper.klippy.start_print, "spaghetti.gcode")
    opened = (await klipper.until_text("Printing"))["current_print"]
    topic = klipper.env.topics.detection(klipper.pid)
    detector = klipper.env.bridge.detector
    frames = [b'{"p": 0.0}'] * 30 + [b'{"p": 20.0}']  # 30 calm frames, then one far in pause territory

    jpeg = b"\xff\xd8\xff\xe0" + b"frame" * 100

    def publish() -> None:
        with connected_probe(klipper.env.broker) as probe:  # a detector and camera, with credentials of their own
            probe.publish(klipper.env.topics.snapshot(klipper.pid), jpeg)
            for payload in frames:
                probe.publish(topic, payload)

    await asyncio.to_thread(publish)
    await wait_for(lambda: detector.frames >= len(frames), what="the frames counted")
    paused = await klipper.until(
        lambda p: state_text(p) == "Paused" and p["current_print"]["paused_at"] is not None, "paused by detection"
    )
    assert paused["current_print"]["id"] == opened["id"]
    assert paused["current_print"]["alerted_at"] is not None
    await klipper.event("FAILURE_ALERTED")

    async def outcome() -> dict[str, Any] | None:
        row = (await klipper.history())[0]
        return row if row["outcome"] is not None else None

    row = await wait_for(outcome, what="the automatic pause's outcome")
    assert (row["cmd"], row["initiator"], row["outcome"], row["error"]) == ("pause", "system", "acked", None)
    assert klipper.klippy.snapshot()["print_stats"]["state"] == "paused"
    pic = await klipper.env.client.get(f"/api/v1/printers/{klipper.pid}/pic", headers=klipper.env.auth())
    assert (pic.status_code, pic.content) == (200, jpeg)


async def test_a_printer_added_by_the_cli_with_the_moonraker_dialect(env: BridgeEnv, tmp_path: Path) -> None:
    """`printbridge printer add --dialect moonraker` while `serve` runs: the bridge picks the printer up, makes
    its broker account, and Moonraker configured with its section brings its status."""
    cli = {k: v for k, v in os.environ.items() if not k.startswith("PRINTBRIDGE_")}
    cli.update(
        PRINTBRIDGE_DB=str(env.settings.db_path),
        PRINTBRIDGE_BASE_TOPIC=env.settings.base_topic,
        PRINTBRIDGE_MQTT_URL=f"mqtt://{env.broker.host}:{env.broker.port}",
    )
    printbridge = Path(sys.executable).with_name("printbridge")
    command = [str(printbridge), "printer", "add", "--owner", "alice", "--name", "Trident", "--dialect", "moonraker"]
    done = await asyncio.to_thread(subprocess.run, command, env=cli, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    printer = json.loads(done.stdout)
    assert printer["dialect"] == "moonraker"
    await wait_for(
        lambda: env.bridge.store.accounts.broker_tokens().get(printer["id"]) == printer["auth_token"],
        what="the printer's broker account, made by serve",
    )
    assert printer["agent_config"] == {
        "dialect": "moonraker",
        "broker": {
            "url": f"mqtt://{env.broker.host}:{env.broker.port}",
            "username": f"printer-{printer['id']}",
            "password": printer["auth_token"],
        },
        "base_topic": env.settings.base_topic,
        "printer_id": printer["id"],
        "snippet": await mqtt_section(env, printer),
    }
    section = printer["agent_config"]["snippet"]
    moonraker = await asyncio.to_thread(start_moonraker, tmp_path / "moonraker", section)
    try:
        k = Klipper(env, printer, moonraker)
        ready = await k.until_text("Operational")
        assert ready["agent_name"] == "moonraker"
    finally:
        await asyncio.to_thread(moonraker.stop)
