"""The OpenAPI response shapes follow what the API really sends."""

from __future__ import annotations

from bridge.domain.views import Printer
from bridge.http.schemas import PrinterDoc


def test_the_openapi_printer_describes_every_field_the_api_sends() -> None:
    """PrinterDoc documents views.Printer (which carries the agent's JSON as msgspec.Raw, which OpenAPI
    cannot describe); the two must not drift apart."""
    assert PrinterDoc.__struct_fields__ == Printer.__struct_fields__
