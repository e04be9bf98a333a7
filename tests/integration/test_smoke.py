from __future__ import annotations

import asyncio
import time

from tests.support.agent import agent_message
from tests.support.env import BridgeEnv, wait_for


async def test_status_shows_up_in_rest(env: BridgeEnv) -> None:
    printer = await env.create_printer("Prusa")
    agent = await env.agent(printer)
    await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time(), event="PrintStarted"))

    async def seen() -> dict | None:
        body = await env.get_printer(printer["id"])
        return body if body["status"] is not None else None

    body = await wait_for(seen, what="status in REST")
    assert body["status"]["state"]["text"] == "Printing"
    assert body["agent_name"] == "octoprint_obico"
    assert body["current_print"]["filename"] == "benchy.gcode"
