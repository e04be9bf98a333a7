"""A full disk (issue 8): SQLite's `max_page_count` set to the database's current size makes every write that
needs a new page fail with SQLITE_FULL ("database or disk is full"), exactly as a full disk does."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

import msgspec
import pytest

from tests.reliability.support import on_bridge_loop, rest
from tests.support.agent import agent_message
from tests.support.env import BridgeEnv, wait_for

PAD = "x" * 200_000  # a status this big needs new pages


def _set_max_pages(env: BridgeEnv, extra: int | None) -> int:
    conn = env.bridge.store.conn

    def apply() -> int:
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        limit = pages if extra is None else pages + extra
        return int(conn.execute(f"PRAGMA max_page_count = {limit}").fetchone()[0])

    result: int = on_bridge_loop(env, apply)
    return result


async def test_disk_full_reported_reads_served_and_recovered(env: BridgeEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="printbridge")
    printer = await env.create_printer("Full")
    pid = printer["id"]
    agent = await env.agent(printer)
    await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time(), event="PrintStarted"))
    await wait_for(lambda: env.bridge.store.printers[pid].current_print is not None, what="the print")
    first_print = env.bridge.store.printers[pid].current_print
    assert first_print is not None
    await wait_for(lambda: env.bridge.store.pending_writes == 0, what="the first flush")

    _set_max_pages(env, None)  # the disk is now full
    big = agent_message(ts=time.time() + 1, completion=50.0)
    big["status"]["padding"] = PAD
    await asyncio.to_thread(agent.publish_status, big)

    async def health() -> tuple[int, dict[str, str]]:
        response = await rest(env, "GET", "/health")
        return response.status_code, response.json()

    await wait_for(lambda: env.bridge.store.last_write_error is not None, 5, "the failed flush")
    assert await health() == (503, {"mqtt": "connected", "db": "error"})
    assert "database or disk is full" in (env.bridge.store.last_write_error or "")
    full_lines = [r for r in caplog.records if "database or disk is full" in r.getMessage()]
    assert full_lines and full_lines[0].levelno >= logging.ERROR

    # Reads go on, from memory, with the latest status.
    body = (await rest(env, "GET", f"/api/v1/printers/{pid}/")).json()
    assert body["status"]["padding"] == PAD
    assert body["current_print"]["id"] == first_print.id
    # A write is refused whole: 503, and nothing is created.
    refused = await rest(env, "POST", "/api/v1/printers/", json={"name": "Z" * 256})
    big_name_printers = [p for p in (await rest(env, "GET", "/api/v1/printers/")).json() if p["name"] == "Z" * 256]
    if refused.status_code == 201:  # the row fitted in a free page; then it must be there whole
        assert len(big_name_printers) == 1
    else:
        assert refused.status_code == 503
        assert big_name_printers == []
    # A new print while the disk is full: the message cannot be recorded and is dropped, not half-applied.
    started = agent_message(ts=time.time() + 2, event="PrintStarted", current_print_ts=1716909999, filename="b.gcode")
    started["status"]["padding"] = PAD
    await asyncio.to_thread(agent.publish_status, started)
    await asyncio.sleep(0)  # let the failed flushes log; the outcome is checked after recovery

    attempts = [0]
    store = env.bridge.store
    flush = store.flush

    def counting_flush() -> int:
        attempts[0] += 1
        return flush()

    store.flush = counting_flush  # type: ignore[method-assign]
    await wait_for(lambda: attempts[0] >= 25, 5, "25 flushes on the full disk")
    lines_while_full = len([r for r in caplog.records if "database or disk is full" in r.getMessage()])
    await wait_for(
        lambda: env.bridge.inbound.drops.total > 0 or env.bridge.store.printers[pid].current_print is not first_print,
        5,
        "the new print's message to be handled",
    )

    _set_max_pages(env, 100_000)  # space returns
    await wait_for(lambda: env.bridge.store.last_write_error is None, 5, "the flush after recovery")
    assert await health() == (200, {"mqtt": "connected", "db": "ok"})
    # Resent by the agent (as agents do, at 1 Hz): now it is recorded.
    again = agent_message(ts=time.time() + 3, event="PrintStarted", current_print_ts=1716909999, filename="b.gcode")
    await asyncio.to_thread(agent.publish_status, again)
    # The PUBACK comes from the broker: wait for the bridge to have applied the message, then for the flush.
    await wait_for(
        lambda: env.bridge.store.printers[pid].status_ts == again["status"]["_ts"], 5, "the resent status applied"
    )
    await wait_for(lambda: env.bridge.store.pending_writes == 0, 5, "the flush")
    await wait_for(
        lambda: (env.bridge.store.printers[pid].current_print or first_print).ts == 1716909999, 5, "the new print"
    )
    await wait_for(lambda: env.bridge.store.pending_writes == 0, 5, "the flush")

    conn = sqlite3.connect(env.settings.db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (status,) = conn.execute("SELECT status FROM printers WHERE id = ?", (pid,)).fetchone()
        assert msgspec.json.decode(status) == again["status"]
        rows = conn.execute("SELECT ts, ended_at IS NOT NULL FROM prints WHERE printer_id = ? ORDER BY id", (pid,))
        assert rows.fetchall() == [(1716904799.0, 1), (1716909999.0, 0)]
    finally:
        conn.close()
    print(f"\n'disk full' logged {lines_while_full} times while full")
    assert lines_while_full <= 5, "a full disk must not flood the log"
