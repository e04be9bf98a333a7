"""`GET /api/v1/printers/{id}/scores/`: the current print's failure-score history (the dashboard's chart
from the print's start, whenever the page is opened)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get

from bridge.domain.scores import ScoreHistory, build_history
from bridge.http.deps import PrintersDep
from bridge.http.printers import PrinterId


class ScoresController(Controller):
    path = "/api/v1/printers"
    tags = ["printers"]

    @get(
        "/{printer_id:int}/scores",
        summary="The current print's failure-score history",
        description=(
            "`normalized_p` after each detection frame counted for the current print, oldest first, thinned to "
            "at most 720 points (each the highest of its run). `print_id` null and no points when the "
            "printer is not printing."
        ),
    )
    async def scores(
        self, printers: PrintersDep, request: Request[Any, Any, Any], printer_id: PrinterId
    ) -> ScoreHistory:
        rec = printers.visible(printer_id, request)
        p = rec.current_print
        if p is None:
            return build_history(None, [])
        return build_history(p.id, printers.service.scores(p))
