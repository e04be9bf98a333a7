"""What handlers receive by dependency injection, by parameter name (provided in `bridge.app`): `printers`
or `acting` (`bridge.http.services`, bound to the authenticated caller, whose id is `user_id`), and
`check_health`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from litestar.di import NamedDependency

from bridge.domain.agent_config import AgentConfig
from bridge.domain.models import PrinterRecord
from bridge.http.readmodel import ReadModel
from bridge.http.schemas import Health
from bridge.http.services import CallerActions, CallerPrinters
from bridge.printer_service import PrinterService
from bridge.state.users import Users

PrintersDep = NamedDependency[CallerPrinters]
ActingDep = NamedDependency[CallerActions]
HealthDep = NamedDependency[Callable[[], Health]]
UserId = NamedDependency[int]


@dataclass(frozen=True, slots=True)
class HotReads:
    """What the two hottest reads need (the fast path, and the Litestar handlers behind it), which take no
    dependencies: the injection was most of their cost (bench/RESULTS.md)."""

    users: Users
    printers: PrinterService
    views: ReadModel
    agent_configs: Callable[[PrinterRecord], AgentConfig]
