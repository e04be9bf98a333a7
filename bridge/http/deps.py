"""Names of the values that handlers receive by dependency injection (provided in `bridge.app`)."""

from __future__ import annotations

from litestar.di import NamedDependency

from bridge.core import Bridge

BridgeDep = NamedDependency[Bridge]
UserId = NamedDependency[int]
