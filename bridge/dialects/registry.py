"""The table of dialects: a printer's `dialect` name -> the class that speaks it (as Moonraker maps a
power device's type to its class). An unknown name is an error that says which names exist."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from bridge.dialects.bambu import BambuDialect
from bridge.dialects.base import Dialect, DialectContext
from bridge.dialects.moonraker import MoonrakerDialect
from bridge.dialects.printbridge import PrintbridgeDialect

DEFAULT_DIALECT = PrintbridgeDialect.name

DIALECTS: dict[str, type[Dialect]] = {
    PrintbridgeDialect.name: PrintbridgeDialect,
    MoonrakerDialect.name: MoonrakerDialect,
    BambuDialect.name: BambuDialect,
}


class UnknownDialect(ValueError):
    def __init__(self, name: object) -> None:
        super().__init__(f"unknown dialect {name!r}; one of: {', '.join(sorted(DIALECTS))}")
        self.name = name


def dialect_class(name: object) -> type[Dialect]:
    cls = DIALECTS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise UnknownDialect(name)
    return cls


class Dialects:
    """One running instance of every registered dialect."""

    def __init__(self, context: Callable[[str], DialectContext]) -> None:
        self._by_name = {name: cls(context(name)) for name, cls in DIALECTS.items()}

    def __iter__(self) -> Iterator[Dialect]:
        return iter(self._by_name.values())

    def get(self, name: str) -> Dialect:
        dialect = self._by_name.get(name)
        if dialect is None:
            raise UnknownDialect(name)
        return dialect

    def subscriptions(self) -> list[str]:
        return list(dict.fromkeys(s for d in self for s in d.subscriptions()))  # dialects may share a filter

    def accepted(self, subtopic: str) -> bool:
        """Whether any dialect consumes this subtopic (for messages of printers the bridge does not know)."""
        return any(d.accepts(subtopic) for d in self)

    def clears_silently(self, subtopic: str) -> bool:
        return any(subtopic in d.clears_silently for d in self)
