"""Unit tests of bridge.domain.detection and the watching rules of bridge.domain.models (docs/detection.md),
checked against values worked out by hand."""

from __future__ import annotations

import msgspec
import pytest

from bridge.domain.detection import (
    ALPHA,
    COOLDOWN_S,
    AlertState,
    Decision,
    PredictionState,
    decide,
    is_failing,
    normalized_p,
    parse_frame,
    reset_for_new_print,
    should_alert,
    should_pause,
    update_prediction,
)
from bridge.domain.models import PrinterRecord, PrintRecord, not_watching_reason, should_watch

approx = pytest.approx


def alert_outstanding(state: AlertState) -> bool:
    """The live rule (PrintRecord.alert_outstanding, which decide() uses too) for these alert fields."""
    return PrintRecord(
        id=1,
        printer_id=1,
        ts=1.0,
        started_at=0.0,
        alerted_at=state.alerted_at,
        alert_acknowledged_at=state.alert_acknowledged_at,
    ).alert_outstanding


def printer(*, enabled: bool, printing: bool = True, muted: bool = False, has_print: bool = True) -> PrinterRecord:
    """A printer with detection `enabled` or not, online and printing or not, with a current print that
    is muted or not (or none)."""
    current = PrintRecord(id=1, printer_id=1, ts=1.0, started_at=0.0, alert_muted_at=1.0 if muted else None)
    return PrinterRecord(
        id=1,
        owner_id=1,
        name="P",
        created_at=0.0,
        auth_token="t",
        watching_enabled=enabled,
        status_raw=b"{}" if printing else None,
        flag_printing=printing,
        current_print=current if has_print else None,
    )


# ---------------------------------------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------------------------------------


def test_obico_first_generation_constants() -> None:
    assert approx(2 / 13) == ALPHA
    assert COOLDOWN_S == 90.0


# ---------------------------------------------------------------------------------------------------------
# update_prediction: a fresh printer, frames p = 0.4, 0.2, 1.0, 0.0
# ---------------------------------------------------------------------------------------------------------


def test_four_frames_by_hand() -> None:
    s0 = PredictionState()

    # frame 1, p = 0.4. ewm = 0.4 * 2/13 = 0.8/13.
    # rolling means: count is 1 (this frame included), 310 > 1 so the divisor is count + 1 = 2:
    # 0 + (0.4 - 0) / 2 = 0.2 for both the short and the long mean.
    s1 = update_prediction(s0, 0.4)
    assert (s1.print_frames, s1.lifetime_frames) == (1, 1)
    assert s1.ewm_mean == approx(0.8 / 13)
    assert s1.rolling_mean_short == approx(0.2)
    assert s1.rolling_mean_long == approx(0.2)

    # frame 2, p = 0.2. ewm = 0.2 * 2/13 + (0.8/13) * (11/13) = 5.2/169 + 8.8/169 = 14/169.
    # divisor 3: 0.2 + (0.2 - 0.2) / 3 = 0.2.
    s2 = update_prediction(s1, 0.2)
    assert s2.ewm_mean == approx(14 / 169)
    assert s2.rolling_mean_short == approx(0.2)
    assert s2.rolling_mean_long == approx(0.2)

    # frame 3, p = 1.0. ewm = 2/13 + (14/169) * (11/13) = 338/2197 + 154/2197 = 492/2197.
    # divisor 4: 0.2 + (1.0 - 0.2) / 4 = 0.4.
    s3 = update_prediction(s2, 1.0)
    assert s3.ewm_mean == approx(492 / 2197)
    assert s3.rolling_mean_short == approx(0.4)
    assert s3.rolling_mean_long == approx(0.4)

    # frame 4, p = 0.0. ewm = (492/2197) * (11/13) = 5412/28561. divisor 5: 0.4 + (0 - 0.4) / 5 = 0.32.
    s4 = update_prediction(s3, 0.0)
    assert (s4.print_frames, s4.lifetime_frames) == (4, 4)
    assert s4.ewm_mean == approx(5412 / 28561)
    assert s4.rolling_mean_short == approx(0.32)
    assert s4.rolling_mean_long == approx(0.32)

    # the input states are left untouched
    assert s0 == PredictionState()
    assert s1.print_frames == 1


def test_short_and_long_means_diverge_across_prints() -> None:
    # the long mean has seen 9 frames (mean 0.1); the print has seen none.
    state = PredictionState(rolling_mean_long=0.1, lifetime_frames=9)
    # p = 0.5: short: count 1, divisor 2 -> 0.25. long: count 10, divisor 11 -> 0.1 + 0.4/11.
    after = update_prediction(state, 0.5)
    assert after.rolling_mean_short == approx(0.25)
    assert after.rolling_mean_long == approx(0.1 + 0.4 / 11)
    assert after.ewm_mean == approx(0.5 * 2 / 13)


@pytest.mark.parametrize(
    ("frames_before", "divisor"),
    [(0, 2), (308, 310), (309, 310), (310, 310), (5000, 310)],
)
def test_short_window_divisor(frames_before: int, divisor: int) -> None:
    # mean 0, p 3.1: the new mean is 3.1 / divisor
    state = PredictionState(print_frames=frames_before, lifetime_frames=10**6)
    assert update_prediction(state, 3.1).rolling_mean_short == approx(3.1 / divisor)


@pytest.mark.parametrize(
    ("frames_before", "divisor"),
    [(0, 2), (7198, 7200), (7199, 7200), (7200, 7200), (50_000, 7200)],
)
def test_long_window_divisor(frames_before: int, divisor: int) -> None:
    state = PredictionState(lifetime_frames=frames_before)
    assert update_prediction(state, 72.0).rolling_mean_long == approx(72.0 / divisor)


def test_reset_for_new_print_keeps_lifetime_values() -> None:
    state = PredictionState(
        print_frames=500, ewm_mean=0.9, rolling_mean_short=0.3, rolling_mean_long=0.12, lifetime_frames=9000
    )
    reset = reset_for_new_print(state)
    assert reset == PredictionState(rolling_mean_long=0.12, lifetime_frames=9000)
    assert normalized_p(reset, 1.0) == 0.0
    assert state.print_frames == 500


def test_prediction_state_json_field_names_are_stable() -> None:
    encoded = msgspec.json.encode(PredictionState(3, 0.5, 0.25, 0.125, 7))
    assert encoded == (
        b'{"print_frames":3,"ewm_mean":0.5,"rolling_mean_short":0.25,"rolling_mean_long":0.125,"lifetime_frames":7}'
    )
    assert msgspec.json.decode(encoded, type=PredictionState) == PredictionState(3, 0.5, 0.25, 0.125, 7)


# ---------------------------------------------------------------------------------------------------------
# is_failing / should_pause / should_alert
# ---------------------------------------------------------------------------------------------------------


def _state(ewm: float, short: float = 0.0, long: float = 0.0, frames: int = 100) -> PredictionState:
    return PredictionState(
        print_frames=frames,
        ewm_mean=ewm,
        rolling_mean_short=short,
        rolling_mean_long=long,
        lifetime_frames=frames,
    )


def test_not_failing_before_30_frames() -> None:
    assert is_failing(_state(5.0, frames=29), 1.0, 1.0) is False
    assert is_failing(_state(5.0, frames=30), 1.0, 1.0) is True


def test_below_low_threshold_is_not_failing_even_above_short_mean() -> None:
    # a = 0.37 < 0.38; the middle-band test alone (0.37 > 0 * 3.8) would have said true
    assert is_failing(_state(0.37), 1.0, 1.0) is False


def test_above_high_threshold_is_failing_even_below_short_mean() -> None:
    # a = 0.79 > 0.78; the middle-band test alone (0.79 > 1.0 * 3.8) would have said false
    assert is_failing(_state(0.79, short=1.0), 1.0, 1.0) is True


def test_middle_band_compares_with_short_mean() -> None:
    # a = 0.5; (short - long) * 3.8 = 0.38 -> failing; 0.76 -> not failing
    assert is_failing(_state(0.5, short=0.1), 1.0, 1.0) is True
    assert is_failing(_state(0.5, short=0.2), 1.0, 1.0) is False
    # relative to the long mean: a = (0.6 - 0.1) = 0.5; (0.2 - 0.1) * 3.8 = 0.38 -> failing
    assert is_failing(_state(0.6, short=0.2, long=0.1), 1.0, 1.0) is True
    # (0.3 - 0.1) * 3.8 = 0.76 -> not failing
    assert is_failing(_state(0.6, short=0.3, long=0.1), 1.0, 1.0) is False


def test_sensitivity_and_escalating_factor_scale_a() -> None:
    # a = 0.35 * 1.2 = 0.42 > 0.38 (middle band vs 0) -> failing; 0.35 * 0.8 = 0.28 -> not
    assert is_failing(_state(0.35), 1.2, 1.0) is True
    assert is_failing(_state(0.35), 0.8, 1.0) is False
    # a = 0.7 / 1.75 = 0.4 -> failing; 0.6 / 1.75 = 0.343 -> not
    assert is_failing(_state(0.7), 1.0, 1.75) is True
    assert is_failing(_state(0.6), 1.0, 1.75) is False


def test_should_pause_and_should_alert() -> None:
    # ewm 1.5: failing(1.75) has a = 0.857 > 0.78 -> pause, and then never alert
    assert should_pause(_state(1.5), 1.0) is True
    assert should_alert(_state(1.5), 1.0) is False
    # ewm 1.0, short 0.2: failing(1.75) a = 0.571, middle band vs 0.76 -> no; failing(1) a = 1.0 -> alert
    assert should_pause(_state(1.0, short=0.2), 1.0) is False
    assert should_alert(_state(1.0, short=0.2), 1.0) is True
    # ewm 0.2: neither
    assert should_pause(_state(0.2), 1.0) is False
    assert should_alert(_state(0.2), 1.0) is False
    # too few frames: neither
    assert should_pause(_state(5.0, frames=10), 1.0) is False
    assert should_alert(_state(5.0, frames=10), 1.0) is False


# ---------------------------------------------------------------------------------------------------------
# normalized_p
# ---------------------------------------------------------------------------------------------------------
# With short = long = 0: tw = clamp(0, 0.38, 0.78) = 0.38, tf = 1.75 * 0.38 = 0.665, q = ewm * sensitivity.


@pytest.mark.parametrize(
    ("ewm", "expected"),
    [
        (0.0, 0.0),
        (0.19, 1 / 6),  # low band: 0.19 / 0.38 * 1/3
        (0.38, 1 / 3),  # q == tw is still the low band, at its top
        ((0.38 + 0.665) / 2, 0.5),  # warning band: half way between 1/3 and 2/3
        (0.665 * 1.25, 5 / 6),  # failure band: half way from tf to 1.5 tf
        (0.665 * 1.5, 1.0),
        (2.0, 1.0),  # clamped at 1
    ],
)
def test_normalized_p_bands(ewm: float, expected: float) -> None:
    assert normalized_p(_state(ewm), 1.0) == approx(expected)


def test_normalized_p_clamps_below_zero() -> None:
    # q = (0 - 0.1) = -0.1 -> scale gives a negative number, clamped to 0
    assert normalized_p(_state(0.0, long=0.1), 1.0) == 0.0


def test_normalized_p_threshold_follows_short_mean() -> None:
    # tw = (0.2 - 0.05) * 3.8 = 0.57, tf = 0.9975; q = (0.335 - 0.05) * 1 = 0.285 -> 0.285 / 0.57 / 3 = 1/6
    assert normalized_p(_state(0.335, short=0.2, long=0.05), 1.0) == approx(1 / 6)
    # sensitivity 1.2: q = 0.2375 * 1.2 = 0.285 -> 1/6 again
    assert normalized_p(_state(0.2875, short=0.2, long=0.05), 1.2) == approx(1 / 6)


def test_normalized_p_threshold_clamped_at_0_78() -> None:
    # (0.5 - 0) * 3.8 = 1.9 -> tw = 0.78, tf = 1.365; q = 0.78 + 0.585/2 = 1.0725 -> 0.5
    assert normalized_p(_state(1.0725, short=0.5), 1.0) == approx(0.5)


# ---------------------------------------------------------------------------------------------------------
# decide(): each rule of docs/detection.md
# ---------------------------------------------------------------------------------------------------------

NOW = 1_000_000.0
ALERT = Decision(alert=True, pause=False)
PAUSE = Decision(alert=True, pause=True)
NOTHING = Decision(alert=False, pause=False)


def _acked(alerted_ago: float, acked_ago: float, paused_ago: float | None = None) -> AlertState:
    return AlertState(
        alerted_at=NOW - alerted_ago,
        alert_acknowledged_at=NOW - acked_ago,
        paused_at=None if paused_ago is None else NOW - paused_ago,
    )


def test_nothing_wanted_nothing_done() -> None:
    assert decide(NOW, AlertState(), "PAUSE", False, False) == NOTHING


def test_alert_on_a_fresh_print() -> None:
    assert decide(NOW, AlertState(), "PAUSE", False, True) == ALERT


@pytest.mark.parametrize(("ago", "expected"), [(89.0, NOTHING), (90.0, ALERT), (91.0, ALERT)])
def test_alert_cooldown_after_last_alert(ago: float, expected: Decision) -> None:
    # acknowledged right after alerting, so only the 90 s rule applies
    state = _acked(alerted_ago=ago, acked_ago=ago - 1)
    assert decide(NOW, state, "PAUSE", False, True) == expected


def test_alert_suppressed_while_outstanding() -> None:
    never_acked = AlertState(alerted_at=NOW - 3600)
    acked_before_alert = _acked(alerted_ago=3600, acked_ago=7200)
    acked_at_alert = _acked(alerted_ago=3600, acked_ago=3600)
    assert alert_outstanding(never_acked) and alert_outstanding(acked_before_alert)
    assert not alert_outstanding(acked_at_alert)
    assert not alert_outstanding(AlertState())
    assert decide(NOW, never_acked, "PAUSE", False, True) == NOTHING
    assert decide(NOW, acked_before_alert, "PAUSE", False, True) == NOTHING
    assert decide(NOW, acked_at_alert, "PAUSE", False, True) == ALERT


def test_recent_acknowledgment_alone_does_not_suppress_an_alert() -> None:
    # docs/detection.md: only alerted_at age and outstanding alerts suppress (Obico also counted acknowledgment age)
    state = _acked(alerted_ago=600, acked_ago=10)
    assert decide(NOW, state, "PAUSE", False, True) == ALERT


def test_pause_on_a_fresh_print() -> None:
    assert decide(NOW, AlertState(), "PAUSE", True, False) == PAUSE


def test_pause_alerts_even_within_cooldown_and_while_outstanding() -> None:
    assert decide(NOW, AlertState(alerted_at=NOW - 10), "PAUSE", True, False) == PAUSE


@pytest.mark.parametrize(("acked_ago", "expected"), [(89.0, NOTHING), (90.0, PAUSE), (91.0, PAUSE)])
def test_pause_held_back_shortly_after_acknowledgment(acked_ago: float, expected: Decision) -> None:
    state = _acked(alerted_ago=3600, acked_ago=acked_ago)
    assert decide(NOW, state, "PAUSE", True, False) == expected


@pytest.mark.parametrize(
    ("action", "paused_ago"),
    [("NONE", None), ("PAUSE", 3600.0)],
    ids=["action-none", "already-paused"],
)
def test_pause_wanted_but_not_pausing_alerts_unless_suppressed(action: str, paused_ago: float | None) -> None:
    paused_at = None if paused_ago is None else NOW - paused_ago
    fresh = AlertState(paused_at=paused_at)
    assert decide(NOW, fresh, action, True, False) == ALERT
    assert decide(NOW, _acked(89, 88, paused_ago), action, True, False) == NOTHING
    assert decide(NOW, _acked(91, 90, paused_ago), action, True, False) == ALERT
    outstanding = AlertState(alerted_at=NOW - 3600, paused_at=paused_at)
    assert decide(NOW, outstanding, action, True, False) == NOTHING
    # a recent acknowledgment does not hold back the alert here (that rule is for pausing only)
    assert decide(NOW, _acked(600, 10, paused_ago), action, True, False) == ALERT


# ---------------------------------------------------------------------------------------------------------
# Obico's alert scenarios (backend/api/tests.py AlertTestCase / PauseTestCase), replayed on a simulated clock
# ---------------------------------------------------------------------------------------------------------


class PrintSim:
    """One current print: applies decide() the way the bridge must, and the REST actions of docs/rest.md."""

    def __init__(self, action_on_failure: str = "PAUSE") -> None:
        self.now = NOW
        self.action_on_failure = action_on_failure
        self.watching_enabled = True
        self.state = AlertState()
        self.alert_overwrite: str | None = None
        self.alerts: list[float] = []
        self.pauses: list[float] = []

    def _frame(self, pause_wanted: bool, alert_wanted: bool) -> None:
        if not should_watch(printer(enabled=self.watching_enabled, muted=self.state.alert_muted_at is not None)):
            return  # docs/detection.md: the frame is not counted
        decision = decide(self.now, self.state, self.action_on_failure, pause_wanted, alert_wanted)
        if decision.pause:
            self.state.paused_at = self.now
            self.pauses.append(self.now)
        if decision.alert:
            self.state.alerted_at = self.now
            self.alerts.append(self.now)

    def warning(self) -> None:
        self._frame(pause_wanted=False, alert_wanted=True)

    def error(self) -> None:
        self._frame(pause_wanted=True, alert_wanted=False)

    def acknowledge(self, overwrite: str | None) -> None:
        if self.state.alerted_at is not None:
            self.state.alert_acknowledged_at = self.now
            self.alert_overwrite = overwrite

    def cancel(self) -> None:
        self.acknowledge("FAILED")

    def resume_by_api(self) -> None:
        self.acknowledge("NOT_FAILED")

    def mute(self) -> None:
        self.state.alert_muted_at = self.now

    def at(self, seconds_from_start: float) -> PrintSim:
        assert seconds_from_start >= self.now - NOW, "the simulated clock only moves forward"
        self.now = NOW + seconds_from_start
        return self


HOUR = 3600.0


def test_scenario_warning_once_and_cancel() -> None:
    sim = PrintSim()
    sim.warning()
    assert sim.alerts == [NOW]
    sim.at(5).cancel()
    assert sim.state.alert_acknowledged_at is not None and sim.state.alerted_at is not None
    assert sim.state.alert_acknowledged_at > sim.state.alerted_at
    assert sim.alert_overwrite == "FAILED"
    assert not alert_outstanding(sim.state)


def test_scenario_warning_once_and_acknowledge_not_failed() -> None:
    sim = PrintSim()
    sim.warning()
    sim.at(5).acknowledge("NOT_FAILED")
    assert sim.alerts == [NOW]
    assert sim.alert_overwrite == "NOT_FAILED"
    assert not alert_outstanding(sim.state)


def test_scenario_warning_twice_outstanding_alert_not_repeated() -> None:
    sim = PrintSim()
    sim.warning()
    sim.at(HOUR).warning()
    assert len(sim.alerts) == 1


def test_scenario_error_twice_pauses_and_alerts_once() -> None:
    sim = PrintSim()
    sim.error()
    sim.at(1).error()
    assert sim.pauses == [NOW]
    assert sim.alerts == [NOW]


def test_scenario_warning_twice_acknowledged_in_between() -> None:
    sim = PrintSim()
    sim.warning()
    sim.acknowledge("NOT_FAILED")
    sim.at(HOUR).warning()
    assert len(sim.alerts) == 2


def test_scenario_warning_twice_acknowledged_and_muted_in_between() -> None:
    sim = PrintSim()
    sim.warning()
    sim.at(HOUR / 2).acknowledge("NOT_FAILED")
    sim.mute()
    sim.at(HOUR).warning()
    assert len(sim.alerts) == 1
    assert sim.alert_overwrite == "NOT_FAILED"


def test_scenario_warning_not_alerted_again_shortly_after_acknowledged() -> None:
    sim = PrintSim()
    sim.warning()
    sim.resume_by_api()
    sim.at(60).warning()
    assert len(sim.alerts) == 1


def test_scenario_error_once_then_cancel() -> None:
    sim = PrintSim()
    sim.error()
    assert sim.state.paused_at == NOW and sim.state.alerted_at == NOW
    sim.at(5).cancel()
    assert sim.state.alert_acknowledged_at == NOW + 5
    assert sim.state.paused_at == NOW


def test_scenario_warning_then_error_pauses_within_cooldown() -> None:
    sim = PrintSim()
    sim.warning()
    sim.error()
    assert len(sim.alerts) == 2
    assert sim.pauses == [NOW]


def test_scenario_error_then_warning() -> None:
    sim = PrintSim()
    sim.error()
    sim.warning()
    assert len(sim.alerts) == 1
    assert len(sim.pauses) == 1


def test_scenario_warning_acknowledged_then_error() -> None:
    sim = PrintSim()
    sim.warning()
    sim.acknowledge("NOT_FAILED")
    sim.at(HOUR).error()
    assert sim.alerts == [NOW, NOW + HOUR]
    assert sim.pauses == [NOW + HOUR]
    assert sim.state.alert_muted_at is None


def test_scenario_warning_acknowledged_then_error_shortly_after() -> None:
    sim = PrintSim()
    sim.warning()
    sim.acknowledge("NOT_FAILED")
    sim.at(60).error()
    assert sim.alerts == [NOW]
    assert sim.pauses == []


def test_scenario_error_resumed_then_warning() -> None:
    sim = PrintSim()
    sim.error()
    sim.at(HOUR / 2).resume_by_api()
    sim.at(HOUR).warning()
    assert sim.alerts == [NOW, NOW + HOUR]
    assert sim.state.alert_acknowledged_at is not None and sim.state.alerted_at is not None
    assert sim.state.alert_acknowledged_at < sim.state.alerted_at
    assert sim.state.paused_at == NOW


def test_scenario_error_resumed_by_agent_then_warning_and_error_shortly_after() -> None:
    sim = PrintSim()
    sim.error()
    # the agent reports PrintResumed: not an acknowledgment, nothing in the alert state changes
    sim.at(60).warning()
    sim.error()
    assert sim.alerts == [NOW]
    assert sim.pauses == [NOW]


def test_scenario_error_resumed_and_muted_then_error() -> None:
    sim = PrintSim()
    sim.error()
    sim.at(HOUR / 2).resume_by_api()
    sim.mute()
    sim.at(HOUR).error()
    assert sim.alerts == [NOW]
    assert sim.pauses == [NOW]


def test_scenario_error_not_paused_when_action_is_none() -> None:
    sim = PrintSim(action_on_failure="NONE")
    sim.error()
    assert sim.alerts == [NOW]
    assert sim.pauses == []
    assert sim.state.paused_at is None


def test_scenario_paused_then_resumed_by_agent_not_paused_again() -> None:
    sim = PrintSim()
    sim.error()
    sim.at(HOUR).error()
    assert sim.pauses == [NOW]
    # docs/detection.md: the first alert is still outstanding (a resume in the agent acknowledges nothing)
    assert sim.alerts == [NOW]


def test_scenario_watching_disabled_counts_no_frame() -> None:
    sim = PrintSim()
    sim.watching_enabled = False
    sim.error()
    sim.warning()
    assert sim.alerts == [] and sim.pauses == []


# ---------------------------------------------------------------------------------------------------------
# §6.4
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enabled", "printing", "muted", "expected"),
    [
        (False, False, True, "AI failure detection is disabled"),
        (False, True, False, "AI failure detection is disabled"),
        (True, False, True, "Printer is not actively printing"),
        (True, False, False, "Printer is not actively printing"),
        (True, True, True, "Alerts are muted for current print"),
        (True, True, False, None),
    ],
)
def test_not_watching_reason_first_match_wins(enabled: bool, printing: bool, muted: bool, expected: str | None) -> None:
    assert not_watching_reason(printer(enabled=enabled, printing=printing, muted=muted)) == expected


@pytest.mark.parametrize(
    ("enabled", "has_print", "muted", "expected"),
    [
        (True, True, False, True),
        (False, True, False, False),
        (True, False, False, False),
        (True, True, True, False),
    ],
)
def test_should_watch(enabled: bool, has_print: bool, muted: bool, expected: bool) -> None:
    assert should_watch(printer(enabled=enabled, has_print=has_print, muted=muted)) is expected


# ---------------------------------------------------------------------------------------------------------
# parse_frame
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"detections": [["failure", 0.83, [1, 2, 3, 4]], ["failure", 0.1, [5, 6, 7, 8]]]}', 0.93),
        (b'{"detections": []}', 0.0),
        (b'{"detections": [["failure", 1]]}', 1.0),
        (b'{"detections": [["failure", 0.9, [0, 0, 1, 1]], ["failure", 0.8, [0, 0, 1, 1]]]}', 1.7),
        (b'{"p": 0.42}', 0.42),
        (b'{"p": 0}', 0.0),
        (b'{"p": 1.5, "ts": 1716905000, "model": "x"}', 1.5),
        (b'{"detections": null, "p": 0.3}', 0.3),
    ],
)
def test_parse_frame_valid(payload: bytes, expected: float) -> None:
    assert parse_frame(payload) == approx(expected)


def test_parse_frame_accepts_exactly_256_kib() -> None:
    body = b'{"p": 0.5}'
    payload = body + b" " * (256 * 1024 - len(body))
    assert parse_frame(payload) == 0.5
    with pytest.raises(ValueError, match="exceeds"):
        parse_frame(payload + b" ")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[0.5]",
        b'"p"',
        b"{}",
        b'{"p": null}',
        b'{"p": NaN}',
        b'{"p": 1e999}',
        b'{"p": -0.1}',
        b'{"p": "0.4"}',
        b'{"p": true}',
        b'{"detections": "failure"}',
        b'{"detections": [0.5]}',
        b'{"detections": [["failure"]]}',
        b'{"detections": [["failure", "0.8", [0, 0, 1, 1]]]}',
        b'{"detections": [["failure", -0.1, [0, 0, 1, 1]]]}',
        b'{"detections": [["failure", true, [0, 0, 1, 1]]]}',
        b'{"detections": [["failure", 1e999, [0, 0, 1, 1]]]}',
        b'{"detections": [], "p": 0.1}',
    ],
)
def test_parse_frame_invalid(payload: bytes) -> None:
    with pytest.raises(ValueError) as info:
        parse_frame(payload)
    assert str(info.value)
