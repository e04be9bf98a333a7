"""The services handlers receive by dependency injection, bound to the authenticated caller.

Each handler takes one of them: `printers` (the printer service and the read model, for the caller's own
printers) or `acting` (the actions on one of them), each provided from `user_id`. Two measured reasons
(bench/actions.py, sequential p50 of a pause): Litestar resolves independent dependencies side by side
in an anyio task group, and four of them (printers, actions, read model, user id) took 0.89 ms against
0.57-0.64 ms before; every further dependency in a chain still cost some 0.08 ms. So: one service, one
dependency, after the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request

from bridge.actions import ActionOutcome, Actions
from bridge.domain.agent_config import AgentConfig
from bridge.domain.models import PrinterRecord, visible_to
from bridge.http.errors import NotFound
from bridge.http.readmodel import ReadModel
from bridge.http.validation import InvalidInput, parse_bool_param
from bridge.printer_service import PrinterService


def with_archived(request: Request[Any, Any, Any], archived: bool) -> bool:
    """`with_archived`; for an archived printer an invalid value reads as false (so: not found, 404)."""
    raw = request.query_params.get("with_archived")
    if not archived:
        return parse_bool_param("with_archived", raw, False)
    try:
        return parse_bool_param("with_archived", raw, False)
    except InvalidInput:
        return False


@dataclass(frozen=True, slots=True)
class CallerPrinters:
    """The caller's printers: the printer service, the read model and what a printer's agent needs."""

    user_id: int
    service: PrinterService
    views: ReadModel
    agent_configs: Callable[[PrinterRecord], AgentConfig]

    def visible(self, printer_id: int, request: Request[Any, Any, Any]) -> PrinterRecord:
        """The caller's printer, or 404 -- decided before any parameter or body is validated."""
        rec = self.service.visible(self.user_id, printer_id, with_archived=True)
        if rec is None or not visible_to(rec, self.user_id, with_archived(request, rec.archived_at is not None)):
            raise NotFound()
        return rec

    def actionable(self, printer_id: int) -> PrinterRecord:
        """The caller's printer if it is not archived, or 404."""
        rec = self.service.visible(self.user_id, printer_id)
        if rec is None:
            raise NotFound()
        return rec

    def json(self, rec: PrinterRecord) -> bytes:
        return self.views.printer_json(rec)


@dataclass(frozen=True, slots=True)
class CallerActions:
    """The five actions on the caller's printers, answered as an ActionResult."""

    printers: CallerPrinters
    actions: Actions

    def result(self, rec: PrinterRecord, outcome: ActionOutcome) -> bytes:
        printer = self.printers.json(rec)
        error = msgspec.json.encode(outcome.error)
        body = b'{"succeeded":' + (b"true" if outcome.succeeded else b"false") + b',"printer":' + printer
        return body + b',"error":' + error + b"}"
