"""Failure detection end to end (docs/detection.md, issue 4): detection frames over MQTT in, decisions seen through
REST, the event topic, `remote_status` and the commands the printer agent receives.

The alert scenarios are those of Obico's own test-suite. Frames are published by the printer on its own
`detection` topic. The test keeps a mirror of the prediction state (the pure maths of
`bridge.domain.detection`, unit-tested by hand) only to choose each frame's `p`: one frame that lifts
`ewm_mean - rolling_mean_long` to a chosen level, then `p = 0` frames until the prediction is calm again.
The 90-second cooldowns are crossed with the injected clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.domain import detection as d
from tests.support.agent import TestAgent, agent_message
from tests.support.broker import Broker, Probe, Received
from tests.support.env import BridgeEnv, Clock, running_bridge, wait_for

# Levels of (ewm_mean - rolling_mean_long) * sensitivity reached by one frame. While the short and the long
# mean are equal (a printer's first print), failing(f) is `level / f >= 0.38`: a warning needs a level in
# [0.38, 0.665), a pause one of at least 0.38 * 1.75 = 0.665; above 0.78 * 1.75 = 1.365 a pause is certain
# whatever the means, and normalized_p is then over 2/3.
WARNING_LEVEL = 0.5
FAILURE_LEVEL = 1.5
AFTER_COOLDOWN_S = d.COOLDOWN_S + 1
PAUSE_ARGS = {"retract": 6.5, "lift_z": 2.5, "tools_off": True}

REASON_DISABLED = "AI failure detection is disabled"
REASON_NOT_PRINTING = "Printer is not actively printing"
REASON_MUTED = "Alerts are muted for current print"

_json = msgspec.json.Decoder(dict[str, Any])


def frame(p: float) -> bytes:
    return msgspec.json.encode({"p": p})


def frame_reaching(state: d.PredictionState, level: float) -> float:
    """The `p` of the next frame that brings ewm_mean - rolling_mean_long to `level` (sensitivity 1).

    After a frame p: ewm' = alpha*p + (1 - alpha)*ewm and long' = long + (p - long)*k with k = 1/divisor,
    so ewm' - long' = p*(alpha - k) + (1 - alpha)*ewm - long*(1 - k), solved here for p. Once 30 frames
    are counted, k <= 1/31 < alpha.
    """
    n = state.lifetime_frames + 1
    k = 1 / (d.LONG_WINDOW if n >= d.LONG_WINDOW else n + 1)
    p = (level - (1 - d.ALPHA) * state.ewm_mean + state.rolling_mean_long * (1 - k)) / (d.ALPHA - k)
    assert p >= 0, f"level {level} cannot be reached from {state}"
    return p


def in_territory(state: d.PredictionState) -> bool:
    return d.should_pause(state, 1.0) or d.should_alert(state, 1.0)


class Scenario:
    """One printer with a connected agent, a print in progress, and an admin probe on its event topic."""

    def __init__(self, env: BridgeEnv, printer: dict[str, Any], agent: TestAgent, probe: Probe | None = None) -> None:
        self.env = env
        self.printer = printer
        self.pid: int = printer["id"]
        self.agent = agent
        self.probe = probe
        self.mirror = d.PredictionState()

    # -- frames -------------------------------------------------------------------------------------------

    async def publish(self, payloads: list[bytes]) -> None:
        def run() -> None:
            for payload in payloads:
                self.agent.publish_raw("detection", payload)

        await asyncio.to_thread(run)

    async def counted(self, ps: list[float]) -> None:
        """Publish frames that must count, and wait until the detector has processed them all."""
        start = self.env.bridge.detector.frames
        await self.publish([frame(p) for p in ps])
        await wait_for(lambda: self.env.bridge.detector.frames >= start + len(ps), what=f"{len(ps)} frames counted")
        assert self.env.bridge.detector.frames == start + len(ps)
        for p in ps:
            self.mirror = d.update_prediction(self.mirror, p)

    async def ignored(self, payloads: list[bytes], *, malformed: bool = False) -> None:
        """Publish frames that must not count: wait until ingest has handled (or dropped) them all."""
        ingest = self.env.bridge.inbound
        frames, handled, dropped = self.env.bridge.detector.frames, ingest.handled, ingest.drops.total
        await self.publish(payloads)
        if malformed:
            await wait_for(lambda: ingest.drops.total >= dropped + len(payloads), what="malformed frames dropped")
            assert ingest.handled == handled
        else:
            await wait_for(lambda: ingest.handled >= handled + len(payloads), what="frames handled")
            assert ingest.drops.total == dropped
        assert self.env.bridge.detector.frames == frames, "an ignored frame was counted"

    async def baseline(self, n: int = d.MIN_FRAMES) -> None:
        await self.counted([0.0] * n)

    def _calm_count(self, state: d.PredictionState) -> int:
        n = 0
        while in_territory(state):
            state = d.update_prediction(state, 0.0)
            n += 1
        return n

    async def peak(self, level: float) -> d.PredictionState:
        p = frame_reaching(self.mirror, level)
        await self.counted([p])
        return self.mirror

    async def calm(self) -> None:
        await self.counted([0.0] * self._calm_count(self.mirror))

    async def warning(self) -> None:
        """One frame in warning territory (should_alert, not should_pause), then calm frames."""
        state = await self.peak(WARNING_LEVEL)
        assert d.should_alert(state, 1.0) and not d.should_pause(state, 1.0), state
        await self.calm()

    async def failure(self, *, calm: bool = True) -> None:
        """One frame in pause territory, then (unless told not to) calm frames."""
        state = await self.peak(FAILURE_LEVEL)
        assert d.should_pause(state, 1.0), state
        if calm:
            await self.calm()

    # -- REST -----------------------------------------------------------------------------------------------

    async def rest(self) -> dict[str, Any]:
        return await self.env.get_printer(self.pid)

    async def current_print(self) -> dict[str, Any]:
        cp = (await self.rest())["current_print"]
        assert cp is not None
        return cp

    async def action(self, name: str, **params: Any) -> dict[str, Any]:
        return await self.env.action(self.pid, name, **params)

    async def patch(self, **fields: Any) -> dict[str, Any]:
        resp = await self.env.client.patch(f"/api/v1/printers/{self.pid}/", json=fields, headers=self.env.auth())
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def history(self) -> list[dict[str, Any]]:
        resp = await self.env.client.get(f"/api/v1/printers/{self.pid}/commands/", headers=self.env.auth())
        assert resp.status_code == 200, resp.text
        rows: list[dict[str, Any]] = resp.json()
        return rows

    # -- the agent --------------------------------------------------------------------------------------------

    async def status(self, **kwargs: Any) -> None:
        """Publish an agent message (docs/mqtt.md) and wait until the bridge has applied it."""
        handled = self.env.bridge.inbound.handled
        await asyncio.to_thread(self.agent.publish_status, agent_message(ts=time.time(), **kwargs))
        await wait_for(lambda: self.env.bridge.inbound.handled > handled, what="the agent message applied")

    async def next_command(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.agent.wait_command)

    async def remote_status(self) -> bool:
        body = await asyncio.to_thread(self.agent.wait_remote_status)
        return bool(body["should_watch"])

    async def automatic_pause(self) -> dict[str, Any]:
        """The pause failure detection sent: a real command to the agent, awaited until acked."""
        cmd = await self.next_command()
        assert (cmd["cmd"], cmd["initiator"], cmd["args"]) == ("pause", "system", PAUSE_ARGS)

        async def acked() -> dict[str, Any] | None:
            row = next(r for r in await self.history() if r["cmd_id"] == cmd["cmd_id"])
            return row if row["outcome"] is not None else None

        row = await wait_for(acked, what="the automatic pause's outcome")
        assert (row["cmd"], row["initiator"], row["outcome"], row["error"]) == ("pause", "system", "acked", None)
        assert row["args"] == cmd["args"]
        return cmd

    # -- events ---------------------------------------------------------------------------------------------

    async def events(self, *, muted: bool = False) -> list[dict[str, Any]]:
        """Every event published since the last call. A mute/unmute that changes nothing (it publishes
        ALERT_MUTED / ALERT_UNMUTED after everything the bridge published before) marks the end."""
        probe = self.probe
        assert probe is not None, "this scenario has no event probe"
        mark = self.env.clock()
        result = await self.action("mute_current_print", mute_alert=str(muted).lower())
        assert result["succeeded"] is True
        sentinel = "ALERT_MUTED" if muted else "ALERT_UNMUTED"
        topic = self.env.topics.event(self.pid)

        def collect() -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 5
            while True:
                try:
                    msg = probe.messages.get(timeout=max(deadline - time.monotonic(), 0.01))
                except queue.Empty:
                    raise AssertionError(f"no {sentinel} event within 5 s; saw {seen}") from None
                if msg.topic != topic:
                    continue
                event = _json.decode(msg.payload)
                if event["event_type"] == sentinel and event["ts"] >= mark:
                    return seen
                seen.append(event)

        return await asyncio.to_thread(collect)

    async def alerts(self, **kwargs: Any) -> list[dict[str, Any]]:
        return [e for e in await self.events(**kwargs) if e["event_type"] == "FAILURE_ALERTED"]


async def retained(env: BridgeEnv, topic: str, predicate: Callable[[dict[str, Any]], bool]) -> Received:
    """The retained message on `topic` as a consumer connecting now sees it (or the first update after
    it) that satisfies `predicate`."""
    probe = Probe(env.broker, env.broker.admin_username, env.broker.admin_password)
    assert await asyncio.to_thread(probe.connect) == 0
    try:
        await asyncio.to_thread(probe.subscribe, topic)
        return await asyncio.to_thread(probe.expect, lambda m: m.topic == topic and predicate(_json.decode(m.payload)))
    finally:
        await asyncio.to_thread(probe.close)


@asynccontextmanager
async def scenario(env: BridgeEnv, **printer_fields: Any) -> AsyncIterator[Scenario]:
    printer = await env.create_printer("Prusa", **printer_fields)
    agent = await env.agent(printer)
    assert await asyncio.to_thread(agent.wait_remote_status) == {"should_watch": False}
    probe = Probe(env.broker, env.broker.admin_username, env.broker.admin_password)
    assert await asyncio.to_thread(probe.connect) == 0
    try:
        assert (await asyncio.to_thread(probe.subscribe, env.topics.event(printer["id"])))[0] < 0x80
        s = Scenario(env, printer, agent, probe)
        await s.status(event="PrintStarted")
        assert (await s.current_print())["filename"] == "benchy.gcode"
        assert await s.remote_status() is True
        assert [e["event_type"] for e in await s.events()] == ["STARTED"]
        yield s
    finally:
        await asyncio.to_thread(probe.close)


@pytest.fixture
async def s(env: BridgeEnv) -> AsyncIterator[Scenario]:
    """A printer printing, watched, with the 30-frame baseline of this print already counted."""
    async with scenario(env) as started:
        await started.baseline()
        yield started


# ---------------------------------------------------------------------------------------------------------
# the "done when": a run of high-confidence detections alerts, pauses, and shows in REST
# ---------------------------------------------------------------------------------------------------------


async def test_failure_alerts_pauses_through_an_acked_command_and_shows_normalized_p(s: Scenario) -> None:
    before = await s.rest()
    assert before["normalized_p"] == 0.0
    assert before["not_watching_reason"] is None

    # a run of high-confidence frames in the Obico ML API's shape: p = the sum of the confidences
    p = frame_reaching(s.mirror, FAILURE_LEVEL)
    detections = {"detections": [["failure", p * 0.75, [10, 20, 30, 40]], ["failure", p * 0.25, [50, 60, 7, 8]]]}
    start = s.env.bridge.detector.frames
    await s.publish([msgspec.json.encode(detections)])
    await wait_for(lambda: s.env.bridge.detector.frames == start + 1, what="the detections frame")
    s.mirror = d.update_prediction(s.mirror, p * 0.75 + p * 0.25)
    for _ in range(3):
        await s.peak(FAILURE_LEVEL)

    body = await s.rest()
    assert body["normalized_p"] > 2 / 3
    assert body["normalized_p"] == pytest.approx(d.normalized_p(s.mirror, 1.0))
    cp = body["current_print"]
    assert cp["alerted_at"] is not None and cp["paused_at"] is not None
    assert cp["alerted_at"] == cp["paused_at"]
    assert cp["alert_acknowledged_at"] is None

    cmd = await s.automatic_pause()
    assert cmd["cmd_id"]
    assert len([c for c in await s.history() if c["initiator"] == "system"]) == 1

    alerts = await s.alerts()
    assert len(alerts) == 1
    assert alerts[0]["printer"] == {"id": s.pid, "name": "Prusa"}
    assert alerts[0]["print"]["id"] == cp["id"]
    assert alerts[0]["print"]["alerted_at"] is not None

    # the retained state (docs/mqtt.md) carries the same score and the outstanding alert
    msg = await retained(
        s.env, s.env.topics.state(s.pid), lambda st: st["normalized_p"] == pytest.approx(body["normalized_p"])
    )
    state = _json.decode(msg.payload)
    assert msg.retain and state["alert_outstanding"] is True and state["not_watching_reason"] is None


async def test_pause_args_follow_the_printer_settings(s: Scenario) -> None:
    await s.patch(retract_on_pause=3.0, lift_z_on_pause=1.0, tools_off_on_pause=False, bed_off_on_pause=True)
    await s.failure()
    cmd = await s.next_command()
    assert (cmd["cmd"], cmd["initiator"]) == ("pause", "system")
    assert cmd["args"] == {"retract": 3.0, "lift_z": 1.0, "bed_off": True}


# ---------------------------------------------------------------------------------------------------------
# Obico's alert scenarios
# ---------------------------------------------------------------------------------------------------------


async def test_warning_once_then_cancel_acknowledges_as_failed(s: Scenario) -> None:
    await s.warning()
    cp = await s.current_print()
    assert cp["alerted_at"] is not None and cp["paused_at"] is None
    assert len(await s.alerts()) == 1
    assert s.agent.commands == []  # a warning never pauses

    result = await s.action("cancel_print")
    assert result["succeeded"] is True
    cmd = await s.next_command()
    assert (cmd["cmd"], cmd["initiator"]) == ("cancel", "api")
    cp = result["printer"]["current_print"]
    assert cp["alert_acknowledged_at"] is not None
    assert cp["alert_overwrite"] == "FAILED"


async def test_warning_then_acknowledge_as_not_failed(s: Scenario) -> None:
    await s.warning()
    result = await s.action("acknowledge_alert", alert_overwrite="NOT_FAILED")
    assert result["succeeded"] is True
    cp = result["printer"]["current_print"]
    assert cp["alert_acknowledged_at"] is not None and cp["alert_acknowledged_at"] >= cp["alerted_at"]
    assert cp["alert_overwrite"] == "NOT_FAILED"
    assert s.agent.commands == []


async def test_second_warning_suppressed_while_the_first_is_outstanding(s: Scenario) -> None:
    await s.warning()
    first = (await s.current_print())["alerted_at"]
    s.env.clock.advance(AFTER_COOLDOWN_S)  # the cooldown is over, but the alert is still outstanding
    await s.warning()
    assert (await s.current_print())["alerted_at"] == first
    assert len(await s.alerts()) == 1


async def test_error_twice_pauses_once(s: Scenario) -> None:
    await s.failure()
    await s.automatic_pause()
    cp = await s.current_print()
    s.env.clock.advance(AFTER_COOLDOWN_S)
    await s.failure()
    after = await s.current_print()
    assert (after["paused_at"], after["alerted_at"]) == (cp["paused_at"], cp["alerted_at"])
    assert len(await s.alerts()) == 1
    assert [c["cmd"] for c in await s.history()] == ["pause"]
    assert len(s.agent.commands) == 1


async def test_acknowledged_warning_then_a_new_warning_alerts_again(s: Scenario) -> None:
    await s.warning()
    first = (await s.current_print())["alerted_at"]
    await s.action("acknowledge_alert", alert_overwrite="NOT_FAILED")
    s.env.clock.advance(AFTER_COOLDOWN_S)
    await s.warning()
    cp = await s.current_print()
    assert cp["alerted_at"] > first
    assert cp["alerted_at"] > cp["alert_acknowledged_at"]  # outstanding again
    assert len(await s.alerts()) == 2
    assert s.agent.commands == []


async def test_no_alert_again_shortly_after_an_acknowledgment(s: Scenario) -> None:
    await s.warning()
    first = (await s.current_print())["alerted_at"]
    await s.action("acknowledge_alert")
    s.env.clock.advance(30)  # acknowledged, but the last alert is only 30 s old
    await s.warning()
    assert (await s.current_print())["alerted_at"] == first
    assert len(await s.alerts()) == 1
    s.env.clock.advance(AFTER_COOLDOWN_S - 30)
    await s.warning()
    assert (await s.current_print())["alerted_at"] > first
    assert len(await s.alerts()) == 1


async def test_mute_stops_further_alerts(s: Scenario) -> None:
    await s.warning()
    await s.action("acknowledge_alert")
    result = await s.action("mute_current_print")
    assert result["succeeded"] is True
    assert result["printer"]["current_print"]["alert_muted_at"] is not None
    assert result["printer"]["not_watching_reason"] == REASON_MUTED
    assert await s.remote_status() is False

    s.env.clock.advance(AFTER_COOLDOWN_S)
    await s.ignored([frame(frame_reaching(s.mirror, WARNING_LEVEL))] * 3)
    await s.ignored([frame(frame_reaching(s.mirror, FAILURE_LEVEL))] * 3)
    events = await s.events(muted=True)
    assert [e["event_type"] for e in events] == ["FAILURE_ALERTED", "ALERT_MUTED"]
    assert s.agent.commands == []
    assert (await s.current_print())["paused_at"] is None

    # unmuted, frames count again and alert
    result = await s.action("mute_current_print", mute_alert="false")
    assert result["printer"]["not_watching_reason"] is None
    assert await s.remote_status() is True
    await s.warning()
    assert len(await s.alerts()) == 1


async def test_error_after_an_acknowledged_warning_pauses(s: Scenario) -> None:
    await s.warning()
    await s.action("acknowledge_alert", alert_overwrite="NOT_FAILED")
    s.env.clock.advance(AFTER_COOLDOWN_S)
    await s.failure()
    await s.automatic_pause()
    cp = await s.current_print()
    assert cp["paused_at"] is not None and cp["paused_at"] == cp["alerted_at"]
    assert len(await s.alerts()) == 2


async def test_no_pause_within_90_s_of_an_acknowledgment(s: Scenario) -> None:
    await s.warning()
    first = (await s.current_print())["alerted_at"]
    await s.action("acknowledge_alert", alert_overwrite="NOT_FAILED")
    await s.failure()  # within 90 s of the acknowledgment: neither pause nor alert
    cp = await s.current_print()
    assert cp["paused_at"] is None and cp["alerted_at"] == first
    assert s.agent.commands == []
    assert len(await s.alerts()) == 1

    s.env.clock.advance(AFTER_COOLDOWN_S)
    await s.failure()
    await s.automatic_pause()
    assert (await s.current_print())["paused_at"] is not None
    assert len(await s.alerts()) == 1


async def test_resume_acknowledges_the_alert(s: Scenario) -> None:
    await s.failure()
    await s.automatic_pause()
    result = await s.action("resume_print")
    assert result["succeeded"] is True
    cmd = await s.next_command()
    assert (cmd["cmd"], cmd["initiator"]) == ("resume", "api")
    cp = await s.current_print()
    assert cp["alert_acknowledged_at"] is not None and cp["alert_overwrite"] == "NOT_FAILED"
    assert cp["paused_at"] is None  # a person resumed: detection may pause this print again

    await s.failure()  # within 90 s of the acknowledgment that resuming made
    assert (await s.current_print())["paused_at"] is None
    assert len(s.agent.commands) == 2

    s.env.clock.advance(AFTER_COOLDOWN_S)
    await s.failure()
    await s.automatic_pause()
    assert [c["cmd"] for c in await s.history()] == ["pause", "resume", "pause"]
    assert len(await s.alerts()) == 2


async def test_a_resume_event_from_the_printer_is_not_an_acknowledgment(s: Scenario) -> None:
    await s.failure()
    await s.automatic_pause()
    first = await s.current_print()
    await s.status(paused=True, event="PrintPaused")
    assert (await s.rest())["not_watching_reason"] == REASON_NOT_PRINTING
    await s.status(event="PrintResumed")
    assert (await s.rest())["not_watching_reason"] is None
    cp = await s.current_print()
    assert cp["alert_acknowledged_at"] is None and cp["alert_overwrite"] is None

    s.env.clock.advance(AFTER_COOLDOWN_S)
    await s.failure()  # the alert is still outstanding and the print was paused by detection already
    cp = await s.current_print()
    assert (cp["alerted_at"], cp["paused_at"]) == (first["alerted_at"], first["paused_at"])
    assert [e["event_type"] for e in await s.events()] == ["FAILURE_ALERTED", "PAUSED", "RESUMED"]
    assert len(s.agent.commands) == 1


async def test_muted_after_an_error_no_more_pauses(s: Scenario) -> None:
    await s.failure()
    await s.automatic_pause()
    assert (await s.action("resume_print"))["succeeded"] is True  # paused_at cleared: it could pause again
    assert (await s.action("mute_current_print"))["succeeded"] is True
    s.env.clock.advance(AFTER_COOLDOWN_S)
    await s.ignored([frame(frame_reaching(s.mirror, FAILURE_LEVEL))] * 5)
    assert [c["cmd"] for c in await s.history()] == ["resume", "pause"]
    cp = await s.current_print()
    assert cp["paused_at"] is None
    assert len(await s.alerts(muted=True)) == 1


async def test_action_none_alerts_without_pausing(env: BridgeEnv) -> None:
    async with scenario(env, action_on_failure="NONE") as s:
        await s.baseline()
        await s.failure()
        cp = await s.current_print()
        assert cp["alerted_at"] is not None and cp["paused_at"] is None
        assert len(await s.alerts()) == 1
        s.env.clock.advance(AFTER_COOLDOWN_S)
        await s.failure()  # outstanding: no second alert
        assert len(await s.alerts()) == 0
        await s.action("acknowledge_alert")
        s.env.clock.advance(AFTER_COOLDOWN_S)
        await s.failure()  # acknowledged and the cooldown over: alerts again, still no pause
        assert len(await s.alerts()) == 1
        cp = await s.current_print()
        assert cp["paused_at"] is None and cp["alerted_at"] > cp["alert_acknowledged_at"]
        assert await s.history() == [] and s.agent.commands == []


async def test_paused_once_then_resumed_in_the_printer_is_not_paused_again(s: Scenario) -> None:
    await s.failure()
    await s.automatic_pause()
    paused_at = (await s.current_print())["paused_at"]
    await s.status(paused=True, event="PrintPaused")
    await s.status(event="PrintResumed")
    await s.action("acknowledge_alert", alert_overwrite="NOT_FAILED")
    s.env.clock.advance(AFTER_COOLDOWN_S)
    await s.failure()  # alerts again (acknowledged, cooldown over) but does not pause a second time
    cp = await s.current_print()
    assert cp["paused_at"] == paused_at
    assert cp["alerted_at"] > cp["alert_acknowledged_at"]
    assert len(await s.alerts()) == 2
    assert [c["cmd"] for c in await s.history()] == ["pause"]


async def test_detective_sensitivity_scales_the_score(s: Scenario) -> None:
    weak = 0.35  # under the 0.38 warning threshold at sensitivity 1, over it at 1.2 (0.42)
    await s.peak(weak)
    assert (await s.rest())["normalized_p"] == pytest.approx(d.normalized_p(s.mirror, 1.0)) and not in_territory(
        s.mirror
    )
    assert (await s.current_print())["alerted_at"] is None
    await s.calm()

    await s.patch(detective_sensitivity=1.2)
    await s.peak(weak)
    assert d.should_alert(s.mirror, 1.2)
    body = await s.rest()
    assert body["normalized_p"] == pytest.approx(d.normalized_p(s.mirror, 1.2))
    assert body["normalized_p"] > 1 / 3  # over the warning threshold
    assert body["current_print"]["alerted_at"] is not None
    assert len(await s.alerts()) == 1
    assert s.agent.commands == []


# ---------------------------------------------------------------------------------------------------------
# frames that do not count, bad frames, bursts
# ---------------------------------------------------------------------------------------------------------


async def test_fewer_than_30_frames_of_a_print_never_alert(env: BridgeEnv) -> None:
    async with scenario(env) as s:
        await s.counted([0.0] * (d.MIN_FRAMES - 2))
        await s.peak(FAILURE_LEVEL)  # frame 29: far into pause territory, but too early in the print
        assert s.mirror.print_frames == d.MIN_FRAMES - 1
        cp = await s.current_print()
        assert cp["alerted_at"] is None and cp["paused_at"] is None
        assert (await s.rest())["normalized_p"] > 2 / 3  # the score is shown all the same
        await s.peak(FAILURE_LEVEL)  # frame 30
        await s.automatic_pause()


async def test_frames_without_a_current_print_are_ignored(env: BridgeEnv) -> None:
    printer = await env.create_printer("Idle")
    agent = await env.agent(printer)
    s = Scenario(env, printer, agent)
    await s.status(printing=False, current_print_ts=-1)
    body = await s.rest()
    assert body["current_print"] is None and body["status"] is not None
    await s.ignored([frame(5.0)] * 40)
    body = await s.rest()
    assert body["normalized_p"] == 0.0
    assert body["not_watching_reason"] == REASON_NOT_PRINTING
    assert s.env.bridge.detector.state(s.env.bridge.store.printers[s.pid]) == d.PredictionState()
    assert agent.commands == []


async def test_frames_with_watching_disabled_are_ignored(s: Scenario) -> None:
    body = await s.patch(watching_enabled=False)
    assert body["not_watching_reason"] == REASON_DISABLED
    assert await s.remote_status() is False
    await s.ignored([frame(frame_reaching(s.mirror, FAILURE_LEVEL))] * 5)
    cp = await s.current_print()
    assert cp["alerted_at"] is None and cp["paused_at"] is None
    assert (await s.rest())["normalized_p"] == 0.0
    assert s.agent.commands == []

    body = await s.patch(watching_enabled=True)
    assert body["not_watching_reason"] is None
    assert await s.remote_status() is True
    await s.failure()
    await s.automatic_pause()


async def test_malformed_frames_are_dropped(s: Scenario) -> None:
    bad = [
        b"not json",
        b"[1, 2]",
        b"{}",
        b'{"p": -0.5}',
        b'{"p": "high"}',
        b'{"p": 0.5, "detections": []}',
        b'{"detections": [["failure"]]}',
        b'{"detections": [["failure", "x", [1, 2, 3, 4]]]}',
        b'{"detections": "failure"}',
        b"\xff\xfe",
        msgspec.json.encode({"p": 0.1, "pad": "x" * (256 * 1024)}),
    ]
    before = s.env.bridge.detector.state(s.env.bridge.store.printers[s.pid])
    await s.ignored(bad, malformed=True)
    assert s.env.bridge.detector.state(s.env.bridge.store.printers[s.pid]) == before
    # the bridge goes on: good frames still count, unknown fields are tolerated
    start = s.env.bridge.detector.frames
    await s.publish([b'{"p": 0.25, "source": "ml-api"}', b'{"detections": []}'])
    await wait_for(lambda: s.env.bridge.detector.frames == start + 2, what="good frames after bad ones")
    s.mirror = d.update_prediction(d.update_prediction(s.mirror, 0.25), 0.0)
    assert s.env.bridge.detector.state(s.env.bridge.store.printers[s.pid]) == s.mirror
    assert (await s.rest())["normalized_p"] == pytest.approx(d.normalized_p(s.mirror, 1.0))


def _burst(env: BridgeEnv, printer: dict[str, Any], payloads: list[bytes]) -> None:
    """Publish `payloads` as fast as the broker takes them (no waiting between them), as the printer."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"burst-{printer['id']}-{time.monotonic_ns()}")
    if env.broker.dynsec:
        client.username_pw_set(f"printer-{printer['id']}", printer["auth_token"])
    elif env.broker.admin_username is not None:
        client.username_pw_set(env.broker.admin_username, env.broker.admin_password)
    client.max_inflight_messages_set(len(payloads))
    connected: queue.Queue[bool] = queue.Queue()
    client.on_connect = lambda c, u, f, rc, p: connected.put(not rc.is_failure)

    def nodelay(_c: paho.Client, _u: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client.on_socket_open = nodelay
    client.connect(env.broker.host, env.broker.port)
    client.loop_start()
    try:
        assert connected.get(timeout=5), "the printer's credentials were refused"
        topic = env.topics.printer(printer["id"], "detection")
        infos = [client.publish(topic, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(timeout=5)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


async def test_a_burst_of_frames_is_processed_in_order(s: Scenario) -> None:
    # distinct falling values (never into alert territory): in the reverse order ewm_mean would end high
    ps = [round(0.6 - 0.003 * i, 4) for i in range(200)]
    start = s.env.bridge.detector.frames
    await asyncio.to_thread(_burst, s.env, s.printer, [frame(p) for p in ps])
    await wait_for(lambda: s.env.bridge.detector.frames == start + len(ps), what="the burst counted")
    for p in ps:
        s.mirror = d.update_prediction(s.mirror, p)
    reversed_mirror = d.PredictionState(print_frames=d.MIN_FRAMES, lifetime_frames=d.MIN_FRAMES)
    for p in reversed(ps):
        reversed_mirror = d.update_prediction(reversed_mirror, p)
    assert abs(reversed_mirror.ewm_mean - s.mirror.ewm_mean) > 0.1  # the order shows in the result
    state = s.env.bridge.detector.state(s.env.bridge.store.printers[s.pid])
    assert state.print_frames == state.lifetime_frames == d.MIN_FRAMES + len(ps)
    assert state.ewm_mean == pytest.approx(s.mirror.ewm_mean)
    assert state.rolling_mean_short == pytest.approx(s.mirror.rolling_mean_short)
    assert (await s.rest())["normalized_p"] == pytest.approx(d.normalized_p(s.mirror, 1.0))


# ---------------------------------------------------------------------------------------------------------
# remote_status and not_watching_reason follow every change
# ---------------------------------------------------------------------------------------------------------


async def test_remote_status_follows_print_mute_and_watching(env: BridgeEnv) -> None:
    async with scenario(env) as s:  # created: false; print started: true (checked by scenario())
        assert (await s.rest())["not_watching_reason"] is None
        await s.action("mute_current_print")
        assert await s.remote_status() is False
        await s.action("mute_current_print", mute_alert="false")
        assert await s.remote_status() is True

        assert (await s.patch(watching_enabled=False))["not_watching_reason"] == REASON_DISABLED
        assert await s.remote_status() is False
        await s.action("mute_current_print")  # muted and disabled: still false, nothing new published
        assert (await s.rest())["not_watching_reason"] == REASON_DISABLED
        assert (await s.patch(watching_enabled=True))["not_watching_reason"] == REASON_MUTED
        await s.action("mute_current_print", mute_alert="false")
        assert await s.remote_status() is True
        assert (await s.rest())["not_watching_reason"] is None

        await s.patch(name="Prusa MK4", detective_sensitivity=1.2)  # no effect on should_watch
        await s.status(printing=False, current_print_ts=-1, event="PrintDone")
        assert await s.remote_status() is False
        body = await s.rest()
        assert body["current_print"] is None and body["normalized_p"] == 0.0
        assert body["not_watching_reason"] == REASON_NOT_PRINTING
        assert s.agent.remote_statuses == [{"should_watch": v} for v in (False, True, False, True, False, True, False)]

        # the retained value is the last one: a consumer connecting now reads false
        msg = await retained(env, env.topics.remote_status(s.pid), lambda _: True)
        assert msg.retain and _json.decode(msg.payload) == {"should_watch": False}
        state = _json.decode((await retained(env, env.topics.state(s.pid), lambda _: True)).payload)
        assert (state["current_print_id"], state["normalized_p"]) == (None, 0.0)


# ---------------------------------------------------------------------------------------------------------
# persistence and per-print reset
# ---------------------------------------------------------------------------------------------------------


def saved_prediction(db: Path, printer_id: int) -> d.PredictionState | None:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT prediction FROM printers WHERE id = ?", (printer_id,)).fetchone()
    finally:
        conn.close()
    return None if row is None or not row[0] else msgspec.json.decode(row[0], type=d.PredictionState)


async def test_lifetime_long_mean_survives_a_restart_and_per_print_values_reset(broker: Broker, tmp_path: Path) -> None:
    db = tmp_path / "printbridge.db"
    clock = Clock()
    async with running_bridge(broker, db, clock) as env, scenario(env) as s:
        await s.baseline()
        await s.counted([1.0] * 40)
        first_mirror = s.mirror
        printer = s.printer
        assert (await s.rest())["normalized_p"] == pytest.approx(d.normalized_p(first_mirror, 1.0))
        # the coalesced flush writes the prediction while the bridge runs, not only when it stops
        await wait_for(lambda: saved_prediction(db, printer["id"]) == first_mirror, what="the prediction saved")

    topics = {"base_topic": env.settings.base_topic, "ha_prefix": env.settings.ha_prefix}
    async with running_bridge(broker, db, clock, **topics) as env2:
        rec = env2.bridge.store.printers[printer["id"]]
        assert env2.bridge.detector.state(rec) == first_mirror  # saved by the flush, loaded at start
        body = await env2.get_printer(printer["id"])
        assert body["current_print"] is not None
        assert body["normalized_p"] == pytest.approx(d.normalized_p(first_mirror, 1.0))

        s2 = Scenario(env2, printer, await env2.agent(printer))
        s2.mirror = first_mirror
        # a new print: per-print values reset, the lifetime long mean stays
        await s2.status(current_print_ts=1716999999, filename="cube.gcode", event="PrintStarted")
        assert (await s2.current_print())["filename"] == "cube.gcode"
        s2.mirror = d.reset_for_new_print(s2.mirror)
        state = env2.bridge.detector.state(env2.bridge.store.printers[printer["id"]])
        assert state == s2.mirror
        assert (state.print_frames, state.ewm_mean, state.rolling_mean_short) == (0, 0.0, 0.0)
        assert state.rolling_mean_long == first_mirror.rolling_mean_long > 0.3
        assert (await s2.rest())["normalized_p"] == 0.0

        # frames of the new print are judged against the remembered long mean
        await s2.counted([3.0] * 5)
        forgotten = d.PredictionState()
        for _ in range(5):
            forgotten = d.update_prediction(forgotten, 3.0)
        expected = d.normalized_p(s2.mirror, 1.0)
        assert abs(expected - d.normalized_p(forgotten, 1.0)) > 0.05  # the long mean makes a difference
        assert (await s2.rest())["normalized_p"] == pytest.approx(expected)
