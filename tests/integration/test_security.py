"""docs/mqtt.md, Accounts end to end: the running bridge keeps the broker's accounts in step with its printers.

Against a real Mosquitto with the dynamic-security plugin and the bridge as its admin (the `broker`
fixture, configured like mosquitto/mosquitto.conf), and, for `make run`, against the broker that
scripts/run.sh starts from mosquitto/mosquitto.conf itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.mqtt.dynsec import printer_username
from tests.support.agent import agent_message
from tests.support.broker import Broker, Probe, connected_probe, free_port, requires_dynsec
from tests.support.env import BridgeEnv, running_bridge, wait_for

pytestmark = requires_dynsec

REPO = Path(__file__).resolve().parents[2]
NOT_AUTHORIZED = 0x87  # MQTT 5 reason code 135 in PUBACK and SUBACK
CLI_TIMEOUT_S = 30.0


# -- helpers ---------------------------------------------------------------------------------------------


def cli_env(db_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRINTBRIDGE_")}
    env["PRINTBRIDGE_DB"] = str(db_path)
    env.update(extra)
    return env


async def run_cli(db_path: Path, *args: str) -> Any:
    """`printbridge ARGS` in its own process on the same database; its JSON output."""
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bridge", *args],
        env=cli_env(db_path),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


async def connect_rc(broker: Broker, username: str | None, password: str | None = None) -> int:
    """The CONNACK reason code for these credentials (0: accepted); the probe is closed again."""

    def attempt() -> int:
        probe = Probe(broker, username, password)
        try:
            return probe.connect()
        finally:
            probe.close()

    return await asyncio.to_thread(attempt)


async def account_ready(env: BridgeEnv, printer_id: int, token: str, timeout: float = 5.0) -> None:
    await wait_for(
        lambda: env.bridge.store.accounts.broker_tokens().get(printer_id) == token,
        timeout,
        f"the broker account of printer {printer_id} with its current token",
    )


async def printer_probe(env: BridgeEnv, printer: dict[str, Any], token: str | None = None) -> Probe:
    """A connected MQTT 5 client with the printer's credentials, subscribed to its own command topic."""
    token = token or printer["auth_token"]
    await account_ready(env, printer["id"], token)
    probe = Probe(env.broker, printer_username(printer["id"]), token)
    rc = await asyncio.to_thread(probe.connect)
    assert rc == 0, f"printer {printer['id']} refused: reason code {rc}"
    assert await asyncio.to_thread(probe.subscribe, env.topics.command(printer["id"])) == [1]
    return probe


class LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def bridge_log() -> Iterator[LogCollector]:
    """Everything the bridge's loggers and aiomqtt's (paho's packets) log, at DEBUG. Not caplog: Litestar's
    start-up replaces the root logger's handlers, and pytest resets its handler's level in every phase."""
    collector = LogCollector()
    loggers = [logging.getLogger(name) for name in ("printbridge", "mqtt")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(collector)
        lg.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(collector)
            lg.setLevel(level)


@pytest.fixture
def watcher(broker: Broker) -> Iterator[Probe]:
    """The broker's admin, connected for the whole test: it sees everything, and if the broker were
    restarted its connection would drop."""
    with connected_probe(broker) as probe:
        assert probe.subscribe("#") == [1]
        yield probe
        if broker._process is not None:  # not when the test stopped the broker itself
            assert not probe.disconnected.is_set(), "the broker dropped a long-lived connection (restarted?)"


def assert_broker_not_restarted(broker: Broker, pid: int | None, watcher: Probe) -> None:
    process = broker._process
    assert process is not None and process.poll() is None and process.pid == pid
    assert not watcher.disconnected.is_set()


async def nothing_arrives(env: BridgeEnv, watcher: Probe, name: str) -> list[str]:
    """Topics the watcher received before a sentinel published now (the topics of denied messages must
    not be among them)."""
    sentinel = env.topics.printer(999_999, f"sentinel-{name}")
    await asyncio.to_thread(watcher.publish, sentinel, b"end")
    seen = await asyncio.to_thread(watcher.collect_until, sentinel, b"end")
    return [m.topic for m in seen]


async def patch(env: BridgeEnv, printer_id: int, body: dict[str, Any], **params: Any) -> dict[str, Any]:
    resp = await env.client.patch(f"/api/v1/printers/{printer_id}/", json=body, headers=env.auth(), params=params)
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


async def rest_status(env: BridgeEnv, printer_id: int) -> Any:
    return (await env.get_printer(printer_id))["status"]


# -- accounts follow the printers ------------------------------------------------------------------------


async def test_created_printer_gets_an_account_and_anonymous_is_refused(env: BridgeEnv, watcher: Probe) -> None:
    pid = env.broker._process.pid if env.broker._process else None
    assert await connect_rc(env.broker, None) != 0
    printer = await env.create_printer("Prusa")
    assert await connect_rc(env.broker, printer_username(printer["id"]), "not-the-token") != 0
    agent = await env.agent(printer)
    await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time(), event="PrintStarted"))
    status = await wait_for(lambda: rest_status(env, printer["id"]), what="the status in REST")
    assert status["state"]["text"] == "Printing"
    assert_broker_not_restarted(env.broker, pid, watcher)


async def test_printer_cannot_touch_another_printers_topics(env: BridgeEnv, watcher: Probe) -> None:
    mine = await env.create_printer("Mine")
    other = await env.create_printer("Other")
    other_agent = await env.agent(other)
    await asyncio.to_thread(other_agent.publish_status, agent_message(ts=time.time(), state_text="Printing"))
    before = await wait_for(lambda: rest_status(env, other["id"]), what="the other printer's status")
    probe = await printer_probe(env, mine)
    try:
        forbidden = [env.topics.status(other["id"]), env.topics.ack(other["id"]), env.topics.command(other["id"])]
        fake = json.dumps(agent_message(ts=time.time(), state_text="Hacked")).encode()
        await nothing_arrives(env, watcher, "before")  # what the watcher saw so far is not counted
        for topic in forbidden:
            assert await asyncio.to_thread(probe.publish, topic, fake) == NOT_AUTHORIZED, topic
        assert set(forbidden).isdisjoint(await nothing_arrives(env, watcher, "publish"))

        assert await asyncio.to_thread(probe.subscribe, env.topics.command(other["id"])) == [NOT_AUTHORIZED]
        # The other printer's command goes out, then one for this printer as the sentinel.
        await asyncio.to_thread(watcher.publish, env.topics.command(other["id"]), b'{"cmd_id": "x"}')
        await asyncio.to_thread(watcher.publish, env.topics.command(mine["id"]), b"sentinel")
        assert await asyncio.to_thread(probe.collect_until, env.topics.command(mine["id"]), b"sentinel") == []
    finally:
        await asyncio.to_thread(probe.close)
    assert await rest_status(env, other["id"]) == before
    assert before["state"]["text"] == "Printing"


async def test_delete_archive_and_unarchive(env: BridgeEnv, watcher: Probe) -> None:
    pid = env.broker._process.pid if env.broker._process else None
    archived = await env.create_printer("Archived")
    deleted = await env.create_printer("Deleted")
    probes = [await printer_probe(env, archived), await printer_probe(env, deleted)]
    try:
        await patch(env, archived["id"], {"archived_at": "2024-05-28T12:00:00Z"})
        await asyncio.to_thread(probes[0].disconnected.wait, 5)
        assert probes[0].disconnected.is_set(), "an archived printer's agent stays connected"
        assert await connect_rc(env.broker, printer_username(archived["id"]), archived["auth_token"]) != 0

        resp = await env.client.delete(f"/api/v1/printers/{deleted['id']}/", headers=env.auth())
        assert resp.status_code == 200
        await asyncio.to_thread(probes[1].disconnected.wait, 5)
        assert probes[1].disconnected.is_set(), "a deleted printer's agent stays connected"
        assert await connect_rc(env.broker, printer_username(deleted["id"]), deleted["auth_token"]) != 0
    finally:
        for probe in probes:
            await asyncio.to_thread(probe.close)

    body = await patch(env, archived["id"], {"archived_at": None}, with_archived="true")
    assert body["auth_token"] == archived["auth_token"]
    back = await printer_probe(env, archived)
    await asyncio.to_thread(back.close)
    assert_broker_not_restarted(env.broker, pid, watcher)


async def test_patch_leaves_credentials_alone(env: BridgeEnv) -> None:
    printer = await env.create_printer("Prusa")
    probe = await printer_probe(env, printer)
    try:
        body = await patch(env, printer["id"], {"name": "Renamed", "watching_enabled": False, "auth_token": "mine"})
        assert body["auth_token"] == printer["auth_token"]
        # Still connected and subscribed: a command published after the PATCH reaches it.
        with connected_probe(env.broker) as admin:
            await asyncio.to_thread(admin.publish, env.topics.command(printer["id"]), b"after-patch")
        received = await asyncio.to_thread(probe.expect, lambda m: m.payload == b"after-patch")
        assert received.topic == env.topics.command(printer["id"])
        assert not probe.disconnected.is_set()
    finally:
        await asyncio.to_thread(probe.close)
    assert env.bridge.store.accounts.broker_tokens()[printer["id"]] == printer["auth_token"]


async def test_rotate_token_over_rest(env: BridgeEnv, watcher: Probe) -> None:
    pid = env.broker._process.pid if env.broker._process else None
    printer = await env.create_printer("Prusa")
    probe = await printer_probe(env, printer)
    try:
        resp = await env.client.post(f"/api/v1/printers/{printer['id']}/rotate_token/", headers=env.auth())
        assert resp.status_code == 200, resp.text
        new = resp.json()["auth_token"]
        assert new != printer["auth_token"]
        await asyncio.to_thread(probe.disconnected.wait, 5)
        assert probe.disconnected.is_set(), "an agent with the old password stays connected"
    finally:
        await asyncio.to_thread(probe.close)
    assert await connect_rc(env.broker, printer_username(printer["id"]), printer["auth_token"]) != 0
    fresh = await printer_probe(env, printer, new)
    await asyncio.to_thread(fresh.close)
    assert (await env.get_printer(printer["id"]))["auth_token"] == new
    assert_broker_not_restarted(env.broker, pid, watcher)


async def test_rotate_token_with_the_cli_while_serving(env: BridgeEnv, watcher: Probe) -> None:
    printer = await env.create_printer("Prusa")
    probe = await printer_probe(env, printer)
    try:
        out = await run_cli(env.settings.db_path, "printer", "token", str(printer["id"]))
        assert out["id"] == printer["id"] and out["auth_token"] != printer["auth_token"]
        await asyncio.to_thread(probe.disconnected.wait, 5)
        assert probe.disconnected.is_set(), "an agent with the old password stays connected"
    finally:
        await asyncio.to_thread(probe.close)
    await account_ready(env, printer["id"], out["auth_token"])
    assert await connect_rc(env.broker, printer_username(printer["id"]), printer["auth_token"]) != 0
    fresh = await printer_probe(env, printer, out["auth_token"])
    await asyncio.to_thread(fresh.close)
    assert (await env.get_printer(printer["id"]))["auth_token"] == out["auth_token"]


async def test_home_assistant_account(env: BridgeEnv, watcher: Probe, bridge_log: LogCollector) -> None:
    printer = await env.create_printer("Prusa")
    agent = await env.agent(printer)
    await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time()))
    before = await wait_for(lambda: rest_status(env, printer["id"]), what="the status in REST")

    account = await run_cli(env.settings.db_path, "ha-account")
    assert account["username"] == "homeassistant" and len(account["password"]) >= 22
    assert await run_cli(env.settings.db_path, "ha-account") == account  # shown again, not changed
    await wait_for(
        lambda: env.bridge.store.accounts.get("homeassistant:synced") == (account["username"], account["password"]),
        what="the Home Assistant account on the broker",
    )
    with connected_probe(env.broker, account["username"], account["password"]) as ha:
        assert ha.subscribe(f"{env.topics.base}/#") == [1]
        assert ha.subscribe(f"{env.topics.ha_prefix}/#") == [1]
        state = await asyncio.to_thread(ha.expect, lambda m: m.topic == env.topics.state(printer["id"]))
        assert json.loads(state.payload)["printing"] is True

        # Pressing the pause button reaches the bridge, which commands the agent and answers.
        pause = env.topics.action(printer["id"], "pause")
        assert await asyncio.to_thread(ha.publish, pause, b'{"request_id": "ha-1"}') == 0
        command = await asyncio.to_thread(agent.wait_command)
        assert command["cmd"] == "pause"
        response = await asyncio.to_thread(
            ha.expect, lambda m: m.topic == env.topics.action_response(printer["id"], "pause")
        )
        assert json.loads(response.payload) == {"request_id": "ha-1", "succeeded": True, "error": None}

        # It may not pretend to be a printer, nor command one directly.
        fake = json.dumps(agent_message(ts=time.time(), state_text="Hacked")).encode()
        denied = [env.topics.status(printer["id"]), env.topics.command(printer["id"])]
        await nothing_arrives(env, watcher, "before")  # what the watcher saw so far is not counted
        for topic in denied:
            assert await asyncio.to_thread(ha.publish, topic, fake) == NOT_AUTHORIZED, topic
        assert await asyncio.to_thread(ha.publish, f"{env.topics.ha_prefix}/status", b"online") == 0
    assert set(denied).isdisjoint(await nothing_arrives(env, watcher, "ha"))
    assert (await rest_status(env, printer["id"]))["state"] == before["state"]
    assert "Home Assistant" not in bridge_log.text  # no failed account change was logged
    assert "Sending PUBLISH" in bridge_log.text  # the log was captured at all
    assert account["password"] not in bridge_log.text


async def test_accounts_catch_up_after_the_broker_was_down(env: BridgeEnv) -> None:
    gone = await env.create_printer("Gone")
    await account_ready(env, gone["id"], gone["auth_token"])
    await asyncio.to_thread(env.broker.stop)
    await wait_for(lambda: not env.bridge.mqtt_connected, what="the bridge to notice the broker is down")

    created = await env.create_printer("Created while down")
    resp = await env.client.delete(f"/api/v1/printers/{gone['id']}/", headers=env.auth())
    assert resp.status_code == 200

    await asyncio.to_thread(env.broker.restart)
    await wait_for(lambda: env.bridge.mqtt_connected, 15, "the bridge to reconnect")
    agent = await env.agent(created)
    await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time()))
    await wait_for(lambda: rest_status(env, created["id"]), what="the new printer's status in REST")
    await wait_for(
        lambda: gone["id"] not in env.bridge.store.accounts.deleted_printer_ids(),
        what="the deleted printer's account removed",
    )
    assert await connect_rc(env.broker, printer_username(gone["id"]), gone["auth_token"]) != 0


# -- secrets ---------------------------------------------------------------------------------------------


async def test_tokens_stay_out_of_topics_and_logs(
    broker: Broker, watcher: Probe, tmp_path: Path, bridge_log: LogCollector
) -> None:
    async with running_bridge(broker, tmp_path / "printbridge.db") as env:
        printer = await env.create_printer("Prusa")
        agent = await env.agent(printer)
        await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time(), event="PrintStarted"))
        await wait_for(lambda: rest_status(env, printer["id"]), what="the status in REST")
        await patch(env, printer["id"], {"name": "Renamed"})
        resp = await env.client.post(f"/api/v1/printers/{printer['id']}/rotate_token/", headers=env.auth())
        new_token = resp.json()["auth_token"]
        await account_ready(env, printer["id"], new_token)
        await env.action(printer["id"], "mute_current_print")
        sentinel = env.topics.printer(999_999, "sentinel")
        await asyncio.to_thread(watcher.publish, sentinel, b"end")
        messages = await asyncio.to_thread(watcher.collect_until, sentinel, b"end")
    topics = {m.topic for m in messages}
    for expected in (
        env.topics.state(printer["id"]),
        env.topics.event(printer["id"]),
        f"{env.topics.ha_prefix}/device/printbridge_{printer['id']}/config",
    ):
        assert expected in topics, f"{expected} was not published: the check below would prove nothing"
    for m in messages:
        for token in (printer["auth_token"], new_token):
            assert token.encode() not in m.payload, f"a printer token was published on {m.topic}"
    log_text = bridge_log.text
    assert "connected to" in log_text  # the bridge's log of the whole run was captured
    assert printer["auth_token"] not in log_text
    assert new_token not in log_text
    assert broker.admin_password not in log_text


async def test_printer_list_shows_only_the_owners_printers(env: BridgeEnv) -> None:
    _, bob_token = env.add_user("bob")
    alices = await env.create_printer("Alice's")
    bobs = await env.create_printer("Bob's", token=bob_token)
    listed = await run_cli(env.settings.db_path, "printer", "list", "--owner", "bob")
    assert [p["id"] for p in listed] == [bobs["id"]]
    assert [p["auth_token"] for p in listed] == [bobs["auth_token"]]
    assert alices["auth_token"] not in json.dumps(listed)


# -- PRINTBRIDGE_REQUIRE_BROKER_AUTH ---------------------------------------------------------------------


@pytest.fixture
def open_broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto that anyone may use (`allow_anonymous true`, no plugin) on a free port."""
    workdir = tmp_path / "open-broker"
    workdir.mkdir()
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\n")
    broker = Broker("127.0.0.1", port, None, None, dynsec=False, log_path=workdir / "log", config_path=config)
    broker._launch()
    try:
        yield broker
    finally:
        broker.stop()


def serve_command(db_path: Path, mqtt_url: str, **extra: str) -> tuple[list[str], dict[str, str]]:
    env = cli_env(
        db_path,
        PRINTBRIDGE_MQTT_URL=mqtt_url,
        PRINTBRIDGE_HTTP_PORT=str(free_port()),
        PRINTBRIDGE_BASE_TOPIC="pbserve",
        **extra,
    )
    return [sys.executable, "-m", "bridge", "serve"], env


async def test_serve_refuses_an_open_broker_when_auth_is_required(open_broker: Broker, tmp_path: Path) -> None:
    command, env = serve_command(tmp_path / "pb.db", open_broker.url(), PRINTBRIDGE_REQUIRE_BROKER_AUTH="true")
    proc = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )
    assert proc.returncode == 2, proc.stderr
    assert "PRINTBRIDGE_REQUIRE_BROKER_AUTH" in proc.stderr
    assert "anonymous" in proc.stderr and "not starting" in proc.stderr


async def test_an_open_broker_is_a_security_warning_by_default(
    open_broker: Broker, tmp_path: Path, bridge_log: LogCollector
) -> None:
    async with running_bridge(open_broker, tmp_path / "pb.db") as env:
        await wait_for(lambda: "SECURITY" in bridge_log.text, 10, "the SECURITY warning")
        printer = await env.create_printer("Prusa")  # the bridge works all the same
        assert (await env.get_printer(printer["id"]))["name"] == "Prusa"
    warnings = [line for line in bridge_log.lines if "SECURITY" in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("WARNING printbridge.accounts: SECURITY: the broker lets anonymous clients")


# -- `make run`: scripts/run.sh with mosquitto/mosquitto.conf ----------------------------------------------


def http_health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except OSError:
        return None


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def stored_account(db_path: Path, name: str) -> tuple[str, str] | None:
    conn = sqlite3.connect(db_path)
    try:
        row = conn.execute("SELECT username, password FROM broker_accounts WHERE name = ?", (name,)).fetchone()
    finally:
        conn.close()
    return None if row is None else (row[0], row[1])


async def test_make_run_starts_a_broker_only_printbridge_accounts_can_use(tmp_path: Path) -> None:
    tree = tmp_path / "checkout"
    tree.mkdir()
    for folder in ("mosquitto", "scripts"):
        shutil.copytree(REPO / folder, tree / folder)
    (tree / ".venv").symlink_to(sys.prefix)  # the environment running the tests, with `printbridge` in it
    mqtt_port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRINTBRIDGE_")}
    env.update(
        PATH=f"{env.get('PATH', '')}:/usr/sbin",
        PRINTBRIDGE_BROKER_PORT=str(mqtt_port),
        PRINTBRIDGE_HTTP_PORT=str(http_port),
        PRINTBRIDGE_REQUIRE_BROKER_AUTH="true",  # passes: the broker refuses anonymous clients
    )
    log = (tmp_path / "run.log").open("wb")
    run = await asyncio.to_thread(
        subprocess.Popen,
        ["bash", "scripts/run.sh"],
        cwd=tree,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, which gets the Ctrl-C below
    )
    broker = Broker("127.0.0.1", mqtt_port, None, None, dynsec=True)
    try:

        async def healthy() -> bool:
            if run.poll() is not None:
                raise AssertionError(f"scripts/run.sh exited: {(tmp_path / 'run.log').read_text()}")
            body = await asyncio.to_thread(http_health, http_port)
            return body == {"mqtt": "connected", "db": "ok"}

        await wait_for(healthy, 30, "make run's bridge connected to make run's broker")
        db_path = tree / "data" / "printbridge.db"
        bridge_account = stored_account(db_path, "bridge")
        assert bridge_account is not None and bridge_account[0] == "printbridge"
        dynsec_file = json.loads((tree / "data/mosquitto/dynamic-security.json").read_text())
        assert "printbridge" in [c["username"] for c in dynsec_file["clients"]]
        rendered = (tree / "data/mosquitto/run.conf").read_text()
        assert f"listener {mqtt_port} 127.0.0.1" in rendered and "allow_anonymous false" in rendered

        assert await connect_rc(broker, None) != 0
        assert await connect_rc(broker, "printbridge", "wrong") != 0
        assert await connect_rc(broker, *bridge_account) == 0
        again = await run_cli(
            db_path, "broker-init", "--dynsec-file", str(tree / "data/mosquitto/dynamic-security.json")
        )
        assert again == {
            "username": "printbridge",
            "dynsec_file": str(tree / "data/mosquitto/dynamic-security.json"),
            "created": False,
        }

        # The bridge administers the broker: a printer added with the CLI can connect within seconds.
        printer = await run_cli(db_path, "printer", "add", "--owner", "admin", "--name", "Prusa")
        creds = printer["mqtt"]
        assert creds["username"] == f"printer-{printer['id']}" and creds["password"] == printer["auth_token"]

        async def printer_accepted() -> bool:
            return await connect_rc(broker, creds["username"], creds["password"]) == 0

        await wait_for(printer_accepted, 10, "the CLI printer's broker account")
    finally:
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C
        try:
            code = await asyncio.to_thread(run.wait, 20)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            await asyncio.to_thread(run.wait, 10)
            raise
        finally:
            log.close()
    assert code == 0, (tmp_path / "run.log").read_text()
    assert not port_open(mqtt_port), "Ctrl-C left the broker running"
    assert not port_open(http_port), "Ctrl-C left the bridge running"
