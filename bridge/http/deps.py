"""The services handlers receive by dependency injection, by parameter name (provided in `bridge.app`):
`printers` (the printer service), `actions`, `views` (the read model), `health`, and `user_id` (the
authenticated caller)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from litestar.di import NamedDependency

from bridge.actions import Actions
from bridge.http.readmodel import ReadModel
from bridge.http.schemas import Health
from bridge.printer_service import PrinterService
from bridge.state.users import Users

PrintersDep = NamedDependency[PrinterService]
ActionsDep = NamedDependency[Actions]
ViewsDep = NamedDependency[ReadModel]
HealthDep = NamedDependency[Callable[[], Health]]
UserId = NamedDependency[int]


@dataclass(frozen=True, slots=True)
class HotReads:
    """What the two hottest reads need (the fast path, and the Litestar handlers behind it)."""

    users: Users
    printers: PrinterService
    views: ReadModel
