"""A print's failure-score history as the API serves it: thinned to a chart's worth of points. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

MAX_POINTS = 720  # about one point per chart pixel; a 24-hour print with a frame every 10 s has 8,640


class ScorePoint(msgspec.Struct):
    t: datetime
    p: float


class ScoreHistory(msgspec.Struct, omit_defaults=False):
    """The current print's `normalized_p` after each detection frame that counted, oldest first."""

    print_id: int | None
    points: list[ScorePoint]


def thin(points: list[tuple[float, float]], max_points: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most `max_points` points: consecutive runs merged into their highest score (a spike stays
    visible), the first and last points kept as they are."""
    n = len(points)
    if n <= max_points:
        return points
    inner = points[1:-1]
    buckets = max_points - 2
    out = [points[0]]
    for b in range(buckets):
        run = inner[b * len(inner) // buckets : (b + 1) * len(inner) // buckets]
        if run:
            out.append(max(run, key=lambda point: point[1]))
    out.append(points[-1])
    return out


def build_history(print_id: int | None, points: list[tuple[float, float]]) -> ScoreHistory:
    return ScoreHistory(
        print_id=print_id,
        points=[ScorePoint(t=datetime.fromtimestamp(t, UTC), p=p) for t, p in thin(points)],
    )
