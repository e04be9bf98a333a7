"""`GET /api/v1/printers/{id}/` (one printer with full status) against a bare Litestar app returning the
same bytes from memory, on the same server, with wrk (32 connections).

    python -m bench.http_single [--printers 50] [--duration 5] [--rounds 2] [--servers uvicorn,granian]

Target: req/s >= 0.85 x baseline on printbridge's default server (uvicorn).
"""

from __future__ import annotations

import sys

from bench.http_list import measure, parse, report


def main(argv: list[str] | None = None) -> int:
    args = parse(argv, 50)
    return 0 if report("single", args, measure("single", args), check_p99=False) else 1


if __name__ == "__main__":
    sys.exit(main())
