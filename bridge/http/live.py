"""Live changes for the event stream (`GET /api/v1/printers/stream/`): the hub the store tells about every
change, and one bounded, coalescing queue per connected client.

The store calls the hub synchronously from wherever a printer changes (ingest, actions, detection, REST
writes, the stale sweep, another process's writes); the hub only marks the printer's id in the queue of
each client of the printer's owner and wakes it, so a change costs one dict look-up when nobody listens and
a few set operations per client when someone does. Nothing is encoded there: each client's writer renders
what is due when it gets to run, from the read model's cached JSON, so an event is the Printer exactly as
`GET /api/v1/printers/{id}/` answers at that moment and a printer that changed ten times since the last
write is written once (latest wins). A queue holds at most one entry per printer, so it cannot grow past the
owner's fleet; the command rows it holds are capped, and a client that lets them overflow is cut off.

Wire format (text/event-stream): `printers` (the list, as `GET /api/v1/printers/` returns it), `printer`
(one Printer), `deleted` (`{"id"}`, also for an archived printer), `command` (a command history row with
`printer_id`, sent when the command is answered), `snapshot` (`{"id"}`: a new snapshot at the printer's
`pic.img_url`), `error` (`{"detail"}`, just before the bridge closes a stream it gives up on), and a comment
line as heartbeat.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass

import msgspec

from bridge.domain.models import PrinterRecord
from bridge.http.readmodel import ReadModel
from bridge.state.store import Store

log = logging.getLogger("printbridge.live")

COMMANDS_QUEUED_MAX = 256  # command rows waiting for one client; more and the client is cut off

_encoder = msgspec.json.Encoder()


class IdOnly(msgspec.Struct):
    id: int


class StreamError(msgspec.Struct):
    detail: str


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """How a stream paces itself. `min_interval_s`: the least time between two events of one printer (a
    printer changing 50 times a second costs a client 1/min_interval_s events a second, the latest always
    delivered); `batch_s`: how long a writer lets changes gather after a write; `heartbeat_s`: the longest
    silence before a comment line; `stall_s`: how long one write may wait for a client that does not read
    before the client is cut off."""

    min_interval_s: float = 0.25
    batch_s: float = 0.01
    heartbeat_s: float = 15.0
    stall_s: float = 10.0


def sse_event(event: str, data: bytes, event_id: int | None = None) -> bytes:
    """One server-sent event. JSON is normally one line; an agent's status passed through verbatim may
    hold line breaks between tokens, and each line then gets its own `data:` field (the client joins them
    with a line feed, which JSON reads as white space)."""
    head = b"event: " + event.encode() + b"\n"
    if event_id is not None:
        head = b"id: " + str(event_id).encode() + b"\n" + head
    if b"\n" in data or b"\r" in data:
        return head + b"".join(b"data: " + line + b"\n" for line in data.splitlines()) + b"\n"
    return head + b"data: " + data + b"\n\n"


HEARTBEAT = b": keepalive\n\n"


class Subscription:
    """One connected client: what changed since its last write, and when each printer was last written."""

    def __init__(self, hub: LiveHub, owner_id: int) -> None:
        self.hub = hub
        self.owner_id = owner_id
        self.changed: dict[int, None] = {}  # printer ids, ordered: changed or removed since the last write
        self.snapshots: dict[int, None] = {}
        self.commands: collections.deque[str] = collections.deque()
        self.known: set[int] = set()  # printers this client has been shown (and not told deleted)
        # printer id -> monotonic time of its last event, oldest first (entries expire after min_interval_s)
        self.last_sent: collections.OrderedDict[int, float] = collections.OrderedDict()
        self.wake = asyncio.Event()
        self.closed: str | None = None  # why the bridge ends this stream
        self.too_slow = False  # ... because the client could not keep up
        self.gone = False  # the client disconnected
        self.writing_since: float | None = None  # monotonic time the pending write started, while it waits

    # -- called by the hub (synchronously, from wherever the change happened) ---------------------------

    def mark(self, printer_id: int) -> None:
        self.changed[printer_id] = None
        self.wake.set()

    def mark_snapshot(self, printer_id: int) -> None:
        self.snapshots[printer_id] = None
        self.wake.set()

    def add_command(self, cmd_id: str) -> None:
        if len(self.commands) >= COMMANDS_QUEUED_MAX:
            self.close("client too slow: command queue full", too_slow=True)
            return
        self.commands.append(cmd_id)
        self.wake.set()

    def close(self, reason: str, *, too_slow: bool = False) -> None:
        if self.closed is None:
            self.closed = reason
            self.too_slow = too_slow
        self.wake.set()

    # -- called by the client's writer ---------------------------------------------------------------

    def _next_id(self) -> int:
        return self.hub.next_id()

    def first_event(self) -> bytes:
        """The caller's printers, as the list endpoint returns them."""
        store = self.hub.store
        self.changed.clear()
        self.snapshots.clear()
        self.known = {rec.id for rec in store.printers.owned(self.owner_id)}
        body = b"".join(self.hub.views.owned_json(self.owner_id))
        return b"retry: 2000\n" + sse_event("printers", body, self._next_id())

    def due(self, now: float) -> tuple[bytes, float | None]:
        """The events due now, encoded, and when the next throttled one will be due (None: nothing waits)."""
        interval = self.hub.timing.min_interval_s
        last_sent = self.last_sent
        while last_sent:
            oldest, sent_at = next(iter(last_sent.items()))
            if now - sent_at < interval:
                break
            del last_sent[oldest]
        parts: list[bytes] = []
        waiting: float | None = None
        if self.changed:
            sent: list[int] = []
            for pid in self.changed:
                previous = last_sent.get(pid)
                if previous is not None:
                    due_at = previous + interval
                    waiting = due_at if waiting is None else min(waiting, due_at)
                    continue
                event = self._render(pid)
                if event is not None:
                    parts.append(event)
                sent.append(pid)
            for pid in sent:
                del self.changed[pid]
                last_sent[pid] = now
        if self.snapshots:
            for pid in self.snapshots:
                if pid in self.known:
                    parts.append(sse_event("snapshot", _encoder.encode(IdOnly(pid)), self._next_id()))
            self.snapshots.clear()
        while self.commands:
            row = self.hub.store.commands.event(self.commands.popleft())
            if row is not None:
                parts.append(sse_event("command", row, self._next_id()))
        return b"".join(parts), waiting

    def _render(self, printer_id: int) -> bytes | None:
        store = self.hub.store
        rec = store.printers.get(printer_id)
        if rec is None or rec.owner_id != self.owner_id or rec.archived_at is not None:
            if printer_id not in self.known:
                return None
            self.known.discard(printer_id)
            return sse_event("deleted", _encoder.encode(IdOnly(printer_id)), self._next_id())
        self.known.add(printer_id)
        return self.hub.printer_event(rec)

    def error_event(self) -> bytes:
        return sse_event("error", _encoder.encode(StreamError(self.closed or "closed")), self._next_id())


class LiveHub:
    """Every connected stream client, by owner. The store's change listener (`Store.listen`)."""

    def __init__(self, store: Store, views: ReadModel, timing: StreamTiming | None = None) -> None:
        self.store = store
        self.views = views  # the printers' JSON, as GET /api/v1/printers/ answers it
        self.timing = timing or StreamTiming()
        self._by_owner: dict[int, set[Subscription]] = {}
        # printer id -> its `printer` event as last rendered, shared by every client until the printer
        # changes: a change is encoded once however many clients watch it (bench/stream.py).
        self._rendered: dict[int, bytes] = {}
        self._event_id = 0  # event ids are unique across the hub; a reconnect gets a fresh list anyway
        self.cut_off = 0  # clients disconnected for being too slow (for tests and logs)

    def next_id(self) -> int:
        self._event_id += 1
        return self._event_id

    def printer_event(self, rec: PrinterRecord) -> bytes:
        event = self._rendered.get(rec.id)
        if event is None:
            event = self._rendered[rec.id] = sse_event("printer", self.views.printer_json(rec), self.next_id())
        return event

    @property
    def clients(self) -> int:
        return sum(len(subs) for subs in self._by_owner.values())

    def subscribe(self, owner_id: int) -> Subscription:
        sub = Subscription(self, owner_id)
        self._by_owner.setdefault(owner_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._by_owner.get(sub.owner_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_owner[sub.owner_id]
                if not self._by_owner:
                    self._rendered.clear()

    def close_all(self, reason: str) -> None:
        for subs in list(self._by_owner.values()):
            for sub in list(subs):
                sub.close(reason)

    # -- the store's change listener --------------------------------------------------------------------

    def printer_changed(self, rec: PrinterRecord) -> None:
        if self._rendered:
            self._rendered.pop(rec.id, None)
        subs = self._by_owner.get(rec.owner_id)
        if subs:
            for sub in subs:
                sub.mark(rec.id)

    def printer_removed(self, rec: PrinterRecord) -> None:
        self.printer_changed(rec)  # rendered as `deleted`: the store no longer has it

    def snapshot_stored(self, rec: PrinterRecord) -> None:
        subs = self._by_owner.get(rec.owner_id)
        if subs:
            for sub in subs:
                sub.mark_snapshot(rec.id)

    def command_answered(self, printer_id: int, cmd_id: str) -> None:
        if not self._by_owner:
            return
        rec = self.store.printers.get(printer_id)
        subs = self._by_owner.get(rec.owner_id) if rec is not None else None
        if subs:
            for sub in subs:
                sub.add_command(cmd_id)
