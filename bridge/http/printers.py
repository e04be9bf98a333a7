"""The Obico printer API (docs/rest.md): one controller for printers and their actions."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, route
from litestar.params import PathParameter, QueryParameter
from litestar.response import Stream

from bridge.actions import ActionOutcome
from bridge.domain.agent_config import AgentConfig
from bridge.domain.models import PrinterRecord, visible_to
from bridge.http.auth import authenticate
from bridge.http.deps import ActionsDep, AgentConfigsDep, HotReads, PrintersDep, UserId, ViewsDep
from bridge.http.errors import NotFound
from bridge.http.openapi import CreatePrinterOperation, ReadPrinterOperation, UpdatePrinterOperation
from bridge.http.readmodel import ReadModel
from bridge.http.schemas import ActionResultDoc, CommandDoc, PrinterDoc
from bridge.http.validation import (
    InvalidInput,
    parse_bool_param,
    parse_limit,
    parse_overwrite,
    parse_printer_body,
)
from bridge.printer_service import PrinterService

_encoder = msgspec.json.Encoder()
_JSON = "application/json"

# The handlers take these as text and validate them after the 404 check (docs/rest.md); the OpenAPI document
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


def _hot(request: Request[Any, Any, Any]) -> tuple[HotReads, int]:
    """The hot read handlers take no dependencies (the injection was most of a request's cost,
    bench/RESULTS.md): their services come from the app's state."""
    hot: HotReads = request.app.state.hot_reads
    return hot, authenticate(hot.users, request)


def _with_archived(request: Request[Any, Any, Any], rec_archived: bool) -> bool:
    """`with_archived`: for an archived printer an invalid value is a 404 (not found) rather than a 400."""
    raw = request.query_params.get("with_archived")
    if not rec_archived:
        return parse_bool_param("with_archived", raw, False)
    try:
        return parse_bool_param("with_archived", raw, False)
    except InvalidInput:
        return False


def _visible(printers: PrinterService, user_id: int, printer_id: int, request: Request[Any, Any, Any]) -> PrinterRecord:
    """The caller's printer, or 404 -- decided before any parameter or body is validated."""
    rec = printers.visible(user_id, printer_id, with_archived=True)
    if rec is None or not visible_to(rec, user_id, _with_archived(request, rec.archived_at is not None)):
        raise NotFound()
    return rec


def _actionable(printers: PrinterService, user_id: int, printer_id: int) -> PrinterRecord:
    rec = printers.visible(user_id, printer_id)
    if rec is None:
        raise NotFound()
    return rec


def _action_result(views: ReadModel, rec: PrinterRecord, outcome: ActionOutcome) -> Any:
    printer = views.printer_json(rec)
    error = _encoder.encode(outcome.error)
    body = b'{"succeeded":' + (b"true" if outcome.succeeded else b"false") + b',"printer":' + printer
    return json_response(body + b',"error":' + error + b"}")


# The actions answer POST, and GET for Obico clients.
_action = functools.partial(route, http_method=["GET", "POST"], status_code=200)


def _command_action(cmd: str, summary: str) -> Any:
    """pause_print, resume_print, cancel_print: the same handler for three commands."""

    @_action(f"/{{printer_id:int}}/{cmd}_print", summary=summary)
    async def handler(
        self: Controller,
        printers: PrintersDep,
        actions: ActionsDep,
        views: ViewsDep,
        user_id: UserId,
        printer_id: PrinterId,
    ) -> ActionResultDoc:
        rec = _actionable(printers, user_id, printer_id)
        return _action_result(views, rec, await actions.command(rec, cmd, "api"))

    handler.fn.__name__ = f"{cmd}_print"
    return handler


class PrinterController(Controller):
    path = "/api/v1/printers"
    tags = ["printers"]

    @get("/", summary="List the caller's printers", operation_class=ReadPrinterOperation)
    async def list_printers(self, request: Request[Any, Any, Any]) -> list[PrinterDoc]:
        hot, user_id = _hot(request)
        include = parse_bool_param("with_archived", request.query_params.get("with_archived"), False)
        chunks = hot.views.owned_json(user_id, include)
        if len(chunks) == 1:
            return json_response(chunks[0])
        stream: Any = Stream(_iterate(chunks), media_type=_JSON)  # the documented type stays list[PrinterDoc]
        return stream

    @post("/", status_code=201, summary="Create a printer", operation_class=CreatePrinterOperation)
    async def create_printer(
        self, printers: PrintersDep, views: ViewsDep, user_id: UserId, request: Request[Any, Any, Any]
    ) -> PrinterDoc:
        fields = parse_printer_body(await request.body(), require_name=True)
        rec = await printers.create(user_id, fields)
        return json_response(views.printer_json(rec), 201)

    @get("/{printer_id:int}", summary="Get a printer", operation_class=ReadPrinterOperation)
    async def get_printer(self, request: Request[Any, Any, Any]) -> PrinterDoc:
        hot, user_id = _hot(request)
        rec = _visible(hot.printers, user_id, request.path_params["printer_id"], request)
        return json_response(hot.views.printer_json(rec))

    @patch("/{printer_id:int}", summary="Update a printer's writable fields", operation_class=UpdatePrinterOperation)
    async def update_printer(
        self,
        printers: PrintersDep,
        views: ViewsDep,
        user_id: UserId,
        request: Request[Any, Any, Any],
        printer_id: PrinterId,
    ) -> PrinterDoc:
        rec = _visible(printers, user_id, printer_id, request)
        changes = parse_printer_body(
            await request.body(), require_name=False, dialect=rec.dialect, dialect_config=rec.dialect_config
        )
        await printers.update(rec, changes)
        return json_response(views.printer_json(rec))

    @delete("/{printer_id:int}", status_code=200, summary="Delete a printer", media_type="text/plain")
    async def delete_printer(
        self, printers: PrintersDep, user_id: UserId, request: Request[Any, Any, Any], printer_id: PrinterId
    ) -> Response[bytes]:
        rec = _visible(printers, user_id, printer_id, request)
        await printers.delete(rec)
        return Response(content=b"", status_code=200, media_type="text/plain")

    @post("/{printer_id:int}/rotate_token", status_code=200, summary="Give the printer a new auth token")
    async def rotate_token(
        self,
        printers: PrintersDep,
        views: ViewsDep,
        user_id: UserId,
        request: Request[Any, Any, Any],
        printer_id: PrinterId,
    ) -> PrinterDoc:
        rec = _visible(printers, user_id, printer_id, request)
        await printers.rotate_token(rec)
        return json_response(views.printer_json(rec))

    @get("/{printer_id:int}/agent_config", summary="What the printer's agent needs to connect")
    async def agent_config(
        self,
        printers: PrintersDep,
        agent_configs: AgentConfigsDep,
        user_id: UserId,
        request: Request[Any, Any, Any],
        printer_id: PrinterId,
    ) -> AgentConfig:
        rec = _visible(printers, user_id, printer_id, request)
        return json_response(_encoder.encode(agent_configs(rec)))

    @get("/{printer_id:int}/pic", summary="The latest snapshot", media_type="image/jpeg")
    async def pic(
        self, printers: PrintersDep, user_id: UserId, request: Request[Any, Any, Any], printer_id: PrinterId
    ) -> Response[bytes]:
        rec = _visible(printers, user_id, printer_id, request)
        jpeg = printers.snapshot(rec)
        if jpeg is None:
            raise NotFound()
        return Response(content=jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @get("/{printer_id:int}/commands", summary="Commands sent to the printer, newest first")
    async def commands(
        self,
        printers: PrintersDep,
        user_id: UserId,
        request: Request[Any, Any, Any],
        printer_id: PrinterId,
        limit: LimitQuery = None,
    ) -> list[CommandDoc]:
        rec = _visible(printers, user_id, printer_id, request)
        rows = printers.commands(rec, parse_limit(limit))
        return json_response(_encoder.encode(rows))

    # -- actions (docs/rest.md): POST, and GET for Obico clients ------------------------------------------------

    cancel_print = _command_action("cancel", "Cancel the print")
    pause_print = _command_action("pause", "Pause the print")
    resume_print = _command_action("resume", "Resume the print")

    @_action("/{printer_id:int}/mute_current_print", summary="Mute (or unmute) failure alerts for the current print")
    async def mute_current_print(
        self, printers: PrintersDep, actions: ActionsDep, views: ViewsDep, user_id: UserId, printer_id: PrinterId,
        mute_alert: MuteAlertQuery = None,
    ) -> ActionResultDoc:  # fmt: skip
        rec = _actionable(printers, user_id, printer_id)
        mute = parse_bool_param("mute_alert", mute_alert, True)
        return _action_result(views, rec, actions.mute(rec, mute))

    @_action("/{printer_id:int}/acknowledge_alert", summary="Acknowledge the current print's alert")
    async def acknowledge_alert(
        self,
        printers: PrintersDep,
        actions: ActionsDep,
        views: ViewsDep,
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
        rec = _actionable(printers, user_id, printer_id)
        overwrite = parse_overwrite(alert_overwrite)
        return _action_result(views, rec, actions.acknowledge(rec, overwrite))
