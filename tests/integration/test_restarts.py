"""Restarts: the broker going away during a run, and the bridge itself restarting on the same database."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.integration.test_ingest import T1, probe, ready_agent, send
from tests.support.agent import agent_message
from tests.support.broker import Broker
from tests.support.env import BridgeEnv, Clock, running_bridge, wait_for


async def health(env: BridgeEnv) -> tuple[int, dict[str, Any]]:
    resp = await env.client.get("/health")
    body: dict[str, Any] = resp.json()
    return resp.status_code, body


async def test_broker_restart_bridge_reconnects_and_keeps_ingesting(env: BridgeEnv) -> None:
    printer = await env.create_printer("Prusa")
    pid = printer["id"]
    agent = await ready_agent(env, printer)
    await send(env, agent, agent_message(ts=time.time(), state_text="Before"))
    printer_settings = (await env.get_printer(pid))["settings"]
    assert printer_settings["agent"]["name"] == "octoprint_obico"
    link = env.bridge.link
    connects = link.connect_count
    assert await health(env) == (200, {"mqtt": "connected", "db": "ok"})

    await asyncio.to_thread(env.broker.stop)

    async def down() -> bool:
        return (await health(env)) == (503, {"mqtt": "disconnected", "db": "ok"})

    await wait_for(down, what="/health to say disconnected")
    # The HTTP API keeps serving from SQLite meanwhile.
    # (The broker publishes the agent's Will as it goes down, so the status itself may be null now.)
    body = await env.get_printer(pid)
    assert body["name"] == "Prusa" and body["settings"] == printer_settings
    # The bridge keeps trying (with backoff) while the broker is away.
    await wait_for(lambda: link.last_error is not None, what="a failed reconnection attempt")

    await asyncio.to_thread(env.broker.restart)

    async def up() -> bool:
        return (await health(env)) == (200, {"mqtt": "connected", "db": "ok"})

    await wait_for(up, timeout=10, what="/health to say connected again")
    assert link.connect_count == connects + 1

    # The bridge's retained `online` is back, and a status published after the restart shows up.
    async with probe(env.broker, env.topics.bridge_state) as p:
        msg = await asyncio.to_thread(p.expect, lambda m: m.topic == env.topics.bridge_state)
        assert (msg.payload, msg.retain) == (b"online", True)
    await asyncio.to_thread(agent.disconnect)
    env.agents.remove(agent)
    again = await ready_agent(env, printer)
    await send(env, again, agent_message(ts=time.time(), state_text="After the restart"))
    assert (await env.get_printer(pid))["status"]["state"]["text"] == "After the restart"


async def test_broker_restart_in_one_step(env: BridgeEnv) -> None:
    """`broker.restart()` while the bridge runs: it sees the outage and comes back by itself."""
    printer = await env.create_printer("Prusa")
    link = env.bridge.link
    connects = link.connect_count
    seen: list[str] = []
    restart = asyncio.ensure_future(asyncio.to_thread(env.broker.restart))

    async def reconnected() -> bool:
        seen.append((await health(env))[1]["mqtt"])
        return restart.done() and link.connect_count > connects and seen[-1] == "connected"

    await wait_for(reconnected, timeout=10, what="the bridge to reconnect after the broker restart")
    await restart
    assert "disconnected" in seen
    agent = await ready_agent(env, printer)
    await send(env, agent, agent_message(ts=time.time(), state_text="Later"))
    assert (await env.get_printer(printer["id"]))["status"]["state"]["text"] == "Later"


async def test_bridge_restart_keeps_users_printers_prints_settings_status_and_detection(
    broker: Broker, tmp_path: Path
) -> None:
    db = tmp_path / "printbridge.db"
    clock = Clock()
    settings_doc = {"agent": {"name": "octoprint_obico", "version": "2.6.1"}, "webcams": [{"name": "c"}]}
    async with running_bridge(broker, db, clock=clock) as env:
        settings = env.settings
        _, bob_token = env.add_user("bob")
        bobs = await env.create_printer("Bob's", token=bob_token)
        printer = await env.create_printer("Keeper", retract_on_pause=3.0, action_on_failure="NONE")
        pid = printer["id"]
        agent = await ready_agent(env, printer)
        now = time.time()
        # A finished print, then one in progress.
        await send(env, agent, agent_message(ts=now, current_print_ts=T1 - 5000, filename="old.gcode"))
        await send(env, agent, agent_message(ts=now + 1, current_print_ts=-1))
        msg = agent_message(ts=now + 2, current_print_ts=T1, event="PrintStarted", settings=settings_doc)
        await send(env, agent, msg)
        for p in (0.1, 0.4, 0.2, 0.3, 0.25):
            await send(env, agent, f'{{"p": {p}}}'.encode(), leaf="detection")
        rec = env.bridge.store.printers.get(pid)
        assert rec is not None
        detection_state = env.bridge.detector.state(rec)
        assert detection_state.lifetime_frames == 5 and detection_state.rolling_mean_long > 0
        before = await env.get_printer(pid)
        assert before["status"] is not None and before["current_print"]["filename"] == "benchy.gcode"
        prints_before = env.bridge.store.prints.of(pid)
        assert len(prints_before) == 2
        # The agent leaves without a word, as if the bridge were the one going away.
        await asyncio.to_thread(agent.disconnect, publish_offline=False)
        env.agents.remove(agent)

    async with running_bridge(broker, db, clock=clock, settings=settings) as env2:
        store = env2.bridge.store
        # Users and their tokens (bob's token was never rotated: it still works).
        resp = await env2.client.get("/api/v1/printers/", headers=env2.auth(bob_token))
        assert resp.status_code == 200 and [p["id"] for p in resp.json()] == [bobs["id"]]
        # The printer, its settings, latest status (within the TTL) and current print, all as before.
        after = await env2.get_printer(pid)
        assert after == before
        assert after["settings"] == settings_doc and after["agent_name"] == "octoprint_obico"
        assert after["retract_on_pause"] == 3.0 and after["action_on_failure"] == "NONE"
        assert store.prints.of(pid) == prints_before
        assert after["current_print"]["ended_at"] is None
        # The detection state, lifetime mean included.
        rec2 = store.printers.get(pid)
        assert rec2 is not None
        assert env2.bridge.detector.state(rec2) == detection_state

        # The agent carries on with the same print: no new print is opened.
        agent2 = await ready_agent(env2, printer)
        await send(env2, agent2, agent_message(ts=now + 3, current_print_ts=T1))
        assert (await env2.get_printer(pid))["current_print"]["id"] == before["current_print"]["id"]
        assert len(store.prints.of(pid)) == 2

        # The receive time survived too: past the TTL from it, the status is stale.
        clock.advance(settings.status_ttl_s + 1)

        async def stale() -> bool:
            return (await env2.get_printer(pid))["status"] is None

        await wait_for(stale, what="the status to go stale")


async def test_bridge_restart_sees_status_older_than_ttl_as_offline(broker: Broker, tmp_path: Path) -> None:
    db = tmp_path / "printbridge.db"
    clock = Clock()
    async with running_bridge(broker, db, clock=clock) as env:
        settings = env.settings
        printer = await env.create_printer("Prusa")
        agent = await ready_agent(env, printer)
        await send(env, agent, agent_message(ts=time.time()))
        await asyncio.to_thread(agent.disconnect, publish_offline=False)
        env.agents.remove(agent)
    clock.advance(settings.status_ttl_s + 5)
    async with running_bridge(broker, db, clock=clock, settings=settings) as env2:
        body = await env2.get_printer(printer["id"])
        assert body["status"] is None
        assert body["current_print"] is not None
