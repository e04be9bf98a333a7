"""The `printbridge` command (README, Command line), run as a real subprocess against a database in tmp_path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from bridge.domain.views import Printer
from tests.support.broker import Broker, connected_probe, free_port
from tests.support.env import running_bridge

PRINTBRIDGE = Path(sys.executable).with_name("printbridge")
PRINTER_FIELDS = set(Printer.__struct_fields__)


def cli_env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRINTBRIDGE_")}
    env["PRINTBRIDGE_DB"] = str(db)
    env.update(extra)
    return env


def run(env: dict[str, str], *args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bridge", *args] if module else [str(PRINTBRIDGE), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)


def ok(env: dict[str, str], *args: str, module: bool = False) -> Any:
    """Run a command that must succeed and print exactly one JSON document on stdout."""
    result = run(env, *args, module=module)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stderr}"
    return msgspec.json.decode(result.stdout)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path / "data" / "printbridge.db")


def test_user_add_prints_json_and_refuses_a_duplicate(env: dict[str, str]) -> None:
    user = ok(env, "user", "add", "alice")
    assert set(user) == {"id", "username", "token"}
    assert user["username"] == "alice" and isinstance(user["id"], int) and len(user["token"]) >= 22
    again = run(env, "user", "add", "alice")
    assert again.returncode == 1 and again.stdout == ""
    assert "alice" in again.stderr
    # `python -m bridge` is the same command.
    bob = ok(env, "user", "add", "bob", module=True)
    assert bob["username"] == "bob" and bob["id"] != user["id"]


async def test_user_token_rotates_and_the_old_token_stops_working(broker: Broker, tmp_path: Path) -> None:
    db = tmp_path / "printbridge.db"
    env = cli_env(db)
    first = ok(env, "user", "add", "carol")
    rotated = ok(env, "user", "token", "carol")
    assert set(rotated) == {"username", "token"}
    assert rotated["username"] == "carol" and rotated["token"] != first["token"]
    missing = run(env, "user", "token", "nobody")
    assert missing.returncode == 1 and missing.stdout == ""

    async with running_bridge(broker, db) as bridge_env:
        old = await bridge_env.client.get("/api/v1/printers/", headers=bridge_env.auth(first["token"]))
        assert old.status_code == 401
        new = await bridge_env.client.get("/api/v1/printers/", headers=bridge_env.auth(rotated["token"]))
        assert new.status_code == 200 and new.json() == []


def test_printer_add_list_and_token(tmp_path: Path) -> None:
    env = cli_env(
        tmp_path / "pb.db",
        PRINTBRIDGE_BASE_TOPIC="shop/floor1",
        PRINTBRIDGE_MQTT_URL="mqtt://bridge:secret@127.0.0.1:1884",
    )
    alice = ok(env, "user", "add", "alice")
    ok(env, "user", "add", "bob")
    printer = ok(env, "printer", "add", "--owner", "alice", "--name", "Prusa MK4")
    assert set(printer) == PRINTER_FIELDS | {"mqtt", "agent_config"}
    assert printer["mqtt"] == {
        "username": f"printer-{printer['id']}",
        "password": printer["auth_token"],
        "base_topic": "shop/floor1",
    }
    config = printer["agent_config"]
    assert {k: v for k, v in config.items() if k != "snippet"} == {
        "dialect": "printbridge",
        "broker": {
            "url": "mqtt://127.0.0.1:1884",
            "username": f"printer-{printer['id']}",
            "password": printer["auth_token"],
        },
        "base_topic": "shop/floor1",
        "printer_id": printer["id"],
    }
    assert f"printer_id: {printer['id']}" in config["snippet"]
    public = ok(
        {**env, "PRINTBRIDGE_PUBLIC_MQTT_URL": "mqtts://printers.example:8883"},
        "printer",
        "add",
        "--owner",
        "alice",
        "--name",
        "LAN",
    )
    assert public["agent_config"]["broker"]["url"] == "mqtts://printers.example:8883"
    assert printer["name"] == "Prusa MK4" and printer["created_at"].endswith("Z")
    expected_defaults = {
        "action_on_failure": "PAUSE",
        "watching_enabled": True,
        "tools_off_on_pause": True,
        "bed_off_on_pause": False,
        "retract_on_pause": 6.5,
        "lift_z_on_pause": 2.5,
        "detective_sensitivity": 1.0,
        "min_timelapse_secs_on_finish": 600,
        "min_timelapse_secs_on_cancel": 300,
        "archived_at": None,
        "agent_name": None,
        "agent_version": None,
        "pic": None,
        "status": None,
        "settings": {},
        "current_print": None,
        "normalized_p": 0.0,
    }
    assert {k: printer[k] for k in expected_defaults} == expected_defaults
    bobs = ok(env, "printer", "add", "--owner", "bob", "--name", "Bob's")

    nobody = run(env, "printer", "add", "--owner", "nobody", "--name", "X")
    assert nobody.returncode == 1 and nobody.stdout == ""
    empty_name = run(env, "printer", "add", "--owner", "alice", "--name", "")
    assert empty_name.returncode != 0 and empty_name.stdout == ""

    everything = ok(env, "printer", "list")
    assert [p["id"] for p in everything] == [printer["id"], public["id"], bobs["id"]]
    assert all(set(p) == PRINTER_FIELDS for p in everything)
    listed = {k: v for k, v in printer.items() if k not in ("mqtt", "agent_config")}
    assert everything[0] == listed
    assert [p["id"] for p in ok(env, "printer", "list", "--owner", "alice")] == [printer["id"], public["id"]]
    assert [p["id"] for p in ok(env, "printer", "list", "--owner", "bob")] == [bobs["id"]]
    unknown_owner = run(env, "printer", "list", "--owner", "nobody")
    assert unknown_owner.returncode == 1 and unknown_owner.stdout == ""

    new = ok(env, "printer", "token", str(printer["id"]))
    assert set(new) == {"id", "auth_token"}
    assert new["id"] == printer["id"] and new["auth_token"] != printer["auth_token"]
    after, _ = ok(env, "printer", "list", "--owner", "alice")
    assert after["auth_token"] == new["auth_token"]
    missing = run(env, "printer", "token", "999999")
    assert missing.returncode == 1 and missing.stdout == ""
    assert alice["id"] > 0


def test_printer_add_with_a_dialect(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "pb.db")
    ok(env, "user", "add", "alice")
    printer = ok(env, "printer", "add", "--owner", "alice", "--name", "P", "--dialect", "printbridge")
    assert printer["dialect"] == "printbridge"
    unknown = run(env, "printer", "add", "--owner", "alice", "--name", "Q", "--dialect", "klingon")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "dialect" in unknown.stderr and "klingon" in unknown.stderr
    assert [p["name"] for p in ok(env, "printer", "list")] == ["P"]


def test_ha_account_is_stable(env: dict[str, str]) -> None:
    first = ok(env, "ha-account")
    assert set(first) == {"username", "password"}
    assert first["username"] and len(first["password"]) >= 22
    assert ok(env, "ha-account") == first


def test_invalid_setting_exits_2_naming_the_variable(env: dict[str, str]) -> None:
    result = run({**env, "PRINTBRIDGE_STATUS_TTL_S": "soon"}, "printer", "list")
    assert result.returncode == 2 and result.stdout == ""
    assert "PRINTBRIDGE_STATUS_TTL_S" in result.stderr


# -- serve ------------------------------------------------------------------------------------------------


class Served:
    def __init__(self, process: subprocess.Popen[bytes], base_url: str, stdout: Path, stderr: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.stdout = stdout
        self.stderr = stderr

    def wait_healthy(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.stderr.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"/health not 200 within {timeout} s:\n{self.stderr.read_text()}")

    def terminate(self, timeout: float = 5.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def start_serve(env: dict[str, str], workdir: Path, name: str) -> Served:
    port = free_port()
    out, err = workdir / f"{name}.out", workdir / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [str(PRINTBRIDGE), "serve"],
            env={**env, "PRINTBRIDGE_HTTP_PORT": str(port)},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    return Served(process, f"http://127.0.0.1:{port}", out, err)


@pytest.fixture
def serve_env(broker: Broker, tmp_path: Path) -> Iterator[dict[str, str]]:
    base = f"cli{os.getpid()}x{time.monotonic_ns() % 10**9}"
    yield cli_env(
        tmp_path / "serve.db",
        PRINTBRIDGE_MQTT_URL=broker.url(),
        PRINTBRIDGE_BASE_TOPIC=base,
        PRINTBRIDGE_HA_PREFIX=f"ha{base}",
    )


def test_serve_for_real(broker: Broker, serve_env: dict[str, str], tmp_path: Path) -> None:
    served = start_serve(serve_env, tmp_path, "first")
    try:
        served.wait_healthy()
        # The first start on an empty database creates `admin` and prints its token once, as JSON.
        admin = msgspec.json.decode(served.stdout.read_bytes())
        assert set(admin) == {"id", "username", "token"} and admin["username"] == "admin"
        headers = {"Authorization": f"Token {admin['token']}"}
        assert httpx.get(f"{served.base_url}/api/v1/printers/", headers=headers).json() == []

        # A printer created by the CLI in another process shows up in the API within 5 s.
        created = ok(serve_env, "printer", "add", "--owner", "admin", "--name", "From the CLI")
        deadline = time.monotonic() + 5
        while True:
            listed = httpx.get(f"{served.base_url}/api/v1/printers/", headers=headers).json()
            if [p["id"] for p in listed] == [created["id"]]:
                break
            assert time.monotonic() < deadline, f"printer not in the API within 5 s: {listed}"
            time.sleep(0.05)
        one = httpx.get(f"{served.base_url}/api/v1/printers/{created['id']}/", headers=headers)
        assert one.status_code == 200 and one.json()["auth_token"] == created["auth_token"]

        started = time.monotonic()
        assert served.terminate(timeout=5) == 0
        assert time.monotonic() - started < 5
    finally:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()

    base = serve_env["PRINTBRIDGE_BASE_TOPIC"]
    with connected_probe(broker) as probe:
        probe.subscribe(f"{base}/bridge/state")
        msg = probe.expect(lambda m: m.topic == f"{base}/bridge/state")
        assert (msg.payload, msg.retain) == (b"offline", True)

    # A second start on the same database prints no token.
    again = start_serve(serve_env, tmp_path, "second")
    try:
        again.wait_healthy()
        assert again.terminate(timeout=5) == 0
        assert again.stdout.read_bytes() == b""
    finally:
        if again.process.poll() is None:
            again.process.kill()
            again.process.wait()
