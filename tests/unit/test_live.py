"""The event stream's hub and queues (bridge/http/live.py) and the score history's thinning, without a server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.domain.scores import thin
from bridge.http.live import LiveHub, StreamTiming, sse_event
from bridge.http.readmodel import ReadModel
from bridge.state.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "pb.db")
    s.load()
    try:
        yield s
    finally:
        s.close()


def events(chunk: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in chunk.decode().split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(("id:", "retry:"))]
        if not lines:
            continue
        name = lines[0].removeprefix("event: ")
        data = "\n".join(line.removeprefix("data: ") for line in lines[1:])
        out.append((name, json.loads(data)))
    return out


def test_sse_event_puts_each_line_of_the_data_in_its_own_field() -> None:
    assert sse_event("printer", b'{"a":1}', 7) == b'id: 7\nevent: printer\ndata: {"a":1}\n\n'
    assert sse_event("printer", b'{"a":\n 1,\r\n"b":2}') == b'event: printer\ndata: {"a":\ndata:  1,\ndata: "b":2}\n\n'


def test_fifty_changes_of_one_printer_are_one_event_then_one_more_after_the_interval(store: Store) -> None:
    uid, _ = store.users.add("alice")
    rec = store.printers.create(uid, "P")
    hub = LiveHub(store, ReadModel(store.printers), StreamTiming(min_interval_s=0.25))
    store.listen(hub)
    sub = hub.subscribe(uid)
    assert [e[0] for e in events(sub.first_event())] == ["printers"]
    for n in range(50):
        store.printers.update(rec, {"name": f"P{n}"})
    chunk, waiting = sub.due(100.0)
    assert [(e, body["name"]) for e, body in events(chunk)] == [("printer", "P49")]
    assert waiting is None
    store.printers.update(rec, {"name": "later"})
    chunk, waiting = sub.due(100.1)
    assert chunk == b"" and waiting == pytest.approx(100.25)  # throttled: due a quarter second after the last
    store.printers.update(rec, {"name": "latest"})
    chunk, waiting = sub.due(100.25)
    assert [(e, body["name"]) for e, body in events(chunk)] == [("printer", "latest")]


def test_changes_reach_only_the_owners_clients_and_deletion_only_those_who_saw_it(store: Store) -> None:
    alice, _ = store.users.add("alice")
    bob, _ = store.users.add("bob")
    hub = LiveHub(store, ReadModel(store.printers))
    store.listen(hub)
    mine = store.printers.create(alice, "mine")
    sub_alice, sub_bob = hub.subscribe(alice), hub.subscribe(bob)
    sub_alice.first_event()
    sub_bob.first_event()
    store.printers.create(bob, "bob's")
    store.printers.update(mine, {"name": "renamed"})
    chunk, _ = sub_alice.due(1.0)
    assert [(e, b["name"]) for e, b in events(chunk)] == [("printer", "renamed")]
    chunk, _ = sub_bob.due(1.0)
    assert [(e, b["name"]) for e, b in events(chunk)] == [("printer", "bob's")]
    store.printers.delete(mine)
    chunk, _ = sub_alice.due(2.0)
    assert events(chunk) == [("deleted", {"id": mine.id})]
    assert sub_bob.due(2.0)[0] == b""
    hub.unsubscribe(sub_alice)
    hub.unsubscribe(sub_bob)
    assert hub.clients == 0


def test_a_client_that_lets_command_rows_pile_up_is_closed(store: Store) -> None:
    uid, _ = store.users.add("alice")
    rec = store.printers.create(uid, "P")
    hub = LiveHub(store, ReadModel(store.printers))
    store.listen(hub)
    sub = hub.subscribe(uid)
    for n in range(300):
        store.commands.add(f"c{n}", rec.id, None, "pause", {}, "api", 1.0, "not_sent", "not printing")
    assert sub.closed == "client too slow: command queue full"


def test_thinning_keeps_the_ends_and_each_runs_highest_score() -> None:
    points = [(float(t), 0.0) for t in range(1000)]
    points[500] = (500.0, 0.9)
    thinned = thin(points, 100)
    assert len(thinned) == 100
    assert thinned[0] == points[0] and thinned[-1] == points[-1]
    assert (500.0, 0.9) in thinned
    assert thin(points[:50], 100) == points[:50]
