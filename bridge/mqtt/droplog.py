"""Logging of dropped inbound messages, rate-limited so that a flood of garbage cannot fill the disk."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

log = logging.getLogger("printbridge.ingest")


class DropLog:
    """Counts every dropped message; logs at most `burst` lines per `window_s`, then a summary line."""

    def __init__(self, burst: int = 20, window_s: float = 10.0, monotonic: Callable[[], float] = time.monotonic):
        self.burst = burst
        self.window_s = window_s
        self.monotonic = monotonic
        self.total = 0
        self.by_reason: Counter[str] = Counter()
        self._window_start = monotonic()
        self._logged = 0
        self._suppressed = 0

    def drop(self, topic: str, reason: str) -> None:
        now = self.monotonic()
        if now - self._window_start >= self.window_s:
            if self._suppressed:
                log.warning("%d more inbound messages dropped in the last %.0f s", self._suppressed, self.window_s)
            self._window_start = now
            self._logged = 0
            self._suppressed = 0
        if self._logged < self.burst:
            self._logged += 1
            log.warning("dropped message on %s: %s", topic[:200], reason[:300])
        else:
            self._suppressed += 1
        # Counted last: whoever sees the count move (a test, a health probe) sees the log line too.
        self.by_reason[reason.split(":", 1)[0]] += 1
        self.total += 1
