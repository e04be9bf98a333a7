"""MQTT ingest (docs/mqtt.md) and `B/bridge/state`, against a real broker with paho agents."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bridge.ingest import MAX_SNAPSHOT_BYTES
from bridge.mqtt.payloads import MAX_JSON_BYTES, encoder
from tests.support.agent import TestAgent, agent_message
from tests.support.broker import Broker, Probe, Received, subscribed_admin_probe
from tests.support.env import BridgeEnv, running_bridge, wait_for

PRINT_FIELDS = {
    "id",
    "printer",
    "filename",
    "started_at",
    "ended_at",
    "finished_at",
    "cancelled_at",
    "alerted_at",
    "alert_acknowledged_at",
    "alert_muted_at",
    "paused_at",
    "alert_overwrite",
    "print_time",
}
T1 = 1716904799


# -- helpers ---------------------------------------------------------------------------------------------


def processed(env: BridgeEnv) -> int:
    """Inbound messages the bridge has finished with, applied or dropped."""
    return env.bridge.inbound.handled + env.bridge.inbound.drops.total


async def ready_agent(env: BridgeEnv, printer: dict[str, Any]) -> TestAgent:
    """A connected agent whose retained `online` the bridge has already taken in."""
    agent = await env.agent(printer)
    rec = env.bridge.store.printers.get(printer["id"])
    assert rec is not None
    await wait_for(lambda: rec.available is True, what="the agent's availability")
    return agent


async def send(env: BridgeEnv, agent: TestAgent, message: dict[str, Any] | bytes, leaf: str = "status") -> None:
    """Publish as the agent and wait until the bridge has processed (applied or dropped) the message."""
    before = processed(env)
    payload = message if isinstance(message, bytes) else encoder.encode(message)
    await asyncio.to_thread(agent.publish_raw, leaf, payload)
    await wait_for(lambda: processed(env) > before, what=f"the bridge to process the {leaf} message")


probe = subscribed_admin_probe


async def expect(p: Probe, predicate: Callable[[Received], bool], timeout: float = 5.0) -> Received:
    return await asyncio.to_thread(p.expect, predicate, timeout)


def decode(msg: Received) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(msg.payload)
    return body


class Stamps:
    """Increasing `status._ts` values, so that no message is dropped as out of order by accident."""

    def __init__(self) -> None:
        self.value = time.time()

    def __call__(self) -> float:
        self.value += 1.0
        return self.value


def message(
    ts: float,
    *,
    cpt: int | None = None,
    filename: str = "benchy.gcode",
    event: str | None = None,
    event_name: str | None = None,
    paused: bool = False,
    text: str | None = None,
) -> dict[str, Any]:
    msg = agent_message(
        ts=ts, current_print_ts=cpt, filename=filename, event=event, paused=paused, state_text=text, settings=False
    )
    if event is not None and event_name is not None:
        msg["event"]["data"] = {"name": event_name}
    return msg


# -- status in REST ----------------------------------------------------------------------------------------


async def test_status_reaches_rest_within_100_ms(env: BridgeEnv, record_property: Any) -> None:
    printer = await env.create_printer("Prusa")
    agent = await ready_agent(env, printer)
    stamps = Stamps()
    samples = []
    for _ in range(20):
        ts = stamps()
        start = time.perf_counter()
        await asyncio.to_thread(agent.publish_status, agent_message(ts=ts))
        while True:
            body = await env.get_printer(printer["id"])
            if body["status"] is not None and body["status"]["_ts"] == ts:
                break
            assert time.perf_counter() - start < 1.0, "status not in REST within 1 s"
            await asyncio.sleep(0.001)
        samples.append((time.perf_counter() - start) * 1000)
    median, worst = statistics.median(samples), max(samples)
    record_property("publish_to_rest_ms_median", round(median, 2))
    record_property("publish_to_rest_ms_max", round(worst, 2))
    print(f"publish -> REST latency over {len(samples)} messages: median {median:.2f} ms, max {worst:.2f} ms")
    assert worst < 1000


async def test_status_is_served_verbatim(env: BridgeEnv) -> None:
    printer = await env.create_printer("Prusa")
    agent = await ready_agent(env, printer)
    msg = agent_message(ts=time.time())
    msg["status"]["custom"] = {"nested": [1, 2.5, "x", None, True]}
    await send(env, agent, msg)
    body = await env.get_printer(printer["id"])
    assert body["status"] == msg["status"]


async def test_settings_replace_and_agent_name_version(env: BridgeEnv) -> None:
    printer = await env.create_printer("Prusa")
    assert printer["settings"] == {} and printer["agent_name"] is None and printer["agent_version"] is None
    agent = await ready_agent(env, printer)
    stamps = Stamps()
    first = {"agent": {"name": "octoprint_obico", "version": "2.6.1"}, "webcams": [{"name": "cam"}], "x": 1}
    await send(env, agent, agent_message(ts=stamps(), settings=first))
    body = await env.get_printer(printer["id"])
    assert body["settings"] == first
    assert (body["agent_name"], body["agent_version"]) == ("octoprint_obico", "2.6.1")

    # A message without settings leaves them as they are.
    await send(env, agent, agent_message(ts=stamps(), settings=False))
    assert (await env.get_printer(printer["id"]))["settings"] == first

    # New settings replace the old ones entirely (no merge).
    second = {"agent": {"name": "moonraker_obico", "version": "1.8.0"}, "y": True}
    await send(env, agent, agent_message(ts=stamps(), settings=second))
    body = await env.get_printer(printer["id"])
    assert body["settings"] == second
    assert (body["agent_name"], body["agent_version"]) == ("moonraker_obico", "1.8.0")

    # Settings without an agent part: the agent name and version are no longer known.
    await send(env, agent, agent_message(ts=stamps(), settings={"webcams": []}))
    body = await env.get_printer(printer["id"])
    assert body["settings"] == {"webcams": []}
    assert body["agent_name"] is None and body["agent_version"] is None


async def test_older_status_is_ignored_entirely_and_equal_ts_accepted(env: BridgeEnv) -> None:
    printer = await env.create_printer("Prusa")
    agent = await ready_agent(env, printer)
    await send(env, agent, agent_message(ts=1000.0, state_text="First", current_print_ts=None))
    before = await env.get_printer(printer["id"])
    assert before["status"]["state"]["text"] == "First"
    assert before["current_print"] is None

    # Older: nothing of it applies, not the settings, not the print, not the event.
    drops = env.bridge.inbound.drops.total
    older = agent_message(
        ts=999.5,
        state_text="Older",
        current_print_ts=T1,
        event="PrintStarted",
        settings={"agent": {"name": "late", "version": "0"}},
    )
    await send(env, agent, older)
    assert env.bridge.inbound.drops.total == drops + 1
    assert await env.get_printer(printer["id"]) == before
    assert env.bridge.store.prints.of(printer["id"]) == []

    # Equal: accepted.
    await send(env, agent, agent_message(ts=1000.0, state_text="Equal", current_print_ts=T1))
    body = await env.get_printer(printer["id"])
    assert body["status"]["state"]["text"] == "Equal"
    assert body["current_print"] is not None

    # Newer: accepted.
    await send(env, agent, agent_message(ts=1000.25, state_text="Newer", current_print_ts=T1))
    assert (await env.get_printer(printer["id"]))["status"]["state"]["text"] == "Newer"


async def test_message_without_status_marks_offline_but_other_parts_apply(env: BridgeEnv) -> None:
    printer = await env.create_printer("Prusa")
    agent = await ready_agent(env, printer)
    stamps = Stamps()
    await send(env, agent, agent_message(ts=stamps(), current_print_ts=None))
    assert (await env.get_printer(printer["id"]))["status"] is not None

    settings = {"agent": {"name": "klipper_obico", "version": "3.0"}}
    msg = agent_message(ts=0, include_status=False, settings=settings, current_print_ts=T1, event="PrintStarted")
    assert "status" not in msg
    await send(env, agent, msg)
    body = await env.get_printer(printer["id"])
    assert body["status"] is None
    assert body["not_watching_reason"] == "Printer is not actively printing"
    assert body["settings"] == settings
    assert body["agent_name"] == "klipper_obico"
    assert body["current_print"] is not None and body["current_print"]["filename"] == "benchy.gcode"
    assert body["current_print"]["started_at"] is not None

    # The next status brings it back.
    await send(env, agent, agent_message(ts=stamps(), current_print_ts=T1))
    assert (await env.get_printer(printer["id"]))["status"] is not None


async def test_availability_offline_then_online_with_new_status(env: BridgeEnv) -> None:
    printer = await env.create_printer("Prusa")
    agent = await ready_agent(env, printer)
    stamps = Stamps()
    await send(env, agent, agent_message(ts=stamps(), state_text="Before"))
    assert (await env.get_printer(printer["id"]))["status"]["state"]["text"] == "Before"

    await send(env, agent, b"offline", leaf="availability")
    body = await env.get_printer(printer["id"])
    assert body["status"] is None
    assert body["current_print"] is not None  # going offline does not end the print

    await send(env, agent, b"online", leaf="availability")
    await send(env, agent, agent_message(ts=stamps(), state_text="After"))
    assert (await env.get_printer(printer["id"]))["status"]["state"]["text"] == "After"


async def test_agent_connection_lost_will_marks_offline(env: BridgeEnv) -> None:
    printer = await env.create_printer("Prusa")
    agent = await ready_agent(env, printer)
    await send(env, agent, agent_message(ts=time.time()))
    rec = env.bridge.store.printers.get(printer["id"])
    assert rec is not None and rec.online
    await asyncio.to_thread(agent.drop_connection)
    await wait_for(lambda: rec.available is False, what="the agent's Will")
    assert (await env.get_printer(printer["id"]))["status"] is None


async def test_ttl_expiry_serves_null_and_publishes_offline_state(env: BridgeEnv) -> None:
    printer = await env.create_printer("Prusa")
    pid = printer["id"]
    agent = await ready_agent(env, printer)
    async with probe(env.broker, env.topics.state(pid)) as p:
        await send(env, agent, agent_message(ts=time.time()))
        online = await expect(p, lambda m: decode(m)["online"] is True)
        assert decode(online)["state_text"] == "Printing"
        assert (await env.get_printer(pid))["status"] is not None

        env.clock.advance(env.settings.status_ttl_s + 1)

        async def status_null() -> bool:
            return (await env.get_printer(pid))["status"] is None

        await wait_for(status_null, what="the sweeper to expire the status")
        state = decode(await expect(p, lambda m: decode(m)["online"] is False))
        assert state["id"] == pid and state["state_text"] is None and state["printing"] is False
        assert "auth_token" not in state

    # The retained state says offline to anyone who subscribes later.
    async with probe(env.broker, env.topics.state(pid)) as late:
        retained = await expect(late, lambda m: m.retain)
        assert decode(retained)["online"] is False

    # A fresh status brings it back.
    await send(env, agent, agent_message(ts=time.time() + 10))
    assert (await env.get_printer(pid))["status"] is not None


# -- prints ----------------------------------------------------------------------------------------------


async def test_print_open_and_close_rules(env: BridgeEnv) -> None:
    printer = await env.create_printer("Prusa")
    pid = printer["id"]
    agent = await ready_agent(env, printer)
    stamps = Stamps()
    store = env.bridge.store

    async def current() -> dict[str, Any] | None:
        cp: dict[str, Any] | None = (await env.get_printer(pid))["current_print"]
        return cp

    # Filename from status.job.file.name when there is no event.
    await send(env, agent, message(stamps(), cpt=T1, filename="a.gcode"))
    first = await current()
    assert first is not None
    assert set(first) == PRINT_FIELDS
    assert first["printer"] == pid and first["filename"] == "a.gcode"
    assert first["started_at"].endswith("Z") and first["ended_at"] is None

    # The same ts: the same print.
    await send(env, agent, message(stamps(), cpt=T1, filename="a.gcode"))
    assert (await current()) == first
    # Within 20 s and the same filename: the same print (clock skew).
    await send(env, agent, message(stamps(), cpt=T1 + 15, filename="a.gcode"))
    assert (await current()) == first
    assert len(store.prints.of(pid)) == 1

    # A different ts: a new print (filename from event.data.name first), and the old one is closed.
    await send(env, agent, message(stamps(), cpt=T1 + 600, event="PrintStarted", event_name="from-event.gcode"))
    second = await current()
    assert second is not None and second["id"] != first["id"] and second["filename"] == "from-event.gcode"
    old = store.prints.of(pid)[0]
    assert old.ended_at is not None and old.finished_at is None and old.cancelled_at is None

    # A closed print's ts changes nothing.
    await send(env, agent, message(stamps(), cpt=T1, filename="a.gcode"))
    assert (await current()) == second
    assert len(store.prints.of(pid)) == 2

    # -1 closes the open print with finished_at.
    await send(env, agent, message(stamps(), cpt=-1))
    assert (await current()) is None
    closed = store.prints.of(pid)[1]
    assert closed.ended_at is not None and closed.finished_at is not None and closed.cancelled_at is None
    await send(env, agent, message(stamps(), cpt=-1))
    assert len(store.prints.of(pid)) == 2

    # Absent current_print_ts changes nothing.
    await send(env, agent, message(stamps(), cpt=T1 + 1200, filename="c.gcode"))
    third = await current()
    assert third is not None and third["filename"] == "c.gcode"
    await send(env, agent, message(stamps(), cpt=None))
    assert (await current()) == third


@pytest.mark.parametrize("event", ["PrintCancelled", "PrintFailed"])
async def test_cancelled_and_failed_set_cancelled_at_and_close(env: BridgeEnv, event: str) -> None:
    printer = await env.create_printer("Prusa")
    pid = printer["id"]
    agent = await ready_agent(env, printer)
    stamps = Stamps()
    await send(env, agent, message(stamps(), cpt=T1, event="PrintStarted"))
    assert (await env.get_printer(pid))["current_print"] is not None

    await send(env, agent, message(stamps(), cpt=T1, event=event))
    assert (await env.get_printer(pid))["current_print"] is None
    [p] = env.bridge.store.prints.of(pid)
    assert p.cancelled_at is not None and p.ended_at is not None and p.finished_at is None

    # The agent then reports -1 and keeps sending the old ts for a while: nothing changes.
    await send(env, agent, message(stamps(), cpt=-1))
    await send(env, agent, message(stamps(), cpt=T1))
    assert (await env.get_printer(pid))["current_print"] is None
    [again] = env.bridge.store.prints.of(pid)
    assert again == p


async def test_print_done_sets_finished_at_and_closes(env: BridgeEnv) -> None:
    printer = await env.create_printer("Prusa")
    pid = printer["id"]
    agent = await ready_agent(env, printer)
    stamps = Stamps()
    await send(env, agent, message(stamps(), cpt=T1))
    await send(env, agent, message(stamps(), cpt=T1, event="PrintDone"))
    assert (await env.get_printer(pid))["current_print"] is None
    [p] = env.bridge.store.prints.of(pid)
    assert p.finished_at is not None and p.ended_at is not None and p.cancelled_at is None


async def test_events_published_with_the_contract_shape(env: BridgeEnv) -> None:
    printer = await env.create_printer("Event printer")
    pid = printer["id"]
    agent = await ready_agent(env, printer)
    stamps = Stamps()
    topic = env.topics.event(pid)
    async with probe(env.broker, topic) as p:
        await send(env, agent, message(stamps(), cpt=T1, event="PrintStarted"))
        await send(env, agent, message(stamps(), cpt=T1, event="PrintPaused", paused=True))
        await send(env, agent, message(stamps(), cpt=T1, event="PrintResumed"))
        await send(env, agent, message(stamps(), cpt=T1, event="FilamentChange"))
        await send(env, agent, message(stamps(), cpt=T1, event="PrintDone"))
        # A new print opened by ts alone, then cancelled.
        await send(env, agent, message(stamps(), cpt=T1 + 900, filename="two.gcode"))
        await send(env, agent, message(stamps(), cpt=T1 + 900, event="PrintCancelled", filename="two.gcode"))

        events: list[dict[str, Any]] = []
        while len(events) < 7:
            msg = await expect(p, lambda m: m.topic == topic)
            events.append(decode(msg))
    assert [e["event_type"] for e in events] == [
        "STARTED",
        "PAUSED",
        "RESUMED",
        "FILAMENT_CHANGE",
        "ENDED",
        "STARTED",
        "ENDED",
    ]
    now = time.time()
    for e in events:
        assert set(e) == {"event_type", "printer", "print", "ts"}
        assert e["printer"] == {"id": pid, "name": "Event printer"}
        assert isinstance(e["ts"], float) and abs(e["ts"] - now) < 60
        assert set(e["print"]) == PRINT_FIELDS
        assert e["print"]["printer"] == pid
    first_id = events[0]["print"]["id"]
    assert all(e["print"]["id"] == first_id for e in events[:5])
    assert events[0]["print"]["filename"] == "benchy.gcode" and events[0]["print"]["ended_at"] is None
    assert events[4]["print"]["finished_at"] is not None and events[4]["print"]["ended_at"] is not None
    assert events[5]["print"]["id"] != first_id and events[5]["print"]["filename"] == "two.gcode"
    assert events[6]["print"]["cancelled_at"] is not None and events[6]["print"]["finished_at"] is None


# -- snapshots -----------------------------------------------------------------------------------------


def jpeg(size: int, fill: bytes = b"\x00") -> bytes:
    body = b"\xff\xd8\xff\xe0" + fill * (size - 6) + b"\xff\xd9"
    assert len(body) == size
    return body


async def test_snapshots_kept_up_to_4_mib_and_dropped_over(env: BridgeEnv) -> None:
    printer = await env.create_printer("Cam")
    pid = printer["id"]
    assert printer["pic"] is None
    resp = await env.client.get(f"/api/v1/printers/{pid}/pic", headers=env.auth())
    assert resp.status_code == 404
    agent = await ready_agent(env, printer)

    small = jpeg(1000, b"\x01")
    await send(env, agent, small, leaf="snapshot")
    body = await env.get_printer(pid)
    assert body["pic"] == {"img_url": f"/api/v1/printers/{pid}/pic"}
    resp = await env.client.get(f"/api/v1/printers/{pid}/pic", headers=env.auth())
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("image/jpeg")
    assert resp.content == small

    largest = jpeg(MAX_SNAPSHOT_BYTES, b"\x02")
    await send(env, agent, largest, leaf="snapshot")
    resp = await env.client.get(f"/api/v1/printers/{pid}/pic", headers=env.auth())
    assert resp.content == largest

    drops = env.bridge.inbound.drops.total
    await send(env, agent, jpeg(MAX_SNAPSHOT_BYTES + 1, b"\x03"), leaf="snapshot")
    assert env.bridge.inbound.drops.total == drops + 1
    resp = await env.client.get(f"/api/v1/printers/{pid}/pic", headers=env.auth())
    assert resp.content == largest

    # Kept in SQLite too, not just in memory.
    await wait_for(lambda: env.bridge.store.pending_writes == 0, what="the flush")
    row = env.bridge.store.conn.execute("SELECT jpeg FROM snapshots WHERE printer_id = ?", (pid,)).fetchone()
    assert bytes(row[0]) == largest


# -- bad input (docs/mqtt.md) ------------------------------------------------------------------------------


def _bad_payloads(env: BridgeEnv, live: int, deleted: int) -> list[tuple[str, bytes]]:
    t = env.topics
    good = encoder.encode(agent_message(ts=time.time() + 3600, state_text="Should not apply", current_print_ts=T1 + 5))
    huge_status = agent_message(ts=time.time() + 3600)
    huge_status["status"]["padding"] = "x" * (MAX_JSON_BYTES + 10)
    status = t.status(live)
    bad: list[tuple[str, bytes]] = [
        (status, b"not json at all"),
        (status, b"[1, 2, 3]"),
        (status, b'"a string"'),
        (status, b"null"),
        (status, b'{"status": "Printing"}'),
        (status, b'{"status": [1]}'),
        (status, b'{"settings": ["agent"]}'),
        (status, b'{"settings": {"agent": {"name": 5}}}'),
        (status, b'{"event": {"event_type": 5}}'),
        (status, b'{"event": "PrintStarted"}'),
        (status, b'{"status": {"_ts": "1716904915"}}'),
        (status, b'{"status": {"_ts": true}}'),
        (status, b'{"status": {"_ts": 1}, "current_print_ts": 0}'),
        (status, b'{"status": {"_ts": 1}, "current_print_ts": "1716904799"}'),
        (status, b'{"status": {"_ts": 1}, "current_print_ts": -5}'),
        (status, b'{"status": {"_ts": 1}, "current_print_ts": true}'),
        (status, encoder.encode(huge_status)),
        (status, b"\xff\xfe\x00\x01garbage"),
        (status, b'{"status": {"_ts": 1, "state": {"text": "\xff\xfe"}}}'),
        (status, b'{"status": {"_ts": 1}} trailing'),
        (t.availability(live), b"maybe"),
        (t.availability(live), b"\xff\xfe"),
        (t.availability(live), b'{"online": true}'),
        (t.snapshot(live), b"not a jpeg"),
        (t.snapshot(live), b""),
        (t.detection(live), b"nope"),
        (t.detection(live), b"[]"),
        (t.detection(live), b'{"p": "high"}'),
        (t.detection(live), b'{"p": -1}'),
        (t.detection(live), b'{"detections": "many"}'),
        (t.detection(live), b"\xff\xfe"),
        (t.detection(live), b'{"detections": [["\xff", 0.5, [0, 0, 1, 1]]]}'),
        (t.detection(live), b'{"p": 0.5, "pad": "' + b"x" * MAX_JSON_BYTES + b'"}'),
        (t.ack(live), b"nope"),
        (t.ack(live), b"[]"),
        (t.ack(live), b'{"ok": true}'),
        (t.ack(live), b'{"cmd_id": 5, "ok": true}'),
        (t.ack(live), b'{"cmd_id": "x", "ok": "yes"}'),
        (t.ack(live), b"\xff\xfe"),
        (t.ack(live), b'{"cmd_id": "\xff", "ok": true}'),
        (t.ack(live), b'{"cmd_id": "' + b"x" * MAX_JSON_BYTES + b'", "ok": true}'),
        (t.action(live, "pause"), b"[1]"),
        (t.action(live, "cancel"), b'{"request_id": 5}'),
        (t.action(live, "resume"), b'{"request_id": "r", "mute": true}'),
        (t.action(live, "mute"), b'{"mute": "yes"}'),
        (t.action(live, "acknowledge_alert"), b"\xff\xfe"),
        (t.action(live, "pause"), b'{"request_id": "\xff"}'),
        (t.action(live, "mute"), b'{"request_id": "' + b"x" * MAX_JSON_BYTES + b'"}'),
        # Unknown and deleted printers, with payloads that would otherwise be valid.
        (t.status(999_999), good),
        (t.availability(999_999), b"online"),
        (t.snapshot(999_999), jpeg(100)),
        (t.status(deleted), good),
        (t.availability(deleted), b"online"),
        (t.snapshot(deleted), jpeg(100)),
        (t.detection(deleted), b'{"p": 0.5}'),
        (t.action(deleted, "pause"), b"PRESS"),
    ]
    return bad


async def test_malformed_payloads_are_dropped_and_change_nothing(env: BridgeEnv) -> None:
    printer = await env.create_printer("Live")
    pid = printer["id"]
    doomed = await env.create_printer("Doomed")
    agent = await ready_agent(env, printer)
    stamps = Stamps()
    await send(env, agent, message(stamps(), cpt=T1, event="PrintStarted"))
    await send(env, agent, jpeg(200, b"\x07"), leaf="snapshot")
    resp = await env.client.delete(f"/api/v1/printers/{doomed['id']}/", headers=env.auth())
    assert resp.status_code == 200

    async def snapshot_of_state() -> tuple[Any, ...]:
        one = await env.client.get(f"/api/v1/printers/{pid}/", headers=env.auth())
        many = await env.client.get("/api/v1/printers/", headers=env.auth(), params={"with_archived": "true"})
        gone = await env.client.get(f"/api/v1/printers/{doomed['id']}/", headers=env.auth())
        pic = await env.client.get(f"/api/v1/printers/{pid}/pic", headers=env.auth())
        cmds = await env.client.get(f"/api/v1/printers/{pid}/commands/", headers=env.auth())
        return (
            one.status_code,
            one.content,
            many.content,
            gone.status_code,
            pic.content,
            cmds.content,
            env.bridge.store.prints.of(pid),
            env.bridge.store.prints.of(doomed["id"]),
        )

    before = await snapshot_of_state()
    assert before[0] == 200 and before[3] == 404
    bad = _bad_payloads(env, pid, doomed["id"])
    drops = env.bridge.inbound.drops.total
    handled = env.bridge.inbound.handled
    async with probe(env.broker) as admin:
        for topic, payload in bad:
            await asyncio.to_thread(admin.publish, topic, payload)
        await wait_for(
            lambda: env.bridge.inbound.drops.total >= drops + len(bad),
            what=f"{len(bad)} drops (saw {env.bridge.inbound.drops.total - drops})",
        )
    assert env.bridge.inbound.drops.total == drops + len(bad)
    assert env.bridge.inbound.handled == handled
    assert await snapshot_of_state() == before

    # The bridge is still ingesting.
    await send(env, agent, message(stamps(), cpt=T1, text="Still here"))
    body = await env.get_printer(pid)
    assert body["status"]["state"]["text"] == "Still here"


async def test_dropped_messages_are_logged(env: BridgeEnv, caplog: pytest.LogCaptureFixture) -> None:
    printer = await env.create_printer("Prusa")
    agent = await ready_agent(env, printer)
    with caplog.at_level("WARNING", logger="printbridge.ingest"):
        await send(env, agent, b"{not json")
    status_topic = env.topics.status(printer["id"])
    assert any("dropped message on" in r.getMessage() and status_topic in r.getMessage() for r in caplog.records), (
        caplog.text
    )


async def test_bridge_never_acts_on_its_own_publications(env: BridgeEnv) -> None:
    printer = await env.create_printer("Prusa")
    pid = printer["id"]
    agent = await ready_agent(env, printer)
    stamps = Stamps()
    # Activity that makes the bridge publish state, events and remote_status.
    await send(env, agent, message(stamps(), cpt=T1, event="PrintStarted"))
    await send(env, agent, message(stamps(), cpt=T1, event="PrintPaused", paused=True))
    result = await env.action(pid, "mute_current_print")
    assert result["succeeded"] is True
    before = await env.get_printer(pid)
    drops, handled = env.bridge.inbound.drops.total, env.bridge.inbound.handled

    t = env.topics
    looks_valid = encoder.encode(message(stamps() + 100, cpt=T1 + 3000, text="Not from the agent"))
    async with probe(env.broker) as admin:
        for topic in (
            t.state(pid),
            t.event(pid),
            t.command(pid),
            t.remote_status(pid),
            t.action_response(pid, "pause"),
            t.bridge_state,
        ):
            await asyncio.to_thread(admin.publish, topic, looks_valid)
        # A sentinel from the same client, after the others: once it is in, they were delivered too.
        sentinel = message(stamps() + 200, cpt=T1, paused=True, text="Sentinel")
        await asyncio.to_thread(admin.publish, t.status(pid), encoder.encode(sentinel))
        await wait_for(lambda: env.bridge.inbound.handled > handled, what="the sentinel")
    assert env.bridge.inbound.handled == handled + 1
    assert env.bridge.inbound.drops.total == drops == 0
    after = await env.get_printer(pid)
    assert after["status"]["state"]["text"] == "Sentinel"
    assert after["current_print"] == before["current_print"]


# -- B/bridge/state ------------------------------------------------------------------------------------


async def test_bridge_state_online_while_running_offline_after_clean_stop(broker: Broker, tmp_path: Path) -> None:
    async with running_bridge(broker, tmp_path / "pb.db") as env:
        topic = env.topics.bridge_state
        async with probe(broker, topic) as p:
            msg = await expect(p, lambda m: m.topic == topic)
            assert (msg.payload, msg.retain) == (b"online", True)
            assert (await env.client.get("/health")).json() == {"mqtt": "connected", "db": "ok"}
    async with probe(broker, topic) as p:
        msg = await expect(p, lambda m: m.topic == topic)
        assert (msg.payload, msg.retain) == (b"offline", True)


async def test_bridge_will_fires_when_its_connection_dies(env: BridgeEnv) -> None:
    topic = env.topics.bridge_state
    link = env.bridge.link
    async with probe(env.broker, topic) as p:
        msg = await expect(p, lambda m: m.topic == topic)
        assert (msg.payload, msg.retain) == (b"online", True)
        client = link._client
        assert client is not None
        sock = client._client.socket()
        assert isinstance(sock, socket.socket)
        count = link.connect_count
        sock.shutdown(socket.SHUT_RDWR)  # the connection dies without a DISCONNECT
        will = await expect(p, lambda m: m.topic == topic)
        assert will.payload == b"offline"
        back = await expect(p, lambda m: m.topic == topic)
        assert back.payload == b"online"
    await wait_for(lambda: link.connect_count == count + 1 and env.bridge.mqtt_connected, what="the reconnect")
    assert (await env.client.get("/health")).status_code == 200
