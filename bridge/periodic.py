"""A step the bridge runs every few seconds (flush, stale sweep, reconcile), as a component with start/stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from bridge.state.db import StoreError

log = logging.getLogger("printbridge")

STORE_ERROR_LOG_EVERY_S = 60.0


class Periodic:
    def __init__(self, interval: float, step: Callable[[], Any]) -> None:
        self.interval = interval
        self.step = step
        self.name = getattr(step, "__name__", repr(step))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        failing: str | None = None  # the error repeating now: logged when it starts, then once a minute
        logged_at = 0.0
        while True:
            await asyncio.sleep(self.interval)
            try:
                result = self.step()
                if asyncio.iscoroutine(result):
                    await result
                if failing is not None:
                    log.warning("%s works again (after: %s)", self.name, failing)
                    failing = None
            except StoreError as exc:
                now = time.monotonic()
                if str(exc) != failing or now - logged_at >= STORE_ERROR_LOG_EVERY_S:
                    log.error("%s failed: %s", self.name, exc)
                    failing, logged_at = str(exc), now
            except Exception:
                log.exception("%s failed", self.name)
