"""What another process wrote is what the next request and the broker see, with no sleep in between.

A real `printbridge serve` and the installed `printbridge` command, as subprocesses on one database, next to
a real Mosquitto with the dynamic-security plugin whose admin login is the bridge's stored account (as
`make run` sets it up: no credentials in PRINTBRIDGE_MQTT_URL). Every check follows the command at once
and is repeated REPEAT times. Deletes and archives come from a second connection to the database (the CLI
has no such command), next to the in-process bridge.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from bridge.state.store import Store
from tests.reliability.serve import Served
from tests.support.agent import TestAgent, agent_message
from tests.support.broker import Broker, Probe, free_port, requires_dynsec, start_broker
from tests.support.env import BridgeEnv, running_bridge, wait_for

pytestmark = requires_dynsec

REPEAT = 20
PRINTBRIDGE = Path(sys.executable).with_name("printbridge")
BASE = "truth"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One broker and one `printbridge serve` for the module; the bridge logs in with its stored account."""
    workdir = tmp_path_factory.mktemp("one-truth")
    broker = start_broker(workdir / "mosquitto")
    try:
        store = Store(workdir / "printbridge.db")
        store.accounts.set("bridge", broker.admin_username or "", broker.admin_password or "")
        store.close()
        server = Served(broker, workdir, BASE, PRINTBRIDGE_MQTT_URL=f"mqtt://{broker.host}:{broker.port}")
        try:
            server.start()
            yield server
        finally:
            server.stop()
    finally:
        broker.stop()


def cli(served: Served, *args: str, mqtt_url: str | None = None) -> tuple[Any, str]:
    """`printbridge ARGS` as the installed command on the served database: (its JSON, its stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRINTBRIDGE_")}
    env.update(
        PRINTBRIDGE_DB=str(served.db),
        PRINTBRIDGE_MQTT_URL=mqtt_url or f"mqtt://{served.broker.host}:{served.broker.port}",
        PRINTBRIDGE_BASE_TOPIC=BASE,
        PRINTBRIDGE_HA_PREFIX=f"{BASE}-ha",
    )
    done = subprocess.run([str(PRINTBRIDGE), *args], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stderr}"
    return msgspec.json.decode(done.stdout), done.stderr


def get(served: Served, path: str, token: str | None = None) -> httpx.Response:
    return httpx.get(f"{served.url}{path}", headers={"Authorization": f"Bearer {token or served.token}"})


def connect_rc(broker: Broker, username: str, password: str) -> int:
    """The CONNACK reason code for this login (0: accepted)."""
    probe = Probe(broker, username, password)
    try:
        return probe.connect()
    finally:
        probe.close()


def test_printer_add_is_admitted_by_the_broker_and_served_at_once(served: Served) -> None:
    for n in range(REPEAT):
        printer, stderr = cli(served, "printer", "add", "--owner", "admin", "--name", f"Added {n}")
        assert stderr == ""  # the command made the broker account itself
        pid = printer["id"]
        assert connect_rc(served.broker, printer["mqtt"]["username"], printer["mqtt"]["password"]) == 0
        one = get(served, f"/api/v1/printers/{pid}/")  # the read fast path
        assert one.status_code == 200 and one.json()["auth_token"] == printer["auth_token"], (n, one.text)
        assert pid in [p["id"] for p in get(served, "/api/v1/printers/").json()]
        assert get(served, f"/api/v1/printers/{pid}/commands/").status_code == 200  # a Litestar route


def test_printer_token_changes_the_broker_password_at_once(served: Served) -> None:
    printer, _ = cli(served, "printer", "add", "--owner", "admin", "--name", "Rotated")
    username, password = printer["mqtt"]["username"], printer["mqtt"]["password"]
    for n in range(REPEAT):
        rotated, stderr = cli(served, "printer", "token", str(printer["id"]))
        assert stderr == ""
        assert connect_rc(served.broker, username, password) != 0, f"round {n}: the old password still works"
        assert connect_rc(served.broker, username, rotated["auth_token"]) == 0
        assert get(served, f"/api/v1/printers/{printer['id']}/").json()["auth_token"] == rotated["auth_token"]
        password = rotated["auth_token"]


def test_user_token_replaces_the_api_token_at_once(served: Served) -> None:
    carol, _ = cli(served, "user", "add", "carol")
    printer, _ = cli(served, "printer", "add", "--owner", "carol", "--name", "Carol's")
    paths = ["/api/v1/printers/", f"/api/v1/printers/{printer['id']}/", f"/api/v1/printers/{printer['id']}/commands/"]
    token = carol["token"]
    for path in paths:
        assert get(served, path, token).status_code == 200  # the old token is in the bridge's cache
    for n in range(REPEAT):
        rotated, _ = cli(served, "user", "token", "carol")
        for path in paths:
            assert get(served, path, token).status_code == 401, f"round {n}: the old token still works on {path}"
            assert get(served, path, rotated["token"]).status_code == 200
        token = rotated["token"]


def test_first_status_of_an_agent_started_when_printer_add_returns_is_kept(served: Served) -> None:
    for n in range(REPEAT):
        printer, _ = cli(served, "printer", "add", "--owner", "admin", "--name", f"Agent {n}")
        agent = TestAgent(
            served.broker.host, served.broker.port, printer["id"], printer["mqtt"]["password"], base_topic=BASE
        )
        agent.connect()
        try:
            agent.publish_status(agent_message(ts=time.time()))
            # The bridge receives it after the broker's PUBACK, so the GET is repeated until it shows; a
            # message dropped as from an unknown printer never would.
            deadline = time.monotonic() + 10
            while (status := get(served, f"/api/v1/printers/{printer['id']}/").json()["status"]) is None:
                assert time.monotonic() < deadline, f"round {n}: the agent's first status was lost"
            assert status["state"]["flags"]["printing"] is True
        finally:
            agent.disconnect()


def test_ha_account_is_on_the_broker_when_the_command_returns(served: Served) -> None:
    account, stderr = cli(served, "ha-account")
    assert stderr == ""
    assert connect_rc(served.broker, account["username"], account["password"]) == 0


def test_without_the_broker_the_command_succeeds_and_serve_makes_the_account(served: Served) -> None:
    nowhere = f"mqtt://127.0.0.1:{free_port()}"
    printer, stderr = cli(served, "printer", "add", "--owner", "admin", "--name", "Offline", mqtt_url=nowhere)
    assert "a running `printbridge serve` creates this printer's broker account" in stderr
    assert get(served, f"/api/v1/printers/{printer['id']}/").status_code == 200
    deadline = time.monotonic() + 10
    while connect_rc(served.broker, printer["mqtt"]["username"], printer["mqtt"]["password"]) != 0:
        assert time.monotonic() < deadline, "serve did not make the account"


# -- another connection next to the in-process bridge ---------------------------------------------------


@pytest.fixture
async def quiet_env(broker: Broker, tmp_path: Path) -> AsyncIterator[BridgeEnv]:
    """A bridge whose periodic look at the database is an hour away: only requests and messages look."""
    async with running_bridge(broker, tmp_path / "printbridge.db", reconcile_interval_s=3600.0) as env:
        yield env


async def test_deleted_or_archived_elsewhere_is_404_on_the_next_request(quiet_env: BridgeEnv) -> None:
    env = quiet_env
    for n in range(REPEAT):
        for change in ("archive", "delete"):
            pid = (await env.create_printer(f"{change} {n}"))["id"]
            other = Store(env.settings.db_path)
            try:
                other.load()
                rec = other.printers.get(pid)
                assert rec is not None
                if change == "archive":
                    other.printers.update(rec, {"archived_at": time.time()})
                else:
                    other.printers.delete(rec)
            finally:
                other.close()
            for path in (f"/api/v1/printers/{pid}/", f"/api/v1/printers/{pid}/commands/"):
                resp = await env.client.get(path, headers=env.auth())
                assert resp.status_code == 404, (n, change, path)
            listed = await env.client.get("/api/v1/printers/", headers=env.auth())
            assert pid not in [p["id"] for p in listed.json()]


async def test_a_message_from_a_printer_created_elsewhere_is_not_dropped(quiet_env: BridgeEnv) -> None:
    """No request in between: the message itself makes the bridge look at the database."""
    env = quiet_env
    other = Store(env.settings.db_path)
    try:
        other.load()
        printer = other.printers.create(env.user_id, "Created elsewhere")
    finally:
        other.close()
    assert env.bridge.store.printers.get(printer.id) is None
    agent = TestAgent(
        env.broker.host,
        env.broker.port,
        printer.id,
        env.broker.admin_password or "",
        username=env.broker.admin_username,  # a broker that admits it before any account exists
        base_topic=env.settings.base_topic,
    )
    await asyncio.to_thread(agent.connect)
    env.agents.append(agent)
    await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time()))
    loaded = await wait_for(lambda: env.bridge.store.printers.get(printer.id), what="the printer loaded")
    await wait_for(lambda: loaded.status_raw is not None, what="its first status applied")
    assert (await env.get_printer(printer.id))["status"]["state"]["flags"]["printing"] is True
