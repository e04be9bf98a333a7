"""Load, fast version (issue 8): 200 printers publishing status at 5 Hz for 5 s through one multi-printer client
(the broker's admin), while REST clients read and run actions. The long version is tests/soak/soak_load.py."""

from __future__ import annotations

import asyncio
import time

import msgspec
import paho.mqtt.client as paho

from tests.reliability.support import on_bridge_loop, rest
from tests.support.agent import agent_message
from tests.support.broker import connected_probe
from tests.support.env import BridgeEnv, wait_for

PRINTERS = 200
RATE_HZ = 5
SECONDS = 5


async def test_200_printers_at_5_hz_with_rest_and_actions(env: BridgeEnv) -> None:
    store = env.bridge.store
    ids = on_bridge_loop(env, lambda: [store.printers.create(env.user_id, f"load-{i}").id for i in range(PRINTERS)])
    acting = [await env.create_printer(f"acting-{i}") for i in range(3)]
    for printer in acting:
        agent = await env.agent(printer)
        await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time(), event="PrintStarted"))
    await wait_for(lambda: all(store.printers[p["id"]].current_print for p in acting), what="the acting prints")
    handled_before = env.bridge.inbound.handled
    rounds = RATE_HZ * SECONDS

    def publish() -> int:
        sent = 0
        with connected_probe(env.broker, mqtt5=False) as probe:
            start = time.monotonic()
            for r in range(rounds):
                infos = []
                for pid in ids:
                    msg = agent_message(ts=time.time(), completion=float(r), settings=False)
                    infos.append(probe.client.publish(env.topics.status(pid), msgspec.json.encode(msg), qos=1))
                for info in infos:
                    info.wait_for_publish(10)
                    assert info.rc == paho.MQTT_ERR_SUCCESS
                sent += len(infos)
                delay = start + (r + 1) / RATE_HZ - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        return sent

    publisher = asyncio.create_task(asyncio.to_thread(publish))
    reads = actions = 0
    worst_action_s = 0.0
    while not publisher.done():
        listing = await rest(env, "GET", "/api/v1/printers/")
        assert listing.status_code == 200
        reads += 1
        for printer, name in zip(acting, ("pause_print", "resume_print", "cancel_print"), strict=True):
            if name == "cancel_print":
                continue  # keep the print going: cancel would end it
            began = time.monotonic()
            answer = await rest(env, "POST", f"/api/v1/printers/{printer['id']}/{name}")
            worst_action_s = max(worst_action_s, time.monotonic() - began)
            assert answer.status_code == 200
            assert answer.json()["succeeded"] is True, answer.json()["error"]
            actions += 1
    sent = await publisher
    drained_at = time.monotonic()
    await wait_for(lambda: env.bridge.inbound.handled - handled_before >= sent, 10, "every status to be handled")
    drain_s = time.monotonic() - drained_at
    await wait_for(lambda: store.pending_writes == 0, 5, "the last flush")
    final = float(rounds - 1)
    assert all(store.printers[pid].progress == final for pid in ids)
    body = (await rest(env, "GET", "/api/v1/printers/")).json()
    assert all(p["status"]["progress"]["completion"] == final for p in body if p["id"] in ids)
    print(
        f"\nload: {sent} statuses, handled {env.bridge.inbound.handled - handled_before}, "
        f"drained {drain_s:.2f} s after "
        f"the last publish; {reads} list reads, {actions} actions, slowest action {worst_action_s * 1000:.0f} ms"
    )
    assert worst_action_s < env.settings.command_timeout_s
    assert env.bridge.inbound.drops.total == 0
