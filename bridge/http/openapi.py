"""OpenAPI descriptions that Litestar cannot infer: the printer handlers read and validate their JSON body
themselves (so that a 404 is decided before any validation), so the request body is described here."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, Parameter, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from bridge.dialects.registry import DEFAULT_DIALECT, DIALECTS
from bridge.http.schemas import ErrorDoc


def _printer_write_schema(require_name: bool) -> Schema:
    number = Schema(type=OpenAPIType.NUMBER, minimum=0)
    timelapse = Schema(type=OpenAPIType.INTEGER, minimum=-1, maximum=2**53)
    boolean = Schema(type=OpenAPIType.BOOLEAN)
    return Schema(
        type=OpenAPIType.OBJECT,
        title="PrinterWrite",
        description="Writable printer fields; read-only fields are ignored, unknown fields are a 400.",
        properties={
            "name": Schema(type=OpenAPIType.STRING, min_length=1, max_length=256, pattern=r"\S"),  # not blank
            "action_on_failure": Schema(type=OpenAPIType.STRING, enum=["PAUSE", "NONE"]),
            "watching_enabled": boolean,
            "tools_off_on_pause": boolean,
            "bed_off_on_pause": boolean,
            "retract_on_pause": number,
            "lift_z_on_pause": number,
            "detective_sensitivity": Schema(type=OpenAPIType.NUMBER, minimum=0.8, maximum=1.2),
            "min_timelapse_secs_on_finish": timelapse,
            "min_timelapse_secs_on_cancel": timelapse,
            "archived_at": Schema(
                one_of=[Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME), Schema(type=OpenAPIType.NULL)]
            ),
            "dialect": Schema(
                type=OpenAPIType.STRING,
                enum=sorted(DIALECTS),
                description=f"the protocol the printer speaks, chosen at creation (default {DEFAULT_DIALECT}); "
                "a PATCH may repeat it but not change it",
            ),
            **{
                name: Schema(type=OpenAPIType.OBJECT, description=f"the {name} dialect's settings for this printer")
                for name, cls in sorted(DIALECTS.items())
                if cls.takes_config
            },
        },
        required=["name"] if require_name else None,
        additional_properties=False,
    )


def _body(require_name: bool) -> RequestBody:
    return RequestBody(
        content={"application/json": OpenAPIMediaType(schema=_printer_write_schema(require_name))},
        required=require_name,
    )


WITH_ARCHIVED = Parameter(
    name="with_archived",
    param_in="query",
    required=False,
    description="include archived printers: true/false, 1/0, yes/no (any case); default false",
    schema=Schema(
        type=OpenAPIType.STRING,
        pattern="^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]|[Nn][Oo]|1|0)$",
    ),
)


@dataclass
class ReadPrinterOperation(Operation):
    """The two hot read handlers take the raw request (no dependency injection, no typed parameters: they
    are most of a request's cost), so their query parameter is described here."""

    def __post_init__(self) -> None:
        self.parameters = [*(self.parameters or []), WITH_ARCHIVED]


@dataclass
class CreatePrinterOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = _body(require_name=True)


@dataclass
class UpdatePrinterOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = _body(require_name=False)


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorDoc, description=description)


def document_error_responses(app: Litestar) -> None:
    """Declare the error answers every handler can give (docs/rest.md), with their real `{"detail"}` body:
    400 (validation), 401 (credentials), 404 (another user's or unknown printer), 413 (body over 1 MiB),
    503 (the database is not writable). Litestar documents none of them by itself."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if not isinstance(handler, HTTPRouteHandler) or not route.path.startswith("/api/"):
                continue
            methods = handler.http_methods
            errors = {
                400: _error("Invalid parameter or body; `detail` names the field"),
                401: _error("Missing or invalid credentials"),
                503: _error("The database is not writable right now; nothing was changed"),
            }
            if "{printer_id" in route.path:
                errors[404] = _error("No such printer for this user")
            if methods & {"POST", "PATCH", "PUT"}:
                errors[413] = _error("Request body over 1 MiB")
            handler.responses = {**errors, **(handler.responses or {})}
