"""Failure detection (docs/detection.md): frame parsing, Obico first-generation prediction maths, decisions.

Pure: no I/O and no clock reads. Times are float epoch seconds passed in by the caller.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

ALPHA = 2 / (12 + 1)
SHORT_WINDOW = 310
LONG_WINDOW = 7200
MIN_FRAMES = 30
COOLDOWN_S = 90.0

THRESHOLD_LOW = 0.38
THRESHOLD_HIGH = 0.78
ROLLING_MEAN_SHORT_MULTIPLE = 3.8
PAUSE_ESCALATING_FACTOR = 1.75
MAX_FRAME_BYTES = 256 * 1024

ACTION_PAUSE = "PAUSE"

REASON_DISABLED = "AI failure detection is disabled"
REASON_NOT_PRINTING = "Printer is not actively printing"
REASON_MUTED = "Alerts are muted for current print"


# ---------------------------------------------------------------------------------------------------------
# §6.1 input
# ---------------------------------------------------------------------------------------------------------


class DetectionFrame(msgspec.Struct):
    """One frame on `B/printers/{id}/detection`: either `detections` (Obico ML API shape) or `p`.

    Unknown fields are tolerated; exactly one of the two documented keys must be present (non-null).
    """

    detections: list[list[Any]] | None = None
    p: float | None = None


_FRAME_DECODER = msgspec.json.Decoder(DetectionFrame)


def _confidence(item: list[Any], index: int) -> float:
    if len(item) < 2:
        raise ValueError(f"detections[{index}] has no confidence")
    value = item[1]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"detections[{index}] confidence is not a number")
    confidence = float(value)
    if not math.isfinite(confidence) or confidence < 0:
        raise ValueError(f"detections[{index}] confidence must be finite and >= 0")
    return confidence


def parse_frame(payload: bytes) -> float:
    """Decode one detection payload and return the frame's `p` (sum of confidences).

    Raises ValueError with a reason for an oversized, malformed or out-of-shape payload.
    """
    if len(payload) > MAX_FRAME_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        frame = _FRAME_DECODER.decode(payload)
    except msgspec.DecodeError as exc:
        raise ValueError(f"invalid detection payload: {exc}") from exc
    if frame.detections is not None and frame.p is not None:
        raise ValueError("payload has both 'detections' and 'p'")
    if frame.detections is not None:
        return sum(_confidence(item, i) for i, item in enumerate(frame.detections))
    if frame.p is not None:
        if not math.isfinite(frame.p) or frame.p < 0:
            raise ValueError("'p' must be finite and >= 0")
        return frame.p
    raise ValueError("payload has neither 'detections' nor 'p'")


# ---------------------------------------------------------------------------------------------------------
# §6.2 prediction
# ---------------------------------------------------------------------------------------------------------


class PredictionState(msgspec.Struct):
    """Per-printer prediction state, persisted as JSON: field names are part of the stored format."""

    print_frames: int = 0
    ewm_mean: float = 0.0
    rolling_mean_short: float = 0.0
    rolling_mean_long: float = 0.0
    lifetime_frames: int = 0


def next_ewm_mean(p: float, ewm_mean: float) -> float:
    return p * ALPHA + ewm_mean * (1 - ALPHA)


def next_rolling_mean(p: float, mean: float, count: int, window: int) -> float:
    """Obico's streaming approximation of a rolling mean.

    `count` is the frame count INCLUDING the frame `p` belongs to: Obico increments `current_frame_num`
    and `lifetime_frame_num` before calling `next_rolling_mean`. So the n-th frame (1-based) divides by
    `n + 1` while n < window and by `window` from then on; the first frame of a fresh mean gives p / 2.
    """
    divisor = window if window <= count else count + 1
    return mean + (p - mean) / divisor


def update_prediction(state: PredictionState, p: float) -> PredictionState:
    """Return a new state with frame `p` counted (Obico's `update_prediction_with_detections`)."""
    print_frames = state.print_frames + 1
    lifetime_frames = state.lifetime_frames + 1
    return PredictionState(
        print_frames=print_frames,
        ewm_mean=next_ewm_mean(p, state.ewm_mean),
        rolling_mean_short=next_rolling_mean(p, state.rolling_mean_short, print_frames, SHORT_WINDOW),
        rolling_mean_long=next_rolling_mean(p, state.rolling_mean_long, lifetime_frames, LONG_WINDOW),
        lifetime_frames=lifetime_frames,
    )


def reset_for_new_print(state: PredictionState) -> PredictionState:
    """Per-print values back to zero; the printer-lifetime long mean and its frame count are kept."""
    return PredictionState(rolling_mean_long=state.rolling_mean_long, lifetime_frames=state.lifetime_frames)


def is_failing(state: PredictionState, sensitivity: float, escalating_factor: float) -> bool:
    """docs/detection.md `failing(f)` with f = `escalating_factor`."""
    if state.print_frames < MIN_FRAMES:
        return False
    adjusted = (state.ewm_mean - state.rolling_mean_long) * sensitivity / escalating_factor
    if adjusted < THRESHOLD_LOW:
        return False
    if adjusted > THRESHOLD_HIGH:
        return True
    return adjusted > (state.rolling_mean_short - state.rolling_mean_long) * ROLLING_MEAN_SHORT_MULTIPLE


def should_pause(state: PredictionState, sensitivity: float) -> bool:
    return is_failing(state, sensitivity, PAUSE_ESCALATING_FACTOR)


def should_alert(state: PredictionState, sensitivity: float) -> bool:
    return not should_pause(state, sensitivity) and is_failing(state, sensitivity, 1.0)


def _scale(value: float, in_lo: float, in_hi: float, out_lo: float, out_hi: float) -> float:
    scaled = out_lo + (value - in_lo) * (out_hi - out_lo) / (in_hi - in_lo)
    return min(max(scaled, out_lo), out_hi)


def normalized_p(state: PredictionState, sensitivity: float) -> float:
    """docs/detection.md failure score in [0, 1]: thirds for below-warning, warning and failure bands."""
    warning = (state.rolling_mean_short - state.rolling_mean_long) * ROLLING_MEAN_SHORT_MULTIPLE
    warning = min(max(warning, THRESHOLD_LOW), THRESHOLD_HIGH)
    failure = PAUSE_ESCALATING_FACTOR * warning
    q = (state.ewm_mean - state.rolling_mean_long) * sensitivity
    if q > failure:
        return _scale(q, failure, 1.5 * failure, 2 / 3, 1.0)
    if q > warning:
        return _scale(q, warning, failure, 1 / 3, 2 / 3)
    return _scale(q, 0.0, warning, 0.0, 1 / 3)


# ---------------------------------------------------------------------------------------------------------
# §6.3 decisions
# ---------------------------------------------------------------------------------------------------------


class AlertState(msgspec.Struct):
    """The alert-related fields of the current Print, as epoch seconds or None."""

    alerted_at: float | None = None
    alert_acknowledged_at: float | None = None
    paused_at: float | None = None
    alert_muted_at: float | None = None


class Decision(msgspec.Struct, frozen=True):
    alert: bool  # set alerted_at = now and publish FAILURE_ALERTED
    pause: bool  # set paused_at = now and send pause with initiator "system"


NO_ACTION = Decision(alert=False, pause=False)


def alert_outstanding(alerted_at: float | None, alert_acknowledged_at: float | None) -> bool:
    """An alert was raised and not acknowledged since (`alerted_at` later than `alert_acknowledged_at`)."""
    if alerted_at is None:
        return False
    return alert_acknowledged_at is None or alerted_at > alert_acknowledged_at


def _within_cooldown(now: float, at: float | None) -> bool:
    return at is not None and now - at < COOLDOWN_S


def alert_suppressed(now: float, alert_state: AlertState) -> bool:
    return _within_cooldown(now, alert_state.alerted_at) or alert_outstanding(
        alert_state.alerted_at, alert_state.alert_acknowledged_at
    )


def decide(
    now: float, alert_state: AlertState, action_on_failure: str, pause_wanted: bool, alert_wanted: bool
) -> Decision:
    """docs/detection.md: what to do for one counted frame, given should_pause / should_alert of its prediction."""
    if pause_wanted:
        if action_on_failure == ACTION_PAUSE and alert_state.paused_at is None:
            if _within_cooldown(now, alert_state.alert_acknowledged_at):
                return NO_ACTION
            return Decision(alert=True, pause=True)
        return Decision(alert=not alert_suppressed(now, alert_state), pause=False)
    if alert_wanted:
        return Decision(alert=not alert_suppressed(now, alert_state), pause=False)
    return NO_ACTION
