"""Hostile MQTT input (issue 8): property-based fuzzing of every inbound topic against a running bridge.

Each example is published by the broker's admin, then the test waits until the bridge has handled that very
message. A message the contract rejects must be dropped, with a reason, and leave the printer's REST body,
its snapshot and its prints exactly as they were; a valid one (generated too) must be applied.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bridge.domain.views import encode_printer
from bridge.mqtt.link import Incoming
from tests.reliability.support import on_bridge_loop
from tests.support.agent import agent_message
from tests.support.broker import Probe, connected_probe
from tests.support.env import BridgeEnv, wait_for

EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
PRINT_TS = 1716904799
INBOUND = ["status", "availability", "ack", "snapshot", "detection"]
ACTIONS = ["pause", "resume", "cancel", "mute", "acknowledge_alert"]


class Harness:
    """Publishes one message at a time and reports whether the bridge dropped it and what it changed."""

    def __init__(self, env: BridgeEnv, probe: Probe, printer_id: int) -> None:
        self.env = env
        self.probe = probe
        self.pid = printer_id
        self.handled: list[tuple[str, bytes]] = []
        self.drops: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._ts = time.time()
        self.sent = 0
        ingest = env.bridge.inbound
        handle, drop = ingest.handle, ingest.drops.drop

        def counting_handle(msg: Incoming) -> None:
            try:
                handle(msg)
            except Exception as exc:  # the link would log and go on; a fuzz test wants to know
                self.errors.append(f"{msg.topic}: {exc!r}")
                raise
            finally:
                with self._lock:
                    self.handled.append((msg.topic, msg.payload))

        def recording_drop(topic: str, reason: str) -> None:
            self.drops.append((topic, reason))
            drop(topic, reason)

        ingest.handle = counting_handle  # type: ignore[method-assign]
        ingest.drops.drop = recording_drop  # type: ignore[method-assign]

    def next_ts(self) -> float:
        self._ts += 1
        return self._ts

    def state(self) -> tuple[bytes, bytes | None, list[Any]]:
        store = self.env.bridge.store
        rec = store.printers[self.pid]
        return on_bridge_loop(
            self.env, lambda: (encode_printer(rec), store.snapshots.latest(self.pid), store.prints.of(self.pid))
        )

    def send(self, leaf: str, payload: bytes, printer_id: int | None = None) -> tuple[bool, Any, Any]:
        """Publish on `B/printers/{id}/{leaf}`; (dropped, state before, state after)."""
        topic = self.env.topics.printer(self.pid if printer_id is None else printer_id, leaf)
        with self._lock:
            start = len(self.handled)
        drops = len(self.drops)
        before = self.state()
        assert self.probe.publish(topic, payload, qos=1) == 0
        self.sent += 1
        deadline = time.monotonic() + 5
        while True:
            with self._lock:
                if (topic, payload) in self.handled[start:]:
                    break
            assert time.monotonic() < deadline, f"the bridge never handled {topic} {payload[:80]!r}"
            time.sleep(0.0005)
        assert not self.errors, self.errors
        new_drops = self.drops[drops:]
        assert all(reason for _, reason in new_drops)
        return bool(new_drops), before, self.state()

    def reject(self, leaf: str, payload: bytes, printer_id: int | None = None) -> None:
        dropped, before, after = self.send(leaf, payload, printer_id)
        assert dropped, f"{leaf} {payload[:120]!r} was accepted"
        assert before == after, f"{leaf} {payload[:120]!r} changed stored state"


@pytest.fixture
async def harness(env: BridgeEnv) -> Any:
    printer = await env.create_printer("Fuzz", action_on_failure="NONE")
    pid = printer["id"]
    with connected_probe(env.broker) as probe:
        h = Harness(env, probe, pid)
        start = agent_message(ts=h.next_ts(), event="PrintStarted", current_print_ts=PRINT_TS)
        await asyncio.to_thread(h.send, "status", msgspec.json.encode(start))
        await wait_for(lambda: env.bridge.store.printers[pid].current_print is not None, what="the print")
        yield h
    print(f"\n{h.sent} messages fuzzed, {len(h.drops)} dropped")
    assert h.sent >= 100, "hypothesis ran too few examples to mean anything"
    assert not h.errors
    assert env.bridge.mqtt_connected


def _json_object(payload: bytes) -> bool:
    try:
        return isinstance(json.loads(payload), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _maybe_valid(leaf: str, payload: bytes) -> bool:
    text = payload.strip()
    if leaf == "availability":
        return text in (b"online", b"offline")
    if leaf == "snapshot":
        return payload.startswith(b"\xff\xd8")
    if leaf.startswith("action/") and text in (b"", b"PRESS", b"ON", b"OFF"):
        return True
    return _json_object(payload)


LEAVES = st.sampled_from(INBOUND + [f"action/{a}" for a in ACTIONS])


async def test_random_bytes_on_every_inbound_topic_are_dropped(harness: Harness) -> None:
    @EXAMPLES
    @given(leaf=LEAVES, payload=st.binary(max_size=600), other_printer=st.booleans())
    def check(leaf: str, payload: bytes, other_printer: bool) -> None:
        if other_printer:  # an unknown printer: dropped whatever it sends (an empty availability aside)
            assume(payload or leaf != "availability")
            harness.reject(leaf, payload, printer_id=999_999)
            return
        assume(not _maybe_valid(leaf, payload))
        harness.reject(leaf, payload)

    await asyncio.to_thread(check)


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
)


@st.composite
def bad_agent_messages(draw: st.DrawFn, ts: float) -> bytes:
    message = agent_message(ts=ts, current_print_ts=PRINT_TS)
    how = draw(st.sampled_from(["status", "_ts", "cpt", "event", "event_type", "settings", "agent", "top", "old"]))
    if how == "status":
        message["status"] = draw(JUNK.filter(lambda v: v is not None))
    elif how == "_ts":
        message["status"]["_ts"] = draw(st.one_of(st.text(max_size=5), st.booleans(), st.lists(st.integers())))
    elif how == "cpt":
        bad_ts = st.one_of(st.integers(max_value=0).filter(lambda v: v != -1), st.text(max_size=5), st.booleans())
        message["current_print_ts"] = draw(bad_ts)
    elif how == "event":
        message["event"] = draw(JUNK.filter(lambda v: v is not None))
    elif how == "event_type":
        message["event"] = {"event_type": draw(JUNK.filter(lambda v: not isinstance(v, str))), "data": {}}
    elif how == "settings":
        message["settings"] = draw(JUNK.filter(lambda v: v is not None))
    elif how == "agent":
        message["settings"] = {"agent": draw(JUNK.filter(lambda v: v is not None))}
    elif how == "top":
        return msgspec.json.encode(draw(st.lists(JUNK, max_size=3)))
    else:  # out of order: older than the stored status
        message["status"]["_ts"] = ts - 10_000
    return msgspec.json.encode(message)


async def test_agent_messages_valid_applied_invalid_dropped(harness: Harness) -> None:
    @EXAMPLES
    @given(data=st.data(), valid=st.booleans())
    def check(data: st.DataObject, valid: bool) -> None:
        ts = harness.next_ts()
        if valid:
            completion = data.draw(st.floats(min_value=0, max_value=100))
            text = data.draw(st.text(min_size=1, max_size=30))
            message = agent_message(ts=ts, current_print_ts=PRINT_TS, completion=completion, state_text=text)
            dropped, _, after = harness.send("status", msgspec.json.encode(message))
            assert not dropped
            assert msgspec.json.decode(after[0])["status"] == message["status"]
        else:
            harness.reject("status", data.draw(bad_agent_messages(ts)))

    await asyncio.to_thread(check)


async def test_acks_never_change_state(harness: Harness) -> None:
    @EXAMPLES
    @given(cmd_id=st.one_of(st.text(max_size=40), JUNK), ok=st.one_of(st.booleans(), JUNK), error=JUNK)
    def check(cmd_id: Any, ok: Any, error: Any) -> None:
        payload = msgspec.json.encode({"cmd_id": cmd_id, "ok": ok, "error": error})
        dropped, before, after = harness.send("ack", payload)
        assert before == after
        well_formed = isinstance(cmd_id, str) and isinstance(ok, bool) and (error is None or isinstance(error, str))
        assert dropped != well_formed, f"ack {payload!r}: dropped={dropped}"

    await asyncio.to_thread(check)


BOX = st.lists(st.floats(min_value=0, max_value=1000), min_size=4, max_size=4)


async def test_detection_frames(harness: Harness) -> None:
    valid_frames = st.one_of(
        st.fixed_dictionaries({"p": st.floats(min_value=0, max_value=0.2)}),
        st.fixed_dictionaries(
            {"detections": st.lists(st.tuples(st.just("failure"), st.floats(0, 0.05), BOX).map(list), max_size=3)}
        ),
    )
    invalid_frames = st.one_of(
        st.fixed_dictionaries({"p": st.one_of(st.text(max_size=5), st.booleans(), st.floats(max_value=-0.001))}),
        st.fixed_dictionaries(
            {"detections": st.one_of(st.text(max_size=5), st.integers(), st.dictionaries(st.text(), st.integers()))}
        ),
        st.fixed_dictionaries(
            {"detections": st.lists(st.lists(st.just("failure"), max_size=1), min_size=1, max_size=3)}
        ),
        st.fixed_dictionaries(
            {
                "detections": st.lists(
                    st.tuples(st.just("failure"), st.one_of(st.text(), st.floats(max_value=-0.01))).map(list),
                    min_size=1,
                    max_size=2,
                )
            }
        ),
        st.fixed_dictionaries({"p": st.floats(0, 1), "detections": st.just([])}),
        st.dictionaries(st.sampled_from(["x", "frame", "P"]), JUNK, max_size=2),
    )

    @EXAMPLES
    @given(frame=st.one_of(valid_frames.map(lambda f: (True, f)), invalid_frames.map(lambda f: (False, f))))
    def check(frame: tuple[bool, dict[str, Any]]) -> None:
        valid, body = frame
        payload = msgspec.json.encode(body)
        if valid:
            dropped, _, _ = harness.send("detection", payload)
            assert not dropped, payload
        else:
            harness.reject("detection", payload)

    await asyncio.to_thread(check)


async def test_availability_payloads(harness: Harness) -> None:
    @EXAMPLES
    @given(payload=st.one_of(st.sampled_from([b"online", b"offline", b" online\n"]), st.binary(max_size=20)))
    def check(payload: bytes) -> None:
        if payload.strip() in (b"online", b"offline"):
            dropped, _, after = harness.send("availability", payload)
            assert not dropped
            if payload.strip() == b"offline":
                assert msgspec.json.decode(after[0])["status"] is None
        else:
            harness.reject("availability", payload)
        # Back online with a fresh status, so that every example starts from a printer that is up.
        harness.send("status", msgspec.json.encode(agent_message(ts=harness.next_ts(), current_print_ts=PRINT_TS)))

    await asyncio.to_thread(check)


async def test_action_payloads(harness: Harness) -> None:
    @EXAMPLES
    @given(
        name=st.sampled_from(ACTIONS),
        request_id=st.one_of(st.none(), st.text(max_size=10), JUNK),
        mute=st.one_of(st.none(), st.booleans(), JUNK),
    )
    def check(name: str, request_id: Any, mute: Any) -> None:
        body: dict[str, Any] = {"request_id": request_id}
        if mute is not None:
            body["mute"] = mute
        valid = (request_id is None or isinstance(request_id, str)) and (
            mute is None or (isinstance(mute, bool) and name == "mute")
        )
        assume(not valid or name in ("mute", "acknowledge_alert"))  # no commands left waiting for an ack
        payload = msgspec.json.encode(body)
        if valid:
            dropped, _, _ = harness.send(f"action/{name}", payload)
            assert not dropped
        else:
            harness.reject(f"action/{name}", payload)

    await asyncio.to_thread(check)


async def test_flood_of_garbage_is_counted_but_log_is_rate_limited(
    env: BridgeEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="printbridge.ingest")
    printer = await env.create_printer("Flood")
    drops = env.bridge.inbound.drops
    total_before = drops.total
    topic = env.topics.status(printer["id"])
    count = 10_000

    def flood() -> None:
        with connected_probe(env.broker) as probe:
            for i in range(count):
                info = probe.client.publish(topic, b"not json %d" % i, qos=0)
                if i % 500 == 0:
                    info.wait_for_publish(5)
            probe.publish(topic, b"last")  # QoS 1: everything before it has reached the broker

    started = time.monotonic()
    await asyncio.to_thread(flood)
    await wait_for(lambda: drops.total - total_before >= count + 1, 20, "every bad message to be counted")
    took = time.monotonic() - started
    lines = [r for r in caplog.records if r.name == "printbridge.ingest" and "dropped message" in r.getMessage()]
    print(f"\n{count + 1} bad messages dropped in {took:.2f} s, {len(lines)} log lines")
    assert drops.total - total_before == count + 1
    assert len(lines) <= drops.burst
    assert "agent message" in lines[0].getMessage()
    assert env.bridge.mqtt_connected
