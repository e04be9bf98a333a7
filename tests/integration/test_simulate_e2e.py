"""The simulated printer agent (README, Command line `printbridge simulate`) end to end through the REST API: a printer
created over REST, the simulator connected with that printer's broker credentials, and pause, resume and
cancel obeyed as the bridge reports them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bridge.agent.simulator import Simulator, SimulatorConfig
from tests.support.broker import free_port, requires_dynsec
from tests.support.env import BridgeEnv, wait_for


async def broker_account(env: BridgeEnv, printer: dict[str, Any]) -> dict[str, Any]:
    """The simulator's connection settings once the broker knows the printer (as BridgeEnv.agent does)."""
    if env.broker.dynsec:
        await wait_for(
            lambda: env.bridge.store.accounts.broker_tokens().get(printer["id"]) == printer["auth_token"],
            what="the printer's broker account",
        )
        return {"password": printer["auth_token"]}
    return {"username": env.broker.admin_username, "password": env.broker.admin_password or ""}


async def rest_state(env: BridgeEnv, printer_id: int, text: str) -> dict[str, Any]:
    async def shown() -> dict[str, Any] | None:
        body = await env.get_printer(printer_id)
        status = body["status"]
        return body if status is not None and status["state"]["text"] == text else None

    body: dict[str, Any] = await wait_for(shown, what=f"state {text!r} in REST")
    return body


async def test_simulator_obeys_pause_resume_and_cancel_through_rest(env: BridgeEnv) -> None:
    printer = await env.create_printer("Simulated")
    pid = printer["id"]
    config = SimulatorConfig(
        printer_id=pid,
        host=env.broker.host,
        port=env.broker.port,
        base_topic=env.settings.base_topic,
        status_interval_s=0.2,
        print_duration_s=600.0,
        loop_prints=False,
        **await broker_account(env, printer),
    )
    sim = Simulator(config)
    await asyncio.to_thread(sim.start)
    try:
        body = await rest_state(env, pid, "Printing")
        assert body["agent_name"] == "printbridge-simulator"
        assert body["current_print"]["filename"] == "benchy.gcode"
        print_id = body["current_print"]["id"]

        result = await env.action(pid, "pause_print")
        assert (result["succeeded"], result["error"]) == (True, None)
        body = await rest_state(env, pid, "Paused")
        assert body["status"]["state"]["flags"]["paused"] is True
        assert body["current_print"]["id"] == print_id and sim.state == "Paused"
        result = await env.action(pid, "pause_print", method="GET")  # the agent says why it refuses
        assert (result["succeeded"], result["error"]) == (False, "already paused")

        result = await env.action(pid, "resume_print")
        assert (result["succeeded"], result["error"]) == (True, None)
        body = await rest_state(env, pid, "Printing")
        assert body["current_print"]["id"] == print_id

        result = await env.action(pid, "cancel_print")
        assert (result["succeeded"], result["error"]) == (True, None)

        async def ended() -> dict[str, Any] | None:
            body = await env.get_printer(pid)
            return body if body["current_print"] is None and body["status"] is not None else None

        body = await wait_for(ended, what="the print to end")
        assert body["status"]["state"]["text"] == "Operational"
        (p,) = env.bridge.store.prints.of(pid)
        assert p.id == print_id and p.cancelled_at is not None and p.ended_at is not None
        assert p.finished_at is None

        result = await env.action(pid, "pause_print")
        assert (result["succeeded"], result["error"]) == (False, "not printing")
        resp = await env.client.get(f"/api/v1/printers/{pid}/commands/", headers=env.auth())
        rows = [(r["cmd"], r["outcome"], r["error"]) for r in resp.json()]
        assert rows == [
            ("pause", "not_sent", "not printing"),
            ("cancel", "acked", None),
            ("resume", "acked", None),
            ("pause", "refused", "already paused"),
            ("pause", "acked", None),
        ]
    finally:
        await asyncio.to_thread(sim.stop)

    async def offline() -> bool:
        return (await env.get_printer(pid))["status"] is None

    await wait_for(offline, what="the stopped simulator offline in REST")


def _cli_env(env: BridgeEnv, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PRINTBRIDGE_BASE_TOPIC": env.settings.base_topic,
        "PRINTBRIDGE_DB": str(tmp_path / "cli" / "printbridge.db"),
    }


@requires_dynsec  # the CLI connects as printer-{id}: it needs the broker accounts the bridge makes
async def test_printbridge_simulate_runs_until_sigterm(env: BridgeEnv, tmp_path: Path) -> None:
    printer = await env.create_printer("From the CLI")
    pid = printer["id"]
    account = await broker_account(env, printer)
    url = f"mqtt://{env.broker.host}:{env.broker.port}"
    args = ["simulate", "--printer", str(pid), "--password", account["password"], "--mqtt-url", url]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        "--status-interval",
        "0.2",
        env=_cli_env(env, tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        body = await rest_state(env, pid, "Printing")
        assert body["agent_name"] == "printbridge-simulator" and body["current_print"] is not None
        result = await env.action(pid, "pause_print")
        assert (result["succeeded"], result["error"]) == (True, None)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert stdout == b"" and b"Traceback" not in stderr

    async def offline() -> bool:
        return (await env.get_printer(pid))["status"] is None

    await wait_for(offline, what="the simulator's `offline` in REST")


@requires_dynsec
async def test_printbridge_simulate_explains_why_it_cannot_start(env: BridgeEnv, tmp_path: Path) -> None:
    printer = await env.create_printer("Wrong password")
    await broker_account(env, printer)
    good = f"mqtt://{env.broker.host}:{env.broker.port}"
    nobody = f"mqtt://127.0.0.1:{free_port()}"
    runs = [(good, "not-the-token"), (nobody, printer["auth_token"])]

    async def run(url: str, password: str) -> tuple[int | None, bytes]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            "simulate",
            "--printer",
            str(printer["id"]),
            "--password",
            password,
            "--mqtt-url",
            url,
            env=_cli_env(env, tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(proc.communicate(), 20)
        return proc.returncode, stderr

    results = await asyncio.gather(*(run(url, password) for url, password in runs))
    expected = [
        f"printbridge: simulate: broker refused printer {printer['id']}: ",
        "printbridge: simulate: cannot reach the broker at 127.0.0.1:",
    ]
    for (code, stderr), message in zip(results, expected, strict=True):
        text = stderr.decode()
        assert code == 1, text
        assert message in text and "Traceback" not in text
