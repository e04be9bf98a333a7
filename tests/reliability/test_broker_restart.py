"""Broker restart while agents publish and an action is in flight (issue 8)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from tests.reliability.support import Recorder, rest
from tests.support.agent import agent_message
from tests.support.broker import Broker, connected_probe
from tests.support.env import running_bridge, wait_for


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_broker_restart_loses_nothing_and_answers_actions(broker: Broker, tmp_path: Path, protocol: str) -> None:
    # A long command timeout: the in-flight action must be answered by the disconnect, not by the timeout.
    db = tmp_path / "db.sqlite"
    async with running_bridge(broker, db, command_timeout_s=30.0, mqtt_protocol=protocol) as env:
        printer = await env.create_printer("Restart")
        pid = printer["id"]
        agent = await env.agent(printer)
        agent.ack_mode = "silent"
        status_topic = env.topics.printer(pid, "status")
        await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time(), event="PrintStarted"), retain=True)
        await wait_for(lambda: env.bridge.store.printers[pid].current_print is not None, what="the print")
        recorder = Recorder(env)
        connects = env.bridge.link.connect_count

        action = asyncio.create_task(rest(env, "POST", f"/api/v1/printers/{pid}/pause_print"))
        await asyncio.to_thread(agent.wait_command)
        started = time.monotonic()
        await asyncio.to_thread(broker.restart)
        back = time.monotonic()

        response = await asyncio.wait_for(action, 5)
        assert response.status_code == 200
        result = response.json()
        answered_after = time.monotonic() - started
        assert result["succeeded"] is False
        assert result["error"] == "broker connection lost"
        assert answered_after < 5

        # A client that publishes as soon as the broker accepts connections (before the bridge is back).
        with connected_probe(broker) as probe:
            early = agent_message(ts=time.time() + 1, completion=42.0)
            probe.publish(status_topic, msgspec.json.encode(early))
            await wait_for(lambda: env.bridge.link.connect_count > connects, 5, "the bridge to reconnect")
            reconnect_s = time.monotonic() - back

            # Picks up the agent's retained state on re-subscribing.
            await wait_for(
                lambda: any(m.retain for _, m in recorder.on(status_topic, back)),
                5,
                "the retained status after the restart",
            )
            first_status_s = recorder.on(status_topic, back)[0][0] - back
            print(f"\nbroker back -> reconnected {reconnect_s:.3f} s, first status ingested {first_status_s:.3f} s")
            assert first_status_s < 2.0

            # Nothing published after the broker is back is lost.
            for i in range(30):
                msg = agent_message(ts=time.time() + 2 + i, completion=float(i))
                await asyncio.to_thread(probe.publish, status_topic, msgspec.json.encode(msg))
            await wait_for(lambda: env.bridge.store.printers[pid].progress == 29.0, 5, "the last status")
        live = [m for _, m in recorder.on(status_topic, back) if not m.retain]
        completions = [msgspec.json.decode(m.payload)["status"]["progress"]["completion"] for m in live]
        assert 42.0 in completions, "the status published before the bridge reconnected was lost"
        assert [c for c in completions if c != 42.0] == [float(i) for i in range(30)]


async def test_broker_that_lost_its_data_gets_online_and_discovery_again(broker: Broker, tmp_path: Path) -> None:
    """The broker comes back without its retained messages: the bridge re-publishes what it owns."""
    async with running_bridge(broker, tmp_path / "db.sqlite") as env:
        printer = await env.create_printer("Wiped")
        connects = env.bridge.link.connect_count
        assert broker.config_path is not None
        await asyncio.to_thread(broker.stop)
        (broker.config_path.parent / "mosquitto.db").unlink(missing_ok=True)
        await asyncio.to_thread(broker._launch)
        await wait_for(lambda: env.bridge.link.connect_count > connects, 5, "the bridge to reconnect")
        await wait_for(lambda: env.bridge.mqtt_connected, 5, "the bridge to be connected")
        discovery = f"{env.settings.ha_prefix}/device/printbridge_{printer['id']}/config"
        with connected_probe(broker) as probe:
            probe.subscribe(env.topics.bridge_state)
            probe.subscribe(discovery)
            state = await asyncio.to_thread(probe.expect, lambda m: m.topic == env.topics.bridge_state)
            assert (state.payload, state.retain) == (b"online", True)
            config = await asyncio.to_thread(probe.expect, lambda m: m.topic == discovery)
            assert config.retain
            assert msgspec.json.decode(config.payload)["device"]["identifiers"] == [f"printbridge_{printer['id']}"]
