"""`GET /api/v1/printers/stream/`: the caller's printers as server-sent events (see `bridge.http.live`).

Authentication is the REST API's (header forms only, never a token in the URL): a missing or bad token is
the usual 401 before anything is streamed. The response is written by `EventStreamASGI`, which owns the
connection: a writer that sends what the client's subscription has due, and a guard that notices the
client leaving and a write that waits on a client that does not read. A stalled client is cut off after
`StreamTiming.stall_s`; nothing the bridge does waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.response.base import ASGIResponse
from litestar.types import HTTPResponseBodyEvent, Receive, Scope, Send

from bridge.http.auth import authenticate
from bridge.http.deps import HotReads
from bridge.http.live import HEARTBEAT, LiveHub, Subscription

log = logging.getLogger("printbridge.stream")

STREAM_HEADERS = {
    "Cache-Control": "no-cache, no-store",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
    "Connection": "keep-alive",
}
TELL_TIMEOUT_S = 1.0  # how long the bridge tries to tell a cut-off client why

STREAM_DESCRIPTION = """\
A `text/event-stream` of the caller's printers, authenticated like every endpoint here (an `Authorization`
or `X-API-KEY` header; never a token in the URL).

Events, in this order:
- `printers` — first, once: the caller's printers exactly as `GET /api/v1/printers/` returns them (also after
  a reconnect with `Last-Event-ID`: the list is always sent fresh, nothing is replayed);
- `printer` — one Printer, exactly as `GET /api/v1/printers/{id}/` returns it at that moment, whenever it
  changes (coalesced per printer: a printer changing many times a second is sent a few times a second, the
  latest state always);
- `deleted` — `{"id": int}`: the printer was deleted or archived;
- `command` — a command history row (as `GET /api/v1/printers/{id}/commands/`) with `printer_id`, when the
  command is answered (acked, refused, timeout, not_sent);
- `snapshot` — `{"id": int}`: a new snapshot is at the printer's `pic.img_url`;
- `error` — `{"detail": str}`: the bridge is closing this stream (a client too slow to read it, or the bridge
  stopping).

A comment line (`: keepalive`) is sent after 15 s without events.
"""


def _body(data: bytes, more: bool = True) -> HTTPResponseBodyEvent:
    return {"type": "http.response.body", "body": data, "more_body": more}


class EventStreamASGI(ASGIResponse):
    _should_set_content_length = False

    def __init__(self, hub: LiveHub, sub: Subscription) -> None:
        super().__init__(headers=STREAM_HEADERS, media_type="text/event-stream", status_code=200)
        self.hub = hub
        self.sub = sub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.hub.unsubscribe(self.sub)  # also when the response could not even start

    async def send_body(self, send: Send, receive: Receive) -> None:
        sub = self.sub
        writer = asyncio.current_task()
        assert writer is not None
        guard = asyncio.get_running_loop().create_task(self._guard(receive, writer), name="stream-guard")
        try:
            await self._write_all(send)
        except asyncio.CancelledError:
            if sub.closed is None and not sub.gone:
                raise  # cancelled from outside (the server stopping)
            writer.uncancel()
        finally:
            guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guard
            self.hub.unsubscribe(sub)
        if sub.closed is not None and not sub.gone:
            if sub.too_slow:
                self.hub.cut_off += 1
                log.warning("event stream of user %d closed: %s", sub.owner_id, sub.closed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(send(_body(sub.error_event(), more=False)), TELL_TIMEOUT_S)
        elif not sub.gone:
            await send(_body(b"", more=False))

    async def _write(self, send: Send, data: bytes) -> None:
        self.sub.writing_since = time.monotonic()
        await send(_body(data))
        self.sub.writing_since = None

    async def _write_all(self, send: Send) -> None:
        sub = self.sub
        timing = self.hub.timing
        loop = asyncio.get_running_loop()
        await self._write(send, sub.first_event())
        last_write = time.monotonic()
        while sub.closed is None and not sub.gone:
            data, waiting = sub.due(time.monotonic())
            if data:
                await self._write(send, data)
                last_write = time.monotonic()
                if timing.batch_s > 0:
                    await asyncio.sleep(timing.batch_s)  # let the next changes gather into one write
                continue
            now = time.monotonic()
            heartbeat_at = last_write + timing.heartbeat_s
            if now >= heartbeat_at:
                await self._write(send, HEARTBEAT)
                last_write = time.monotonic()
                continue
            wake_at = heartbeat_at if waiting is None else min(heartbeat_at, waiting)
            sub.wake.clear()
            timer = loop.call_later(max(wake_at - now, 0.0), sub.wake.set)
            try:
                await sub.wake.wait()
            finally:
                timer.cancel()

    async def _guard(self, receive: Receive, writer: asyncio.Task[Any]) -> None:
        """Notice the client leaving, and a write stuck on a client that does not read."""
        sub = self.sub
        stall_s = self.hub.timing.stall_s
        loop = asyncio.get_running_loop()
        message = loop.create_task(self._disconnected(receive))
        try:
            while True:
                done, _ = await asyncio.wait({message}, timeout=min(1.0, stall_s / 4))
                if done:  # the writer notices at its next wake-up; a pending write returns on a lost connection
                    sub.gone = True
                    sub.wake.set()
                    return
                # The writer is cancelled only while it waits inside a write (`writing_since` is cleared as
                # soon as the write returns), so the cancellation always lands in its `try`.
                since = sub.writing_since
                if since is None:
                    continue
                if sub.closed is None and time.monotonic() - since > stall_s:
                    sub.close(f"client too slow: nothing read for {stall_s:g} s; disconnected", too_slow=True)
                if sub.closed is not None:
                    writer.cancel()
                    return
        finally:
            message.cancel()

    @staticmethod
    async def _disconnected(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass


class EventStream(Response[bytes]):
    """The route's return value; its ASGI side is `EventStreamASGI`."""

    def __init__(self, hub: LiveHub, user_id: int) -> None:
        super().__init__(content=b"", media_type="text/event-stream")
        self.hub = hub
        self.user_id = user_id

    def to_asgi_response(self, app: Any, request: Request[Any, Any, Any], **kwargs: Any) -> ASGIResponse:
        # Subscribed here, when the response is about to be written, so that no change is missed between
        # the list and the first change, and nothing is left subscribed by a request that fails earlier.
        return EventStreamASGI(self.hub, self.hub.subscribe(self.user_id))


class StreamController(Controller):
    path = "/api/v1/printers"
    tags = ["printers"]

    @get(
        "/stream",
        summary="Live changes of the caller's printers (server-sent events)",
        description=STREAM_DESCRIPTION,
        media_type="text/event-stream",
    )
    async def stream(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        hot: HotReads = request.app.state.hot_reads
        user_id = authenticate(hot.users, request)
        hub: LiveHub = request.app.state.hub
        return EventStream(hub, user_id)
