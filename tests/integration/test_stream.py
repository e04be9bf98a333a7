"""`GET /api/v1/printers/stream/` without a browser: a real uvicorn serving the real app, a real Mosquitto,
paho agents, and clients reading the stream over TCP."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bridge.http.live import Subscription
from tests.reliability.serve import Served as ServedProcess
from tests.support.agent import TestAgent, agent_message
from tests.support.broker import Broker, connected_probe
from tests.support.env import wait_for
from tests.support.stream import STREAM, Served, served_bridge


async def agent_for(s: Served, printer: dict[str, Any]) -> TestAgent:
    await wait_for(
        lambda: s.bridge.store.accounts.broker_tokens().get(printer["id"]) == printer["auth_token"],
        what="the printer's broker account",
    )
    broker = s.bridge.settings.mqtt_url
    agent = TestAgent(broker.host, broker.port, printer["id"], printer["auth_token"], base_topic=s.bridge.topics.base)
    await asyncio.to_thread(agent.connect)
    return agent


async def publish(agent: TestAgent, **kwargs: Any) -> None:
    await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time(), **kwargs))


def completion(event: Any) -> float | None:
    """The progress of a `printer` event's status (None for other events, or without a status)."""
    if event.event != "printer":
        return None
    status = event.json()["status"] or {}
    value = (status.get("progress") or {}).get("completion")
    return float(value) if value is not None else None


def printer_events(events: list[Any], printer_id: int) -> list[dict[str, Any]]:
    return [e.json() for e in events if e.event == "printer" and e.json()["id"] == printer_id]


async def test_the_list_first_then_each_change_exactly_as_get_answers_it(broker: Broker, tmp_path: Path) -> None:
    async with served_bridge(broker, tmp_path / "db.sqlite") as s:
        a = await s.create_printer("A")
        await s.create_printer("B")
        stream = await s.stream()
        assert stream.status_code == 200 and stream.content_type.startswith("text/event-stream")
        first = await stream.next()
        listing = await s.http.get("/api/v1/printers/", headers=s.auth())
        assert first.event == "printers" and first.data == listing.text
        assert [p["name"] for p in first.json()] == ["A", "B"]

        agent = await agent_for(s, a)
        try:
            await publish(agent, completion=12.5)
            event = await stream.until(lambda e: completion(e) == 12.5, what="the status as a printer event")
            got = await s.http.get(f"/api/v1/printers/{a['id']}/", headers=s.auth())
            assert event.data == got.text  # byte for byte what GET answers at that moment
            assert event.json()["current_print"]["filename"] == "benchy.gcode"
            ids = [e.id for e in stream.received if e.event != ":comment"]
            assert None not in ids and len(set(ids)) == len(ids)  # for Last-Event-ID
        finally:
            await asyncio.to_thread(agent.disconnect)


async def test_a_burst_is_coalesced_and_the_latest_state_always_arrives(broker: Broker, tmp_path: Path) -> None:
    interval = 0.2
    async with served_bridge(broker, tmp_path / "db.sqlite", stream_min_interval_s=interval) as s:
        a = await s.create_printer("A")
        stream = await s.stream()
        await stream.next()
        agent = await agent_for(s, a)
        burst = 300
        probe_payloads = [
            msgspec.json.encode(agent_message(ts=time.time() + n * 0.001, completion=float(n)))
            for n in range(1, burst + 1)
        ]
        started = time.monotonic()
        try:

            def send_all() -> None:
                for payload in probe_payloads:
                    agent.publish_status(payload)

            await asyncio.to_thread(send_all)
            last = await stream.until(lambda e: completion(e) == burst, what="the last state of the burst")
        finally:
            await asyncio.to_thread(agent.disconnect)
        elapsed = time.monotonic() - started
        sent = printer_events(stream.received, a["id"])
        assert sent[-1] == last.json()
        # one event per printer per interval at most, whatever the machine's speed
        assert len(sent) <= elapsed / interval + 2, (len(sent), elapsed)
        assert len(sent) < burst / 3, (len(sent), elapsed)


async def test_deleted_and_archived_printers_are_sent_as_deleted(broker: Broker, tmp_path: Path) -> None:
    async with served_bridge(broker, tmp_path / "db.sqlite") as s:
        a = await s.create_printer("A")
        b = await s.create_printer("B")
        stream = await s.stream()
        await stream.next()
        resp = await s.http.delete(f"/api/v1/printers/{a['id']}/", headers=s.auth())
        assert resp.status_code == 200
        event = await stream.until(lambda e: e.event == "deleted", what="deleted")
        assert event.json() == {"id": a["id"]}

        resp = await s.http.patch(
            f"/api/v1/printers/{b['id']}/", json={"archived_at": "2026-01-01T00:00:00Z"}, headers=s.auth()
        )
        assert resp.status_code == 200
        event = await stream.until(lambda e: e.event == "deleted", what="archived as deleted")
        assert event.json() == {"id": b["id"]}

        resp = await s.http.patch(
            f"/api/v1/printers/{b['id']}/?with_archived=true", json={"archived_at": None}, headers=s.auth()
        )
        assert resp.status_code == 200
        event = await stream.until(lambda e: e.event == "printer", what="the unarchived printer")
        assert event.json()["id"] == b["id"] and event.json()["archived_at"] is None

        created = await s.create_printer("C")
        event = await stream.until(lambda e: e.event == "printer" and e.json()["id"] == created["id"], what="C")
        assert event.json()["name"] == "C"


async def test_each_action_outcome_arrives_as_a_command_row(broker: Broker, tmp_path: Path) -> None:
    async with served_bridge(broker, tmp_path / "db.sqlite", command_timeout_s=2.0) as s:
        a = await s.create_printer("A")
        idle = await s.create_printer("Idle")
        stream = await s.stream()
        await stream.next()
        agent = await agent_for(s, a)
        try:
            await publish(agent)
            await stream.until(lambda e: e.event == "printer" and e.json()["current_print"] is not None, what="print")
            result = (await s.http.post(f"/api/v1/printers/{a['id']}/pause_print", headers=s.auth())).json()
            assert result["succeeded"] is True
            event = await stream.until(lambda e: e.event == "command", what="the pause's row")
            rows = (await s.http.get(f"/api/v1/printers/{a['id']}/commands/", headers=s.auth())).json()
            assert event.json() == {**rows[0], "printer_id": a["id"]}
            assert (event.json()["cmd"], event.json()["outcome"], event.json()["initiator"]) == (
                "pause",
                "acked",
                "api",
            )

            agent.ack_mode = "refuse"
            agent.refuse_error = "not now"
            result = (await s.http.post(f"/api/v1/printers/{a['id']}/cancel_print", headers=s.auth())).json()
            assert result["succeeded"] is False
            event = await stream.until(lambda e: e.event == "command", what="the refused cancel's row")
            assert (event.json()["cmd"], event.json()["outcome"], event.json()["error"]) == (
                "cancel",
                "refused",
                "not now",
            )
        finally:
            await asyncio.to_thread(agent.disconnect)

        result = (await s.http.post(f"/api/v1/printers/{idle['id']}/resume_print", headers=s.auth())).json()
        assert result["error"] == "not printing"
        event = await stream.until(lambda e: e.event == "command", what="the row of an action not sent")
        assert event.json()["printer_id"] == idle["id"]
        assert (event.json()["outcome"], event.json()["error"]) == ("not_sent", "not printing")


async def test_a_comment_line_keeps_an_idle_stream_open(broker: Broker, tmp_path: Path) -> None:
    async with served_bridge(broker, tmp_path / "db.sqlite", stream_heartbeat_s=0.2) as s:
        stream = await s.stream()
        assert (await stream.next()).event == "printers"
        for _ in range(2):
            event = await stream.next(skip_comments=False)
            assert (event.event, event.data) == (":comment", "keepalive")


async def test_another_users_printers_never_appear(broker: Broker, tmp_path: Path) -> None:
    async with served_bridge(broker, tmp_path / "db.sqlite") as s:
        _, bob_token = s.bridge.store.users.add("bob")
        mine = await s.create_printer("Alice's")
        bobs = await s.create_printer("Bob's", token=bob_token)
        alice_stream = await s.stream()
        bob_stream = await s.stream(token=bob_token)
        assert [p["id"] for p in (await alice_stream.next()).json()] == [mine["id"]]
        assert [p["id"] for p in (await bob_stream.next()).json()] == [bobs["id"]]
        # Bob's printer changes first, then Alice's: whatever Bob's change would have caused is sent first.
        for token, printer in ((bob_token, bobs), (None, mine)):
            resp = await s.http.patch(
                f"/api/v1/printers/{printer['id']}/", json={"name": "renamed"}, headers=s.auth(token)
            )
            assert resp.status_code == 200
        await alice_stream.until(lambda e: e.event == "printer" and e.json()["name"] == "renamed", what="rename")
        await bob_stream.until(lambda e: e.event == "printer" and e.json()["name"] == "renamed", what="rename")
        resp = await s.http.delete(f"/api/v1/printers/{bobs['id']}/", headers=s.auth(bob_token))
        assert resp.status_code == 200
        await bob_stream.until(lambda e: e.event == "deleted", what="Bob's deletion")
        resp = await s.http.patch(f"/api/v1/printers/{mine['id']}/", json={"name": "again"}, headers=s.auth())
        await alice_stream.until(lambda e: e.event == "printer" and e.json()["name"] == "again", what="2nd rename")
        assert all(bobs["id"] not in _ids(e) for e in alice_stream.received)
        assert all(mine["id"] not in _ids(e) for e in bob_stream.received)


def _ids(event: Any) -> set[int]:
    if event.event == ":comment":
        return set()
    body = event.json()
    return {p["id"] for p in body} if isinstance(body, list) else {body.get("printer_id", body.get("id"))}


async def test_without_valid_credentials_the_answer_is_401(broker: Broker, tmp_path: Path) -> None:
    async with served_bridge(broker, tmp_path / "db.sqlite") as s:
        for headers, params in (
            ({}, {}),
            ({"Authorization": "Bearer nope"}, {}),
            ({}, {"token": s.token}),  # never in the URL
            ({}, {"api_key": s.token}),
        ):
            resp = await s.http.get(STREAM, headers=headers, params=params)
            assert resp.status_code == 401
            assert resp.headers["www-authenticate"].startswith("Bearer")
            assert "detail" in resp.json()
        assert s.hub.clients == 0
        for headers in ({"X-API-KEY": s.token}, {"Authorization": f"Token {s.token}"}):
            stream = await s.stream(**headers)
            assert (await stream.next()).event == "printers"


async def test_a_reconnect_with_last_event_id_gets_a_fresh_list(broker: Broker, tmp_path: Path) -> None:
    async with served_bridge(broker, tmp_path / "db.sqlite") as s:
        a = await s.create_printer("A")
        stream = await s.stream()
        await stream.next()
        await s.http.patch(f"/api/v1/printers/{a['id']}/", json={"name": "A2"}, headers=s.auth())
        change = await stream.until(lambda e: e.event == "printer", what="the rename")
        await stream.close()
        await wait_for(lambda: s.hub.clients == 0, what="the first stream to be gone")
        await s.http.patch(f"/api/v1/printers/{a['id']}/", json={"name": "A3"}, headers=s.auth())
        again = await s.stream(**{"Last-Event-ID": str(change.id)})
        first = await again.next()
        assert first.event == "printers" and [p["name"] for p in first.json()] == ["A3"]


async def test_a_stalled_client_is_cut_off_and_ingest_goes_on(broker: Broker, tmp_path: Path) -> None:
    """A client that never reads while 1,000 status messages (about 16 KB each) flow: every message is
    applied, and the client is disconnected once a write has waited `stream_stall_s`."""
    async with served_bridge(
        broker, tmp_path / "db.sqlite", stream_min_interval_s=0.0, stream_stall_s=1.0, stream_heartbeat_s=60
    ) as s:
        store = s.bridge.store
        printers = [store.printers.create(s.user_id, f"P{n}") for n in range(100)]
        port = int(s.url.rsplit(":", 1)[1])
        stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(f"GET {STREAM} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.token}\r\n\r\n".encode())
        await wait_for(lambda: s.hub.clients == 1, what="the stalled client's subscription")
        handled = s.bridge.inbound.handled
        padding = "x" * 16000
        base = time.time()
        messages = []
        for n in range(1000):
            rec = printers[n % 100]
            body = agent_message(ts=base + n, completion=n / 10)
            body["status"]["padding"] = padding
            messages.append((s.bridge.topics.status(rec.id), msgspec.json.encode(body)))
        try:

            def publish_all() -> None:
                with connected_probe(broker, mqtt5=False) as probe:
                    for topic, payload in messages:
                        probe.publish(topic, payload, qos=1)

            await asyncio.to_thread(publish_all)
            await wait_for(lambda: s.bridge.inbound.handled >= handled + 1000, 30, "all 1,000 messages applied")
            assert all(rec.status_ts == base + 900 + n for n, rec in enumerate(printers))
            await wait_for(lambda: s.hub.cut_off == 1 and s.hub.clients == 0, 30, "the stalled client cut off")
            # The connection ends: what the client did not read is followed by the end of the stream.

            def read_to_the_end() -> bytes:
                stalled.settimeout(30)
                chunks = []
                while chunk := stalled.recv(1 << 20):
                    chunks.append(chunk)
                return b"".join(chunks)

            received = await asyncio.to_thread(read_to_the_end)
            assert received.startswith(b"HTTP/1.1 200 OK\r\n") and len(received) > 1_000_000
        finally:
            stalled.close()
        fresh = await s.stream()  # the bridge serves new clients as before
        assert len((await fresh.next()).json()) == 100


async def test_a_thousand_connects_and_disconnects_leave_nothing_behind(broker: Broker, tmp_path: Path) -> None:
    async with served_bridge(broker, tmp_path / "db.sqlite") as s:
        await s.create_printer("A")
        port = int(s.url.rsplit(":", 1)[1])
        request = f"GET {STREAM} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.token}\r\n\r\n".encode()

        async def cycle() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await reader.readuntil(b"event: printers\n")
            await reader.readuntil(b"\n\n")
            writer.close()
            await writer.wait_closed()

        for _ in range(100):  # warm-up: caches, allocator pools
            await cycle()
        await wait_for(lambda: s.hub.clients == 0, what="the warm-up streams to end")
        await asyncio.sleep(0)
        tasks = len(asyncio.all_tasks())
        rss = _rss_kib()
        for _ in range(1000):
            await cycle()
        await wait_for(lambda: s.hub.clients == 0, what="every stream to end")
        await wait_for(lambda: len(asyncio.all_tasks()) <= tasks, what="every connection's task to end")
        gc.collect()
        assert [o for o in gc.get_objects() if isinstance(o, Subscription)] == []
        grown = _rss_kib() - rss
        assert grown < 8 * 1024, f"RSS grew {grown} KiB over 1,000 streams"


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_the_openapi_document_describes_the_stream_and_the_dashboard_is_served(
    broker: Broker, tmp_path: Path
) -> None:
    async with served_bridge(broker, tmp_path / "db.sqlite") as s:
        doc = (await s.http.get("/schema/openapi.json")).json()
        op = doc["paths"]["/api/v1/printers/stream"]["get"]
        assert "text/event-stream" in op["responses"]["200"]["content"]
        for name in ("`printers`", "`printer`", "`deleted`", "`command`", "`snapshot`", "`error`", "Last-Event-ID"):
            assert name in op["description"]
        assert op["responses"]["401"]["description"] == "Missing or invalid credentials"
        assert "/" not in doc["paths"] and not any(p.startswith("/static") for p in doc["paths"])

        page = await s.http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for asset, kind in (("/static/app.js", "javascript"), ("/static/app.css", "text/css")):
            resp = await s.http.get(asset)
            assert resp.status_code == 200 and kind in resp.headers["content-type"], asset
        assert (await s.http.get("/static/../app.py")).status_code == 404


async def test_the_score_history_is_the_owners_alone(broker: Broker, tmp_path: Path) -> None:
    async with served_bridge(broker, tmp_path / "db.sqlite") as s:
        _, bob_token = s.bridge.store.users.add("bob")
        a = await s.create_printer("A")
        resp = await s.http.get(f"/api/v1/printers/{a['id']}/scores/", headers=s.auth())
        assert resp.json() == {"print_id": None, "points": []}
        resp = await s.http.get(f"/api/v1/printers/{a['id']}/scores/", headers=s.auth(bob_token))
        assert (resp.status_code, resp.json()) == (404, {"detail": "Not found."})
        assert (await s.http.get(f"/api/v1/printers/{a['id']}/scores/")).status_code == 401


async def test_stopping_serve_ends_open_streams_with_an_error_event(broker: Broker, tmp_path: Path) -> None:
    """`printbridge serve` ends every open stream at SIGTERM (they never end by themselves) and exits cleanly."""
    served = ServedProcess(broker, tmp_path, "pbstop")
    served.start()
    try:

        def read_stream(ready: threading.Event) -> bytes:
            body = b""
            with httpx.stream("GET", f"{served.url}{STREAM}", headers=served.headers(), timeout=30) as resp:
                assert resp.status_code == 200
                for chunk in resp.iter_raw():
                    body += chunk
                    if b"event: printers" in body:
                        ready.set()
            return body

        ready = threading.Event()
        reading = asyncio.create_task(asyncio.to_thread(read_stream, ready))
        assert await asyncio.to_thread(ready.wait, 15)
        served.terminate()
        body = await asyncio.wait_for(reading, 30)
        assert body.endswith(b'event: error\ndata: {"detail":"bridge shutting down"}\n\n'), body[-200:]
        assert served.process is not None
        assert await asyncio.to_thread(served.process.wait, 30) == 0, served.stderr()
    finally:
        served.stop()
