"""Figures the OctoPrint end-to-end tests measure (for the issue's note), printed after the run by
tests/octoprint/conftest.py. Nothing asserts on them: speed is reported, not tested."""

from __future__ import annotations

import statistics

FIGURES: dict[str, list[float]] = {}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_lines() -> list[str]:
    lines = []
    for name, values in sorted(FIGURES.items()):
        if not values:
            continue
        ms = [v * 1000 for v in values]
        lines.append(
            f"{name}: n={len(ms)} p50={statistics.median(ms):.1f} ms p95={_quantile(ms, 0.95):.1f} ms "
            f"max={max(ms):.1f} ms"
        )
    plugin, baseline = FIGURES.get("pause_round_trip_s"), FIGURES.get("baseline_simulator_pause_round_trip_s")
    if plugin and baseline:
        ratio = statistics.median(plugin) / statistics.median(baseline)
        lines.append(f"pause round trip p50, OctoPrint plugin / simulated agent: {ratio:.2f}x")
    return lines
