"""The normalised inputs every printer dialect decodes its messages into, and ingest applies. Pure.

Whatever protocol a printer speaks (`bridge.dialects`), what reaches the bridge's state is one of these:
a status update (with the print it belongs to and an event), availability, a snapshot, a detection frame,
a command reply, or a bare sign of life. Ingest, actions and commands consume only these.
"""

from __future__ import annotations

from typing import Any

import msgspec


class PayloadError(ValueError):
    """An inbound message that is not what its protocol says; the message says why. It is dropped and
    logged, and nothing is changed."""


# Frozen msgspec Structs rather than frozen dataclasses: one is built for every message a printer sends,
# and a frozen dataclass's __init__ sets each field through object.__setattr__: a StatusUpdate cost
# 0.89 us to build against 0.06 us (timeit), ~5% of a status message's whole handling (~17 us).
class StatusUpdate(msgspec.Struct, frozen=True):
    """A printer's status, already validated.

    `status` is the status object in the shape Obico's agents send (`state.text`, `state.flags`,
    `progress`, `job.file.name`, `temperatures`, `_ts`) and `status_raw` its JSON, stored and served
    verbatim; both None when the update says the printer has no status (it is offline).
    `settings_raw` None leaves the stored settings as they are; otherwise `agent_name`/`agent_version`
    are taken with them. `current_print_ts` opens a print (> 0) or closes the current one (-1).
    `event` is an Obico agent event (`PrintStarted`, `PrintDone`, ...: docs/mqtt.md;
    others are ignored), `filename` the file the event or status names.
    `retained` says the message was a retained one (it then does not prove the printer is up).
    """

    status: dict[str, Any] | None
    status_raw: bytes | None
    settings_raw: bytes | None = None
    agent_name: str | None = None
    agent_version: str | None = None
    current_print_ts: float | None = None
    event: str | None = None
    filename: str | None = None
    retained: bool = False

    @property
    def ts(self) -> float | None:
        """The status's own timestamp (`_ts`), used to refuse out-of-order updates."""
        if self.status is None:
            return None
        ts = self.status.get("_ts")
        return None if ts is None else float(ts)


class Availability(msgspec.Struct, frozen=True):
    online: bool


class Snapshot(msgspec.Struct, frozen=True):
    jpeg: bytes


class DetectionFrame(msgspec.Struct, frozen=True):
    """One frame's failure score (the maximum over its detections), 0-1."""

    p: float


class CommandReply(msgspec.Struct, frozen=True):
    """A printer's answer to the command `cmd_id` (matched by the command layer)."""

    cmd_id: str
    ok: bool
    error: str | None = None


class SignOfLife(msgspec.Struct, frozen=True):
    """The printer answered something that is not a status (e.g. a poll): its status is not stale."""


Input = StatusUpdate | Availability | Snapshot | DetectionFrame | CommandReply | SignOfLife
