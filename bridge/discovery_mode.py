"""Home Assistant discovery published in another mode before (or now switched off): remove the old
messages first, or Home Assistant keeps the old devices or entities beside the new."""

from __future__ import annotations

import logging

from bridge.domain.models import PrinterRecord
from bridge.mqtt.outputs import Outputs
from bridge.state.db import Database, StoreError

log = logging.getLogger("printbridge")

DISCOVERY_MODE_KEY = "ha_discovery_mode"


def switch_discovery_mode(current: str, db: Database, outputs: Outputs, printers: list[PrinterRecord]) -> None:
    """`current`: `device`, `entity` or `off`; the mode last published is remembered in the database."""
    previous = db.meta(DISCOVERY_MODE_KEY)
    if previous == current:
        return
    if previous in ("device", "entity"):
        log.info("Home Assistant discovery: %s -> %s; removing the %s messages", previous, current, previous)
        outputs.remove_discovery([r for r in printers if r.archived_at is None], previous)
    try:
        db.set_meta(DISCOVERY_MODE_KEY, current)
    except StoreError as exc:
        log.error("could not record the discovery mode: %s", exc)
