"""The Obico printer API (SPEC 4.3): one controller for printers and their actions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, route
from litestar.params import PathParameter, QueryParameter
from litestar.response import Stream

from bridge.actions import ActionOutcome
from bridge.core import Bridge
from bridge.domain.models import PrinterRecord
from bridge.http.auth import caller
from bridge.http.deps import BridgeDep, UserId
from bridge.http.errors import NotFound
from bridge.http.openapi import CreatePrinterOperation, ReadPrinterOperation, UpdatePrinterOperation
from bridge.http.schemas import ActionResultDoc, CommandDoc, PrinterDoc
from bridge.http.validation import (
    InvalidInput,
    parse_bool_param,
    parse_limit,
    parse_overwrite,
    parse_printer_body,
)

_encoder = msgspec.json.Encoder()
_JSON = "application/json"

# The handlers take these as text and validate them after the 404 check (SPEC 4.1); the OpenAPI document
# says what is accepted.
_BOOL_SCHEMA = {
    "one_of": None,
    "type": "string",
    "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]|[Nn][Oo]|1|0)$",
}
LimitQuery = Annotated[
    str | None,
    QueryParameter(
        name="limit",
        description="1-1000, default 50",
        schema_extra={"one_of": None, "type": "integer", "minimum": 1, "maximum": 1000},
    ),
]
MuteAlertQuery = Annotated[
    str | None, QueryParameter(name="mute_alert", description="default true", schema_extra=_BOOL_SCHEMA)
]
PrinterId = Annotated[int, PathParameter(title="Printer id", description="The printer's id")]


def json_response(content: bytes, status_code: int = 200) -> Any:
    return Response(content=content, media_type=_JSON, status_code=status_code)


async def _iterate(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _visible(bridge: Bridge, user_id: int, printer_id: int, request: Request[Any, Any, Any]) -> PrinterRecord:
    """The caller's printer, or 404 -- decided before any parameter or body is validated."""
    rec = bridge.store.get(printer_id)
    if rec is None or rec.owner_id != user_id:
        raise NotFound()
    if rec.archived_at is not None:
        raw = request.query_params.get("with_archived")
        try:
            with_archived = parse_bool_param("with_archived", raw, False)
        except InvalidInput:
            with_archived = False
        if not with_archived:
            raise NotFound()
    else:
        parse_bool_param("with_archived", request.query_params.get("with_archived"), False)
    return rec


def _action_result(bridge: Bridge, rec: PrinterRecord, outcome: ActionOutcome) -> Any:
    printer = bridge.store.printer_json(rec)
    error = _encoder.encode(outcome.error)
    body = b'{"succeeded":' + (b"true" if outcome.succeeded else b"false") + b',"printer":' + printer
    return json_response(body + b',"error":' + error + b"}")


def _actionable(bridge: Bridge, user_id: int, printer_id: int) -> PrinterRecord:
    rec = bridge.store.get(printer_id)
    if rec is None or rec.owner_id != user_id or rec.archived_at is not None:
        raise NotFound()
    return rec


class PrinterController(Controller):
    path = "/api/v1/printers"
    tags = ["printers"]

    @get("/", summary="List the caller's printers", operation_class=ReadPrinterOperation)
    async def list_printers(self, request: Request[Any, Any, Any]) -> list[PrinterDoc]:
        bridge, user_id = caller(request)
        include = parse_bool_param("with_archived", request.query_params.get("with_archived"), False)
        chunks = bridge.store.owned_json(user_id, include)
        if len(chunks) == 1:
            return json_response(chunks[0])
        stream: Any = Stream(_iterate(chunks), media_type=_JSON)  # the documented type stays list[PrinterDoc]
        return stream

    @post("/", status_code=201, summary="Create a printer", operation_class=CreatePrinterOperation)
    async def create_printer(self, bridge: BridgeDep, user_id: UserId, request: Request[Any, Any, Any]) -> PrinterDoc:
        fields = parse_printer_body(await request.body(), require_name=True)
        rec = await bridge.create_printer(user_id, fields)
        return json_response(bridge.store.printer_json(rec), 201)

    @get("/{printer_id:int}", summary="Get a printer", operation_class=ReadPrinterOperation)
    async def get_printer(self, request: Request[Any, Any, Any]) -> PrinterDoc:
        bridge, user_id = caller(request)
        rec = _visible(bridge, user_id, request.path_params["printer_id"], request)
        return json_response(bridge.store.printer_json(rec))

    @patch("/{printer_id:int}", summary="Update a printer's writable fields", operation_class=UpdatePrinterOperation)
    async def update_printer(
        self,
        bridge: BridgeDep,
        user_id: UserId,
        request: Request[Any, Any, Any],
        printer_id: PrinterId,
    ) -> PrinterDoc:
        rec = _visible(bridge, user_id, printer_id, request)
        changes = parse_printer_body(
            await request.body(), require_name=False, dialect=rec.dialect, dialect_config=rec.dialect_config
        )
        await bridge.update_printer(rec, changes)
        return json_response(bridge.store.printer_json(rec))

    @delete("/{printer_id:int}", status_code=200, summary="Delete a printer", media_type="text/plain")
    async def delete_printer(
        self, bridge: BridgeDep, user_id: UserId, request: Request[Any, Any, Any], printer_id: PrinterId
    ) -> Response[bytes]:
        rec = _visible(bridge, user_id, printer_id, request)
        await bridge.delete_printer(rec)
        return Response(content=b"", status_code=200, media_type="text/plain")

    @post("/{printer_id:int}/rotate_token", status_code=200, summary="Give the printer a new auth token")
    async def rotate_token(
        self, bridge: BridgeDep, user_id: UserId, request: Request[Any, Any, Any], printer_id: PrinterId
    ) -> PrinterDoc:
        rec = _visible(bridge, user_id, printer_id, request)
        await bridge.rotate_printer_token(rec)
        return json_response(bridge.store.printer_json(rec))

    @get("/{printer_id:int}/pic", summary="The latest snapshot", media_type="image/jpeg")
    async def pic(
        self, bridge: BridgeDep, user_id: UserId, request: Request[Any, Any, Any], printer_id: PrinterId
    ) -> Response[bytes]:
        rec = _visible(bridge, user_id, printer_id, request)
        jpeg = bridge.store.snapshot(rec.id)
        if jpeg is None:
            raise NotFound()
        return Response(content=jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @get("/{printer_id:int}/commands", summary="Commands sent to the printer, newest first")
    async def commands(
        self,
        bridge: BridgeDep,
        user_id: UserId,
        request: Request[Any, Any, Any],
        printer_id: PrinterId,
        limit: LimitQuery = None,
    ) -> list[CommandDoc]:
        rec = _visible(bridge, user_id, printer_id, request)
        rows = bridge.store.commands(rec.id, parse_limit(limit))
        return json_response(_encoder.encode(rows))

    # -- actions (SPEC 4.4): POST, and GET for Obico clients ------------------------------------------------

    @route("/{printer_id:int}/cancel_print", http_method=["GET", "POST"], status_code=200, summary="Cancel the print")
    async def cancel_print(self, bridge: BridgeDep, user_id: UserId, printer_id: PrinterId) -> ActionResultDoc:
        rec = _actionable(bridge, user_id, printer_id)
        return _action_result(bridge, rec, await bridge.actions.command(rec, "cancel", "api"))

    @route("/{printer_id:int}/pause_print", http_method=["GET", "POST"], status_code=200, summary="Pause the print")
    async def pause_print(self, bridge: BridgeDep, user_id: UserId, printer_id: PrinterId) -> ActionResultDoc:
        rec = _actionable(bridge, user_id, printer_id)
        return _action_result(bridge, rec, await bridge.actions.command(rec, "pause", "api"))

    @route("/{printer_id:int}/resume_print", http_method=["GET", "POST"], status_code=200, summary="Resume the print")
    async def resume_print(self, bridge: BridgeDep, user_id: UserId, printer_id: PrinterId) -> ActionResultDoc:
        rec = _actionable(bridge, user_id, printer_id)
        return _action_result(bridge, rec, await bridge.actions.command(rec, "resume", "api"))

    @route(
        "/{printer_id:int}/mute_current_print",
        http_method=["GET", "POST"],
        status_code=200,
        summary="Mute (or unmute) failure alerts for the current print",
    )
    async def mute_current_print(
        self,
        bridge: BridgeDep,
        user_id: UserId,
        printer_id: PrinterId,
        mute_alert: MuteAlertQuery = None,
    ) -> ActionResultDoc:
        rec = _actionable(bridge, user_id, printer_id)
        mute = parse_bool_param("mute_alert", mute_alert, True)
        return _action_result(bridge, rec, bridge.actions.mute(rec, mute))

    @route(
        "/{printer_id:int}/acknowledge_alert",
        http_method=["GET", "POST"],
        status_code=200,
        summary="Acknowledge the current print's alert",
    )
    async def acknowledge_alert(
        self,
        bridge: BridgeDep,
        user_id: UserId,
        printer_id: PrinterId,
        alert_overwrite: Annotated[
            str | None,
            QueryParameter(
                name="alert_overwrite",
                description="FAILED or NOT_FAILED",
                schema_extra={"one_of": None, "type": "string", "enum": ["FAILED", "NOT_FAILED"]},
            ),
        ] = None,
    ) -> ActionResultDoc:
        rec = _actionable(bridge, user_id, printer_id)
        overwrite = parse_overwrite(alert_overwrite)
        return _action_result(bridge, rec, bridge.actions.acknowledge(rec, overwrite))
