"""The read fast path (bridge/http/fastpath.py) answers exactly what the Litestar handlers answer, and leaves
everything else to them."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from bridge.http.fastpath import ReadFastPath
from tests.support.agent import agent_message
from tests.support.env import BridgeEnv, wait_for


async def _call(app: Any, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict] = []
    requested = False
    finished = asyncio.Event()

    async def receive() -> dict:
        nonlocal requested
        if requested:  # as a server does: the next message is the disconnect, once the response is sent
            await finished.wait()
            return {"type": "http.disconnect"}
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    await app(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.lower(): v for k, v in start["headers"]}, body


def _scope(path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> dict:
    return {"type": "http", "method": "GET", "path": path, "query_string": query, "headers": headers}


@pytest.fixture
async def fleet(env: BridgeEnv) -> dict[str, Any]:
    """Two printers of alice (one with a live status, one archived) and one of bob."""
    live = await env.create_printer("Live")
    archived = await env.create_printer("Archived")
    resp = await env.client.patch(
        f"/api/v1/printers/{archived['id']}/", json={"archived_at": "2026-01-01T00:00:00Z"}, headers=env.auth()
    )
    assert resp.status_code == 200
    _, bob_token = env.add_user("bob")
    bobs = await env.create_printer("Bob's", token=bob_token)
    agent = await env.agent(live)
    await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time()))

    async def has_status() -> bool:
        return (await env.get_printer(live["id"]))["status"] is not None

    await wait_for(has_status, what="the live printer's status")
    return {"live": live["id"], "archived": archived["id"], "bobs": bobs["id"], "bob_token": bob_token}


async def test_answers_exactly_what_litestar_answers(env: BridgeEnv, fleet: dict[str, Any]) -> None:
    fast: ReadFastPath = env.app
    assert isinstance(fast, ReadFastPath)
    auth_styles = [
        [(b"authorization", f"Bearer {env.token}".encode())],
        [(b"authorization", f"Token {env.token}".encode())],
        [(b"x-api-key", env.token.encode())],
    ]
    live, archived = fleet["live"], fleet["archived"]
    cases = [
        ("/api/v1/printers/", b""),
        ("/api/v1/printers", b""),
        ("/api/v1/printers/", b"with_archived=true"),
        ("/api/v1/printers/", b"with_archived=NO"),
        ("/api/v1/printers/", b"with_archived=1&other=x"),
        (f"/api/v1/printers/{live}/", b""),
        (f"/api/v1/printers/{live}", b""),
        (f"/api/v1/printers/000{live}/", b""),
        (f"/api/v1/printers/{live}/", b"with_archived=yes"),
        (f"/api/v1/printers/{archived}/", b"with_archived=true"),
    ]
    for headers in auth_styles:
        for path, query in cases:
            assert fast._answer(_scope(path, query, headers)) is not None, (path, query)  # type: ignore[arg-type]
            got = await _call(fast, path, query, headers)
            expected = await _call(fast.app, path, query, headers)
            assert got[0] == expected[0] == 200
            assert got[2] == expected[2], (path, query)
            assert got[1][b"content-type"] == expected[1][b"content-type"]
            assert got[1][b"content-length"] == expected[1][b"content-length"]


async def test_leaves_everything_else_to_litestar(env: BridgeEnv, fleet: dict[str, Any]) -> None:
    fast: ReadFastPath = env.app
    ours = [(b"authorization", f"Bearer {env.token}".encode())]
    live, archived, bobs = fleet["live"], fleet["archived"], fleet["bobs"]
    cases = [
        ("/api/v1/printers/", b"", [], 401),
        ("/api/v1/printers/", b"", [(b"authorization", b"Bearer wrong")], 401),
        ("/api/v1/printers/", b"", [(b"authorization", b"Basic abc")], 401),
        ("/api/v1/printers/", b"with_archived=maybe", ours, 400),
        ("/api/v1/printers/", b"with_archived=", ours, 400),
        ("/api/v1/printers/", b"with_archived=+true", ours, 400),
        ("/api/v1/printers/", b"with_archived=true&with_archived=false", ours, None),
        (f"/api/v1/printers/{bobs}/", b"", ours, 404),
        (f"/api/v1/printers/{archived}/", b"", ours, 404),
        (f"/api/v1/printers/{archived}/", b"with_archived=false", ours, 404),
        (f"/api/v1/printers/{live}/", b"with_archived=bogus", ours, 400),
        ("/api/v1/printers/999999/", b"", ours, 404),
        ("/api/v1/printers/abc/", b"", ours, 404),
        ("/api/v1/printers5", b"", ours, 404),
        (f"/api/v1/printers//{live}/", b"", ours, None),
        (f"/api/v1/printers/{live}/pic", b"", ours, 404),
        ("/health", b"", [], None),
    ]
    for path, query, headers, status in cases:
        assert fast._answer(_scope(path, query, headers)) is None, (path, query)  # type: ignore[arg-type]
        got = await _call(fast, path, query, headers)
        expected = await _call(fast.app, path, query, headers)
        assert got[0] == expected[0], (path, query)
        if status is not None:
            assert got[0] == status, (path, query, got)
        if b"set-cookie" not in got[1]:
            assert got[2] == expected[2]


async def test_bob_sees_only_his_printers_through_the_fast_path(env: BridgeEnv, fleet: dict[str, Any]) -> None:
    resp = await env.client.get("/api/v1/printers/", headers=env.auth(fleet["bob_token"]))
    assert resp.status_code == 200
    assert [p["id"] for p in resp.json()] == [fleet["bobs"]]
    resp = await env.client.get(f"/api/v1/printers/{fleet['live']}/", headers=env.auth(fleet["bob_token"]))
    assert resp.status_code == 404
    assert resp.json() == {"detail": "Not found."}


async def test_a_list_in_several_chunks_is_the_same_list(
    env: BridgeEnv, fleet: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large fleets are sent in chunks (ReadModel.owned_json); the bytes are Litestar's all the same."""
    import bridge.http.readmodel as store_module

    for n in range(5):
        await env.create_printer(f"Extra {n}")
    monkeypatch.setattr(store_module, "LIST_CACHE_MAX_BYTES", 200)
    env.bridge.store.printers.touch(env.bridge.store.printers[fleet["live"]], persist=False)  # drop cached lists
    headers = [(b"authorization", f"Bearer {env.token}".encode())]
    chunks = env.app._answer(_scope("/api/v1/printers/", b"", headers))  # type: ignore[arg-type]
    assert chunks is not None and len(chunks) > 3
    got = await _call(env.app, "/api/v1/printers/", b"", headers)
    expected = await _call(env.app.app, "/api/v1/printers/", b"", headers)
    assert got[0] == expected[0] == 200
    assert got[2] == expected[2]
    assert int(got[1][b"content-length"]) == len(got[2])
    assert [p["name"] for p in json.loads(got[2])][-1] == "Extra 4"
