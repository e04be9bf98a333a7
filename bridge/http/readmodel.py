"""The REST read model: each printer's JSON encoded once per change, and each owner's list.

Kept current by the printers' change notifications (`bridge.state.printers.Printers.listen`): a changed
printer's JSON is dropped, and so are the lists. Every read until the next change reuses the bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

from bridge.domain.models import PrinterRecord
from bridge.domain.views import encode_printer
from bridge.state.printers import Printers

LIST_CACHE_MAX_BYTES = 2 * 1024 * 1024


class ReadModel:
    def __init__(self, printers: Printers) -> None:
        self.printers = printers
        self._encoded: dict[int, bytes] = {}
        # Each owner's list JSON, (owner_id, with_archived) -> bytes; dropped whenever any printer changes.
        self._lists: dict[tuple[int, bool], bytes] = {}
        printers.listen(self.changed)

    def changed(self, rec: PrinterRecord | None) -> None:
        if rec is None:
            self._encoded.clear()
        else:
            self._encoded.pop(rec.id, None)
        self._lists.clear()

    def printer_json(self, rec: PrinterRecord) -> bytes:
        data = self._encoded.get(rec.id)
        if data is None:
            data = self._encoded[rec.id] = encode_printer(rec)
        return data

    def printers_json(self, records: Iterable[PrinterRecord]) -> bytes:
        # one join, one copy: `b"[" + b",".join(...) + b"]"` copied a 50-printer list three times
        parts = [b"["]
        for r in records:
            parts.append(self.printer_json(r))
            parts.append(b",")
        parts[-1] = b"]" if len(parts) > 1 else b"[]"
        return b"".join(parts)

    def owned_json(self, owner_id: int, with_archived: bool = False) -> list[bytes]:
        """The JSON list of the owner's printers in chunks: one chunk, kept until any printer changes, when
        it is at most LIST_CACHE_MAX_BYTES; else chunks of about that size, built per call (a fleet of
        thousands is neither cached twice nor joined into one buffer of many MiB, which glibc then keeps:
        bench/memory.py)."""
        key = (owner_id, with_archived)
        cached = self._lists.get(key)
        if cached is not None:
            return [cached]
        chunks: list[bytes] = []
        parts: list[bytes] = [b"["]
        size = 0
        for rec in self.printers.owned(owner_id, with_archived):
            data = self.printer_json(rec)
            parts.append(data)
            parts.append(b",")
            size += len(data) + 1
            if size >= LIST_CACHE_MAX_BYTES:
                chunks.append(b"".join(parts))
                parts, size = [], 0
        if parts and parts[-1] == b",":
            parts[-1] = b"]"
        elif chunks:  # the last printer ended the previous chunk: replace its comma
            chunks[-1] = chunks[-1][:-1] + b"]"
        else:
            parts.append(b"]")
        if parts:
            chunks.append(b"".join(parts))
        if len(chunks) == 1:
            self._lists[key] = chunks[0]
        return chunks
