"""Failure detection at run time (docs/detection.md): frames in, prediction state kept, alert and pause decided.

The maths and the decision rules are pure (`bridge.domain.detection`); this module keeps the state per
printer (persisted with the printer's status columns, so a restart forgets nothing) and carries out
decisions: an alert is recorded and published, a pause is a real command awaited like any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from bridge.domain import detection as d
from bridge.domain.models import PrinterRecord, should_watch
from bridge.mqtt.outputs import Outputs
from bridge.state.store import Store

log = logging.getLogger("printbridge.detector")

_state_decoder = msgspec.json.Decoder(d.PredictionState)
_encoder = msgspec.json.Encoder()

PauseSender = Callable[[PrinterRecord], Coroutine[Any, Any, object]]


class Detector:
    def __init__(self, store: Store, outputs: Outputs, clock: Callable[[], float]) -> None:
        self.store = store
        self.outputs = outputs
        self.clock = clock
        self._states: dict[int, d.PredictionState] = {}
        self._send_pause: PauseSender | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self.frames = 0

    def bind(self, send_pause: PauseSender) -> None:
        self._send_pause = send_pause

    def state(self, rec: PrinterRecord) -> d.PredictionState:
        state = self._states.get(rec.id)
        if state is None:
            try:
                state = _state_decoder.decode(rec.prediction_raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                state = d.PredictionState()
            self._states[rec.id] = state
        return state

    def _set_state(self, rec: PrinterRecord, state: d.PredictionState) -> None:
        self._states[rec.id] = state
        rec.prediction_raw = _encoder.encode(state)

    def reset_for_new_print(self, rec: PrinterRecord) -> None:
        self._set_state(rec, d.reset_for_new_print(self.state(rec)))
        rec.normalized_p = 0.0

    def handle_frame(self, rec: PrinterRecord, p: float) -> None:
        """One frame's failure score (already parsed by the printer's dialect)."""
        current = rec.current_print
        if current is None or not should_watch(rec):
            return  # frames count only while a print is watched (docs/detection.md)
        state = d.update_prediction(self.state(rec), p)
        self._set_state(rec, state)
        sensitivity = rec.detective_sensitivity
        rec.normalized_p = d.normalized_p(state, sensitivity)
        now = self.clock()
        decision = d.decide(
            now,
            d.AlertState(
                alerted_at=current.alerted_at,
                alert_acknowledged_at=current.alert_acknowledged_at,
                paused_at=current.paused_at,
                alert_muted_at=current.alert_muted_at,
            ),
            rec.action_on_failure,
            d.should_pause(state, sensitivity),
            d.should_alert(state, sensitivity),
        )
        if decision.pause:
            current.paused_at = now
        if decision.alert:
            current.alerted_at = now
        if decision.pause or decision.alert:
            self.store.prints.save(rec, current)
        self.store.printers.touch(rec)
        if decision.alert:
            self.outputs.event(rec, "FAILURE_ALERTED", current)
        self.outputs.printer_changed(rec)
        if decision.pause and self._send_pause is not None:
            task = asyncio.get_running_loop().create_task(self._send_pause(rec))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.frames += 1  # counted last: a frame counted is a frame fully decided

    async def drain(self) -> None:
        """Wait for automatic pauses in flight (tests, shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
