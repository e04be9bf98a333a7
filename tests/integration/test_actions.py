"""The printer actions end to end (docs/rest.md, issue 3): REST -> command on MQTT -> a paho agent's ack
-> the HTTP answer, against a real Mosquitto.

Litestar's AsyncTestClient runs each request through a blocking portal, so a request holds the test's
event loop until it is answered. Tests that need requests in flight at the same time send them from
worker threads (`ThreadedHttp`); the app itself runs on the portal's loop either way.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import statistics
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import transport as litestar_transport
from paho.mqtt.enums import MQTTProtocolVersion

from tests.support.agent import TestAgent, agent_message
from tests.support.broker import Broker, Probe, Received
from tests.support.env import BridgeEnv, running_bridge, wait_for

TIMEOUT_S = 0.5  # PRINTBRIDGE_COMMAND_TIMEOUT_S for the tests that wait for a silent agent
CMD_ID = re.compile(r"^[0-9a-f]{32}$")
ACTIONS = ("pause_print", "resume_print", "cancel_print")
ALL_ACTIONS = (*ACTIONS, "mute_current_print", "acknowledge_alert")


@pytest.fixture
async def fast(broker: Broker, tmp_path: Path) -> AsyncIterator[BridgeEnv]:
    """A running bridge whose actions give up after TIMEOUT_S."""
    async with running_bridge(broker, tmp_path / "printbridge.db", command_timeout_s=TIMEOUT_S) as env:
        yield env


class _PortalTransport(httpx.BaseTransport):
    """Litestar's test transport (it calls the app through the client's blocking portal) as an httpx one."""

    def __init__(self, inner: litestar_transport.TestClientTransport[Any]) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)


class ThreadedHttp:
    """Requests to the app from worker threads, so that several can be in flight at once."""

    def __init__(self, env: BridgeEnv) -> None:
        self.env = env

    def _request(self, method: str, path: str, params: dict[str, Any] | None) -> httpx.Response:
        transport = _PortalTransport(litestar_transport.TestClientTransport(self.env.client))
        with httpx.Client(transport=transport, base_url=str(self.env.client.base_url)) as client:
            return client.request(method, path, params=params, headers=self.env.auth())

    async def request(self, method: str, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        """One thread per request: requests waiting in the default executor would starve the test's own
        to_thread() calls (that pool has only a few workers on a small machine)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[httpx.Response] = loop.create_future()

        def run() -> None:
            try:
                resp = self._request(method, path, params)
            except BaseException as exc:  # handed to the awaiting test
                loop.call_soon_threadsafe(answer.set_exception, exc)
            else:
                loop.call_soon_threadsafe(answer.set_result, resp)

        threading.Thread(target=run, name=f"http {method} {path}", daemon=True).start()
        return await answer

    async def action(self, printer_id: int, name: str, method: str = "POST") -> dict[str, Any]:
        resp = await self.request(method, f"/api/v1/printers/{printer_id}/{name}")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body


async def printing(env: BridgeEnv, name: str = "Prusa", **kwargs: Any) -> tuple[dict[str, Any], TestAgent]:
    """A printer whose agent is online and printing, as REST shows it."""
    printer = await env.create_printer(name)
    agent = await env.agent(printer, **kwargs)
    await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time(), event="PrintStarted"))

    async def current() -> dict[str, Any] | None:
        body = await env.get_printer(printer["id"])
        return body if body["status"] is not None and body["current_print"] is not None else None

    return await wait_for(current, what="the print in REST"), agent


async def history(env: BridgeEnv, printer_id: int, **params: Any) -> list[dict[str, Any]]:
    resp = await env.client.get(f"/api/v1/printers/{printer_id}/commands/", headers=env.auth(), params=params)
    assert resp.status_code == 200, resp.text
    rows: list[dict[str, Any]] = resp.json()
    return rows


async def set_alert(env: BridgeEnv, printer_id: int) -> float:
    """Give the current print an outstanding failure alert, as detection would."""
    rec = env.bridge.store.printers.get(printer_id)
    assert rec is not None and rec.current_print is not None
    p = rec.current_print
    p.alerted_at = env.clock()
    env.client.blocking_portal.call(env.bridge.store.prints.save, rec, p)  # on the app's thread
    return p.alerted_at


async def admin_probe(env: BridgeEnv, *topics: str) -> Probe:
    probe = Probe(env.broker, env.broker.admin_username, env.broker.admin_password)
    assert await asyncio.to_thread(probe.connect) == 0
    for topic in topics:
        assert (await asyncio.to_thread(probe.subscribe, topic))[0] < 0x80
    return probe


async def published_before_sentinel(probe: Probe, env: BridgeEnv) -> list[Received]:
    """Everything the probe got before a sentinel it publishes now (subscribed to B/sentinel)."""
    marker = uuid.uuid4().hex.encode()
    topic = f"{env.settings.base_topic}/sentinel"
    await asyncio.to_thread(probe.publish, topic, marker)
    return await asyncio.to_thread(probe.collect_until, topic, marker)


def iso_now_ish(value: str | None) -> bool:
    return isinstance(value, str) and value.endswith("Z") and value[:4].isdigit()


# -- pause / resume / cancel: the outcomes of docs/rest.md, Actions, rule 3 -------------------------------------------


async def test_acked_refused_and_silent_answers_with_the_exact_command(fast: BridgeEnv) -> None:
    env = fast
    printer, agent = await printing(env)
    pid = printer["id"]
    print_id = printer["current_print"]["id"]
    resp = await env.client.patch(
        f"/api/v1/printers/{pid}/",
        json={"retract_on_pause": 3.0, "lift_z_on_pause": 1.5, "tools_off_on_pause": False, "bed_off_on_pause": True},
        headers=env.auth(),
    )
    assert resp.status_code == 200, resp.text

    before = time.time()
    body = await env.action(pid, "pause_print")
    after = time.time()
    assert body["succeeded"] is True and body["error"] is None
    assert body["printer"]["id"] == pid and body["printer"]["current_print"]["id"] == print_id
    assert "auth_token" in body["printer"] and set(body) == {"succeeded", "printer", "error"}
    (command,) = agent.commands
    assert set(command) == {"cmd_id", "cmd", "args", "initiator", "ts"}
    assert CMD_ID.match(command["cmd_id"])
    assert command["cmd"] == "pause" and command["initiator"] == "api"
    assert command["args"] == {"retract": 3.0, "lift_z": 1.5, "bed_off": True}
    assert isinstance(command["ts"], float) and before - 0.01 <= command["ts"] <= after + 0.01
    assert agent.command_properties == [{}]  # MQTT 3.1.1: correlation by cmd_id alone

    resp = await env.client.patch(
        f"/api/v1/printers/{pid}/", json={"tools_off_on_pause": True, "bed_off_on_pause": False}, headers=env.auth()
    )
    assert resp.status_code == 200, resp.text
    assert (await env.action(pid, "pause_print", method="GET"))["succeeded"] is True
    assert agent.commands[-1]["args"] == {"retract": 3.0, "lift_z": 1.5, "tools_off": True}

    expected: list[tuple[str, str, str, str | None]] = [  # cmd, initiator, outcome, error (oldest first)
        ("pause", "api", "acked", None),
        ("pause", "api", "acked", None),
    ]
    agent.refuse_error = "printer busy"
    for n, (name, cmd) in enumerate(zip(ACTIONS, ("pause", "resume", "cancel"), strict=True)):
        for method in ("POST", "GET"):
            if (name, method) == ("pause_print", "POST"):
                pass  # done above
            elif (name, method) != ("pause_print", "GET"):
                agent.ack_mode = "ok"
                body = await env.action(pid, name, method=method)
                assert (body["succeeded"], body["error"]) == (True, None), (name, method)
                assert agent.commands[-1]["cmd"] == cmd and agent.commands[-1]["args"] == (
                    {"retract": 3.0, "lift_z": 1.5, "tools_off": True} if cmd == "pause" else {}
                )
                expected.append((cmd, "api", "acked", None))
            agent.ack_mode = "refuse"
            body = await env.action(pid, name, method=method)
            assert (body["succeeded"], body["error"]) == (False, "printer busy"), (name, method)
            expected.append((cmd, "api", "refused", "printer busy"))
        agent.ack_mode = "silent"
        started = time.monotonic()
        body = await env.action(pid, name, method="GET" if n % 2 else "POST")
        waited = time.monotonic() - started
        assert (body["succeeded"], body["error"]) == (False, "timeout")
        assert TIMEOUT_S - 0.05 <= waited < TIMEOUT_S + 1.5, waited
        expected.append((cmd, "api", "timeout", "timeout"))

    assert len(agent.commands) == len(expected)
    rows = await history(env, pid)
    assert [(r["cmd"], r["initiator"], r["outcome"], r["error"]) for r in rows] == expected[::-1]
    assert [r["cmd_id"] for r in rows] == [c["cmd_id"] for c in agent.commands][::-1]
    assert [r["args"] for r in rows] == [c["args"] for c in agent.commands][::-1]
    for row in rows:
        assert set(row) == {
            "cmd_id", "cmd", "args", "initiator", "print_id", "sent_at", "outcome", "error", "latency_ms"
        }  # fmt: skip
        assert row["print_id"] == print_id
        assert iso_now_ish(row["sent_at"])
        if row["outcome"] == "timeout":
            assert row["latency_ms"] is None
        else:
            assert isinstance(row["latency_ms"], float) and 0 < row["latency_ms"] < TIMEOUT_S * 1000
    assert [r["cmd_id"] for r in await history(env, pid, limit=3)] == [r["cmd_id"] for r in rows[:3]]
    resp = await env.client.get(f"/api/v1/printers/{pid}/commands/", headers=env.auth(), params={"limit": "0"})
    assert resp.status_code == 400 and "limit" in resp.json()["detail"]


async def test_late_and_duplicate_acks_change_nothing(fast: BridgeEnv) -> None:
    env = fast
    printer, agent = await printing(env)
    pid = printer["id"]
    commands = env.bridge.commands

    agent.ack_mode = "silent"
    for method in ("POST", "GET"):
        body = await env.action(pid, "cancel_print", method=method)
        assert (body["succeeded"], body["error"]) == (False, "timeout")
    first, second = (c["cmd_id"] for c in agent.commands)
    ignored = commands.ignored_acks
    await asyncio.to_thread(agent.send_ack, first, True)  # late: the action already answered "timeout"
    await asyncio.to_thread(agent.send_ack, second, False, "too late")
    await wait_for(lambda: commands.ignored_acks == ignored + 2, what="the late acks to be ignored")
    rows = await history(env, pid)
    assert [(r["cmd_id"], r["outcome"], r["error"], r["latency_ms"]) for r in rows] == [
        (second, "timeout", "timeout", None),
        (first, "timeout", "timeout", None),
    ]
    assert commands.in_flight == 0

    agent.ack_mode = "duplicate"
    body = await env.action(pid, "pause_print")
    assert (body["succeeded"], body["error"]) == (True, None)
    await wait_for(lambda: commands.ignored_acks == ignored + 3, what="the duplicate ack to be ignored")
    agent.ack_mode = "refuse"
    body = await env.action(pid, "resume_print")
    assert (body["succeeded"], body["error"]) == (False, "refused by the test agent")
    assert [r["outcome"] for r in await history(env, pid)] == ["refused", "acked", "timeout", "timeout"]

    # An ack for a command nobody sent, and one that is not an ack at all: dropped, the bridge goes on.
    await asyncio.to_thread(agent.send_ack, uuid.uuid4().hex, True)
    await asyncio.to_thread(agent.publish_raw, "ack", b"not json")
    await wait_for(lambda: commands.ignored_acks == ignored + 4, what="the unknown ack to be ignored")
    agent.ack_mode = "ok"
    assert (await env.action(pid, "resume_print"))["succeeded"] is True

    # Another printer cannot answer for this one, even with the right cmd_id.
    _, other = await printing(env, "Other")
    agent.ack_mode = "silent"
    pending = asyncio.ensure_future(ThreadedHttp(env).action(pid, "pause_print"))
    cmd_id = (await asyncio.to_thread(agent.wait_command))["cmd_id"]
    await asyncio.to_thread(other.send_ack, cmd_id, True)
    body = await pending
    assert (body["succeeded"], body["error"]) == (False, "timeout")
    assert commands.ignored_acks == ignored + 5


# -- docs/rest.md, Actions, rules 1 and 2: answered without publishing ----------------------------------------------


async def test_not_printing_and_offline_publish_nothing(fast: BridgeEnv) -> None:
    env = fast
    idle = await env.create_printer("Idle")
    idle_agent = await env.agent(idle)
    await asyncio.to_thread(
        idle_agent.publish_status, agent_message(ts=time.time(), printing=False, current_print_ts=-1)
    )
    await wait_for(
        lambda: env.bridge.store.printers.get(idle["id"]).online,  # type: ignore[union-attr]
        what="the idle printer online",
    )
    never = await env.create_printer("Never seen")
    offline, offline_agent = await printing(env, "Offline")
    await asyncio.to_thread(offline_agent.set_availability, False)

    async def shown_offline() -> bool:
        body = await env.get_printer(offline["id"])
        return body["status"] is None and body["current_print"] is not None

    await wait_for(shown_offline, what="the printer offline in REST")

    base = env.settings.base_topic
    probe = await admin_probe(env, f"{base}/printers/+/command", f"{base}/sentinel")
    try:
        for printer, error in ((idle, "not printing"), (never, "not printing"), (offline, "printer offline")):
            for name in ACTIONS:
                for method in ("POST", "GET"):
                    body = await env.action(printer["id"], name, method=method)
                    assert (body["succeeded"], body["error"]) == (False, error), (printer["name"], name)
                    assert body["printer"]["id"] == printer["id"]
        for printer in (idle, never):
            for name in ("mute_current_print", "acknowledge_alert"):
                body = await env.action(printer["id"], name)
                assert (body["succeeded"], body["error"]) == (False, "not printing")
        # Offline does not stop mute and acknowledge: they change the bridge's own record of the print.
        assert (await env.action(offline["id"], "mute_current_print"))["succeeded"] is True
        assert (await env.action(offline["id"], "acknowledge_alert"))["succeeded"] is True
        assert await published_before_sentinel(probe, env) == []
    finally:
        await asyncio.to_thread(probe.close)
    assert idle_agent.commands == [] and offline_agent.commands == []

    rows = await history(env, offline["id"])
    assert len(rows) == 6
    assert {(r["outcome"], r["error"], r["latency_ms"]) for r in rows} == {("not_sent", "printer offline", None)}
    assert [r["cmd"] for r in rows] == ["cancel", "cancel", "resume", "resume", "pause", "pause"]
    assert {r["print_id"] for r in rows} == {offline["current_print"]["id"]}
    rows = await history(env, idle["id"])
    assert {(r["outcome"], r["error"], r["print_id"]) for r in rows} == {("not_sent", "not printing", None)}
    assert len(rows) == 6

    # A status older than the TTL makes the printer offline too.
    stale, stale_agent = await printing(env, "Stale")
    env.clock.advance(env.settings.status_ttl_s + 1)
    await wait_for(lambda: not env.bridge.store.printers.get(stale["id"]).online, what="stale")  # type: ignore[union-attr]
    body = await env.action(stale["id"], "pause_print")
    assert (body["succeeded"], body["error"]) == (False, "printer offline") and body["printer"]["status"] is None
    assert stale_agent.commands == []


async def test_archived_other_users_and_unknown_printers_are_404(env: BridgeEnv) -> None:
    mine, agent = await printing(env)
    archived = await env.create_printer("Archived")
    resp = await env.client.patch(
        f"/api/v1/printers/{archived['id']}/", json={"archived_at": "2024-05-28T12:00:00Z"}, headers=env.auth()
    )
    assert resp.status_code == 200, resp.text
    _, bob_token = env.add_user("bob")
    bobs = await env.create_printer("Bob's", token=bob_token)

    cases = [
        (archived["id"], {}),
        (archived["id"], {"with_archived": "true"}),
        (bobs["id"], {}),
        (bobs["id"], {"mute_alert": "maybe", "alert_overwrite": "PERHAPS"}),  # 404 before validation
        (mine["id"] + 1000, {}),
    ]
    for printer_id, params in cases:
        for name in ALL_ACTIONS:
            for method in ("POST", "GET"):
                resp = await env.client.request(
                    method, f"/api/v1/printers/{printer_id}/{name}", headers=env.auth(), params=params
                )
                assert resp.status_code == 404, (printer_id, name, method, resp.text)
                assert resp.json() == {"detail": "Not found."}
        resp = await env.client.get(f"/api/v1/printers/{printer_id}/commands/", headers=env.auth())
        assert resp.status_code == 404
    resp = await env.client.post(f"/api/v1/printers/{mine['id']}/pause_print")
    assert resp.status_code == 401
    assert agent.commands == []
    assert await history(env, mine["id"]) == []


# -- MQTT 5 ------------------------------------------------------------------------------------------


async def test_mqtt5_command_carries_response_topic_and_correlation_data(broker: Broker, tmp_path: Path) -> None:
    async with running_bridge(broker, tmp_path / "pb.db", mqtt_protocol="5", command_timeout_s=TIMEOUT_S) as env:
        printer, agent = await printing(env, protocol=MQTTProtocolVersion.MQTTv5)
        pid = printer["id"]
        body = await env.action(pid, "pause_print")
        assert (body["succeeded"], body["error"]) == (True, None)
        agent.ack_mode = "refuse"
        body = await env.action(pid, "cancel_print", method="GET")
        assert (body["succeeded"], body["error"]) == (False, "refused by the test agent")
        assert [c["cmd"] for c in agent.commands] == ["pause", "cancel"]
        assert agent.command_properties == [
            {"response_topic": env.topics.ack(pid), "correlation_data": c["cmd_id"].encode()} for c in agent.commands
        ]
        assert [r["outcome"] for r in await history(env, pid)] == ["refused", "acked"]


# -- many at once ------------------------------------------------------------------------------------


async def test_concurrent_actions_each_get_their_own_answer(env: BridgeEnv) -> None:
    """5 printers x 2 actions in flight together. Printers 0-1 ack by themselves (ok, refuse); printers
    2-4 are silent and the test answers each command by hand, the second one first, with an error
    naming the command, so that every answer can be matched to its own command."""
    http = ThreadedHttp(env)
    fleet = [await printing(env, f"P{i}") for i in range(5)]
    fleet[1][1].ack_mode, fleet[1][1].refuse_error = "refuse", "P1 says no"
    for _, agent in fleet[2:]:
        agent.ack_mode = "silent"
    pairs = ("pause_print", "cancel_print"), ("resume_print", "cancel_print")
    requests = []
    for i, (printer, _) in enumerate(fleet):
        for name in pairs[i % 2]:
            requests.append((printer["id"], name))
    tasks = [asyncio.ensure_future(http.action(pid, name, "GET" if n % 2 else "POST")) for n, (pid, name) in
             enumerate(requests)]  # fmt: skip

    answers: dict[str, tuple[bool, str | None]] = {}  # cmd_id -> what its agent answered
    for _, agent in fleet[2:]:
        first = await asyncio.to_thread(agent.wait_command)
        second = await asyncio.to_thread(agent.wait_command)
        answers[second["cmd_id"]] = (False, f"no to {second['cmd']} {second['cmd_id']}")
        await asyncio.to_thread(agent.send_ack, second["cmd_id"], False, answers[second["cmd_id"]][1])
        answers[first["cmd_id"]] = (True, None)
        await asyncio.to_thread(agent.send_ack, first["cmd_id"], True)
    results = await asyncio.gather(*tasks)

    cmd_of = {"pause_print": "pause", "resume_print": "resume", "cancel_print": "cancel"}
    for (pid, name), body in zip(requests, results, strict=True):
        index = next(i for i, (p, _) in enumerate(fleet) if p["id"] == pid)
        agent = fleet[index][1]
        assert body["printer"]["id"] == pid
        (command,) = [c for c in agent.commands if c["cmd"] == cmd_of[name]]
        expected: tuple[bool, str | None]
        if index == 0:
            expected = (True, None)
        elif index == 1:
            expected = (False, "P1 says no")
        else:
            expected = answers[command["cmd_id"]]
        assert (body["succeeded"], body["error"]) == expected, (index, name)
        (row,) = [r for r in await history(env, pid) if r["cmd_id"] == command["cmd_id"]]
        assert row["outcome"] == ("acked" if expected[0] else "refused") and row["error"] == expected[1]
    assert sum(len(agent.commands) for _, agent in fleet) == 10
    assert env.bridge.commands.in_flight == 0


async def test_a_waiting_action_does_not_block_requests_and_is_answered_when_the_broker_stops(
    broker: Broker, tmp_path: Path
) -> None:
    async with running_bridge(broker, tmp_path / "pb.db", command_timeout_s=10.0) as env:
        http = ThreadedHttp(env)
        printer, agent = await printing(env)
        agent.ack_mode = "silent"
        started = time.monotonic()
        pending = asyncio.ensure_future(http.action(printer["id"], "pause_print"))
        await asyncio.to_thread(agent.wait_command)

        health = await http.request("GET", "/health")
        assert (health.status_code, health.json()) == (200, {"mqtt": "connected", "db": "ok"})
        listed = await http.request("GET", "/api/v1/printers/")
        assert listed.status_code == 200 and listed.json()[0]["id"] == printer["id"]
        assert not pending.done()

        await asyncio.to_thread(broker.stop)
        body = await pending
        assert (body["succeeded"], body["error"]) == (False, "broker connection lost")
        assert time.monotonic() - started < 5.0  # answered by the disconnect, not the 10 s timeout
        (row,) = await history(env, printer["id"])
        assert (row["outcome"], row["error"]) == ("timeout", "broker connection lost")
        assert env.bridge.commands.in_flight == 0


async def test_a_pending_action_is_answered_when_the_bridge_shuts_down(broker: Broker, tmp_path: Path) -> None:
    db = tmp_path / "pb.db"
    async with running_bridge(broker, db, command_timeout_s=10.0) as env:
        http = ThreadedHttp(env)
        printer, agent = await printing(env)
        agent.ack_mode = "silent"
        pending = asyncio.ensure_future(http.action(printer["id"], "resume_print"))
        await asyncio.to_thread(agent.wait_command)
        started = time.monotonic()
    body = await pending
    assert (body["succeeded"], body["error"]) == (False, "bridge shutting down")
    assert time.monotonic() - started < 5.0
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT cmd, outcome, error FROM commands").fetchall()
    assert rows == [("resume", "timeout", "bridge shutting down")]


# -- mute and acknowledge -----------------------------------------------------------------------------


async def next_remote_status(agent: TestAgent, seen: int) -> dict[str, Any]:
    """The remote_status the agent received after the first `seen` ones."""
    await wait_for(lambda: len(agent.remote_statuses) > seen, what="a remote_status")
    return agent.remote_statuses[seen]


async def test_mute_and_unmute(env: BridgeEnv) -> None:
    printer, agent = await printing(env)
    pid = printer["id"]
    await wait_for(lambda: agent.remote_statuses[-1:] == [{"should_watch": True}], what="watching the print")
    seen = len(agent.remote_statuses)
    probe = await admin_probe(env, env.topics.event(pid))
    try:
        body = await env.action(pid, "mute_current_print")
        assert (body["succeeded"], body["error"]) == (True, None)
        muted_at = body["printer"]["current_print"]["alert_muted_at"]
        assert iso_now_ish(muted_at)
        assert body["printer"]["not_watching_reason"] == "Alerts are muted for current print"
        event = await asyncio.to_thread(probe.expect, lambda m: m.topic == env.topics.event(pid))
        decoded = msgspec.json.decode(event.payload)
        assert decoded["event_type"] == "ALERT_MUTED"
        assert decoded["printer"] == {"id": pid, "name": "Prusa"}
        assert decoded["print"]["id"] == printer["current_print"]["id"]
        assert decoded["print"]["alert_muted_at"] == muted_at
        assert isinstance(decoded["ts"], float)
        assert await next_remote_status(agent, seen) == {"should_watch": False}

        for bad in ("maybe", "2", ""):
            resp = await env.client.post(
                f"/api/v1/printers/{pid}/mute_current_print", headers=env.auth(), params={"mute_alert": bad}
            )
            assert resp.status_code == 400, bad
            assert "mute_alert" in resp.json()["detail"]
        assert (await env.get_printer(pid))["current_print"]["alert_muted_at"] == muted_at

        body = await env.action(pid, "mute_current_print", mute_alert="FALSE")
        assert (body["succeeded"], body["error"]) == (True, None)
        assert body["printer"]["current_print"]["alert_muted_at"] is None
        assert body["printer"]["not_watching_reason"] is None
        event = await asyncio.to_thread(probe.expect, lambda m: m.topic == env.topics.event(pid))
        assert msgspec.json.decode(event.payload)["event_type"] == "ALERT_UNMUTED"
        assert await next_remote_status(agent, seen + 1) == {"should_watch": True}

        body = await env.action(pid, "mute_current_print", method="GET", mute_alert="yes")
        assert body["printer"]["current_print"]["alert_muted_at"] is not None
        event = await asyncio.to_thread(probe.expect, lambda m: m.topic == env.topics.event(pid))
        assert msgspec.json.decode(event.payload)["event_type"] == "ALERT_MUTED"
        assert await next_remote_status(agent, seen + 2) == {"should_watch": False}

        # What an agent connecting now gets: the retained remote_status.
        await asyncio.to_thread(probe.subscribe, env.topics.remote_status(pid))
        retained = await asyncio.to_thread(probe.expect, lambda m: m.topic == env.topics.remote_status(pid))
        assert retained.retain and msgspec.json.decode(retained.payload) == {"should_watch": False}
    finally:
        await asyncio.to_thread(probe.close)
    assert len(agent.remote_statuses) == seen + 3
    assert agent.commands == []
    assert await history(env, pid) == []


async def test_acknowledge_alert(env: BridgeEnv) -> None:
    printer, agent = await printing(env)
    pid = printer["id"]
    body = await env.action(pid, "acknowledge_alert", alert_overwrite="FAILED")
    assert (body["succeeded"], body["error"]) == (True, None)
    current = body["printer"]["current_print"]
    assert (current["alert_acknowledged_at"], current["alert_overwrite"]) == (None, None)  # no alert: nothing

    await set_alert(env, pid)
    body = await env.action(pid, "acknowledge_alert")
    current = body["printer"]["current_print"]
    assert body["succeeded"] is True and iso_now_ish(current["alert_acknowledged_at"])
    assert current["alert_overwrite"] is None
    first_ack = current["alert_acknowledged_at"]

    for bad in ("failed", "MAYBE", ""):
        resp = await env.client.post(
            f"/api/v1/printers/{pid}/acknowledge_alert", headers=env.auth(), params={"alert_overwrite": bad}
        )
        assert resp.status_code == 400, bad
        assert "alert_overwrite" in resp.json()["detail"]
    assert (await env.get_printer(pid))["current_print"]["alert_acknowledged_at"] == first_ack

    env.clock.advance(2)
    body = await env.action(pid, "acknowledge_alert", method="GET", alert_overwrite="NOT_FAILED")
    current = body["printer"]["current_print"]
    assert current["alert_overwrite"] == "NOT_FAILED"
    assert iso_now_ish(current["alert_acknowledged_at"]) and current["alert_acknowledged_at"] > first_ack
    assert (await env.get_printer(pid))["current_print"]["alert_overwrite"] == "NOT_FAILED"
    assert agent.commands == []


async def test_cancel_and_resume_judge_an_outstanding_alert_whatever_the_command_becomes(fast: BridgeEnv) -> None:
    env = fast
    offline, offline_agent = await printing(env, "Offline")
    refusing, refusing_agent = await printing(env, "Refusing")
    silent, silent_agent = await printing(env, "Silent")
    for printer in (offline, refusing, silent):
        await set_alert(env, printer["id"])
    refusing_agent.ack_mode, silent_agent.ack_mode = "refuse", "silent"
    await asyncio.to_thread(offline_agent.set_availability, False)
    await wait_for(lambda: not env.bridge.store.printers.get(offline["id"]).online, what="offline")  # type: ignore[union-attr]

    # pause leaves the alert alone
    body = await env.action(refusing["id"], "pause_print")
    assert body["succeeded"] is False and body["printer"]["current_print"]["alert_acknowledged_at"] is None

    for printer, name, method, verdict, error in (
        (offline, "cancel_print", "POST", "FAILED", "printer offline"),
        (refusing, "resume_print", "GET", "NOT_FAILED", "refused by the test agent"),
        (silent, "cancel_print", "GET", "FAILED", "timeout"),
    ):
        body = await env.action(printer["id"], name, method=method)
        assert (body["succeeded"], body["error"]) == (False, error)
        current = body["printer"]["current_print"]
        assert current["alert_overwrite"] == verdict and iso_now_ish(current["alert_acknowledged_at"])
        stored = env.bridge.store.prints.of(printer["id"])[-1]
        assert stored.alert_overwrite == verdict and stored.alert_acknowledged_at is not None
    assert offline_agent.commands == []


# -- round-trip time -----------------------------------------------------------------------------------


async def test_round_trip_time_of_an_action(env: BridgeEnv, capsys: pytest.CaptureFixture[str]) -> None:
    """HTTP request -> command -> agent ack -> HTTP answer, 50 times in a row (printed, not asserted)."""
    printer, agent = await printing(env)
    pid = printer["id"]
    times_ms = []
    for n in range(50):
        started = time.perf_counter()
        body = await env.action(pid, "resume_print" if n % 2 else "pause_print")
        times_ms.append((time.perf_counter() - started) * 1000)
        assert body["succeeded"] is True
    bridge_ms = [r["latency_ms"] for r in await history(env, pid, limit=50)]
    assert len(agent.commands) == 50 and len(bridge_ms) == 50

    def summary(values: list[float]) -> str:
        ordered = sorted(values)
        p95 = ordered[int(0.95 * (len(ordered) - 1))]
        return f"median {statistics.median(ordered):.2f} ms, p95 {p95:.2f} ms, max {ordered[-1]:.2f} ms"

    with capsys.disabled():
        print(f"\naction round trip over HTTP (n=50): {summary(times_ms)}")
        print(f"command -> ack as the bridge recorded it (n=50): {summary(bridge_ms)}")
