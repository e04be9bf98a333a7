"""The services handlers receive by dependency injection, by parameter name (provided in `bridge.app`):
`printers` (the printer service), `actions`, `views` (the read model), `check_health`, `agent_configs`
(what a printer's agent needs), and `user_id` (the authenticated caller)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from litestar.di import NamedDependency

from bridge.actions import Actions
from bridge.domain.agent_config import AgentConfig
from bridge.domain.models import PrinterRecord
from bridge.http.readmodel import ReadModel
from bridge.http.schemas import Health
from bridge.printer_service import PrinterService
from bridge.state.users import Users

PrintersDep = NamedDependency[PrinterService]
ActionsDep = NamedDependency[Actions]
ViewsDep = NamedDependency[ReadModel]
HealthDep = NamedDependency[Callable[[], Health]]
AgentConfigsDep = NamedDependency[Callable[[PrinterRecord], AgentConfig]]
UserId = NamedDependency[int]


@dataclass(frozen=True, slots=True)
class HotReads:
    """What the two hottest reads need (the fast path, and the Litestar handlers behind it)."""

    users: Users
    printers: PrinterService
    views: ReadModel
