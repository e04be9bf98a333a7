"""How often the bridge may ask a printer for its full state. Pure: the clock is passed in.

After connecting, the bridge asks once with `pushing.pushall`, because P1 and A1 printers otherwise send
only what changes. OpenBambuAPI warns against asking more often than every 5 minutes (the P1P lags), so a
printer that drops and comes back within 5 minutes is not asked again: its merged state survives the
reconnect. The record is per printer and outlives its connections.
"""

from __future__ import annotations

from collections.abc import Callable

MIN_INTERVAL_S = 300.0


class PushallLimiter:
    def __init__(self, clock: Callable[[], float], min_interval_s: float = MIN_INTERVAL_S) -> None:
        self.clock = clock
        self.min_interval_s = min_interval_s
        self._last: dict[str, float] = {}

    def may_ask(self, key: str) -> bool:
        """True (and the request counted as made now) when `key`'s printer may be asked now."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.min_interval_s:
            return False
        self._last[key] = now
        return True

    def forget(self, key: str) -> None:
        """A printer removed, or replaced by another at the same key: its next connection may ask at once."""
        self._last.pop(key, None)
