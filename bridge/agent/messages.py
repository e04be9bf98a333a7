"""The agent message an agent publishes on its `status` topic (docs/mqtt.md), as exact outgoing Structs,
and one builder for it: used by the simulator, the tests' agent and the benchmarks' publishers.

The names say they are the agent's side (`AgentStatus`, `StatusMessage`), not the bridge's records or
views of the same things.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

SimulatedState = Literal["Operational", "Printing", "Paused", "Cancelling"]
PrintEventType = Literal["PrintStarted", "PrintPaused", "PrintResumed", "PrintCancelled", "PrintDone"]


class StateFlags(msgspec.Struct, rename="camel"):
    operational: bool
    printing: bool
    paused: bool
    cancelling: bool
    pausing: bool
    error: bool
    ready: bool
    closed_or_error: bool


class StateView(msgspec.Struct):
    text: str
    flags: StateFlags


class Progress(msgspec.Struct, rename="camel"):
    completion: float | None
    print_time: int | None
    print_time_left: int | None


class AgentStatus(msgspec.Struct):
    ts: float = msgspec.field(name="_ts")
    state: StateView
    job: dict[str, Any]
    progress: Progress
    temperatures: dict[str, Any]


class AgentIdentity(msgspec.Struct):
    name: str
    version: str


class AgentSettings(msgspec.Struct):
    agent: AgentIdentity
    webcams: list[dict[str, Any]]


class PrintEvent(msgspec.Struct):
    event_type: str
    data: dict[str, Any]


class StatusMessage(msgspec.Struct, omit_defaults=True):
    current_print_ts: int | None = None
    status: AgentStatus | None = None
    settings: AgentSettings | None = None
    event: PrintEvent | None = None


def build_flags(*, printing: bool, paused: bool, cancelling: bool = False) -> StateFlags:
    return StateFlags(
        operational=True,
        printing=printing,
        paused=paused,
        cancelling=cancelling,
        pausing=False,
        error=False,
        ready=not (printing or paused or cancelling),
        closed_or_error=False,
    )


def temperature(actual: float, target: float | None) -> dict[str, float | None]:
    return {"actual": actual, "target": target}


def build_status_message(
    *,
    ts: float,
    state_text: str,
    flags: StateFlags,
    filename: str,
    completion: float | None,
    print_time: int | None,
    print_time_left: int | None,
    temperatures: dict[str, Any],
    current_print_ts: int | None = None,
    agent: AgentIdentity | None = None,
    event: str | None = None,
) -> StatusMessage:
    """An agent message with a status; `agent` adds the settings part, `event` an event naming the file."""
    return StatusMessage(
        current_print_ts=current_print_ts,
        status=AgentStatus(
            ts=ts,
            state=StateView(text=state_text, flags=flags),
            job={"file": {"name": filename}},
            progress=Progress(completion=completion, print_time=print_time, print_time_left=print_time_left),
            temperatures=temperatures,
        ),
        settings=AgentSettings(agent=agent, webcams=[]) if agent is not None else None,
        event=PrintEvent(event_type=event, data={"name": filename}) if event is not None else None,
    )
