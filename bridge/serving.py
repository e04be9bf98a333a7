"""uvicorn for `printbridge serve`, with a stop signal that answers pending actions first.

uvicorn waits for open requests before it runs the app's shutdown, so an action waiting for a silent
agent's ack would hold the stop until `timeout_graceful_shutdown` and then be cut off without an answer.
Here the signal first fails every pending command ("bridge shutting down"), so those requests are answered
at once and the shutdown (publish `offline`, flush) follows within the graceful window.
"""

from __future__ import annotations

import asyncio
import socket
from types import FrameType

import uvicorn

from bridge.commands import Abort
from bridge.core import Bridge


class BridgeServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, bridge: Bridge) -> None:
        super().__init__(config)
        self.bridge = bridge
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.bridge.commands.fail_all, Abort.SHUTTING_DOWN)
