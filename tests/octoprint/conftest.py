"""Prints what the OctoPrint end-to-end tests measured (see figures.py)."""

from __future__ import annotations

from typing import Any

from tests.octoprint.figures import summary_lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = summary_lines()
    if lines:
        terminalreporter.section("OctoPrint plugin figures")
        for line in lines:
            terminalreporter.write_line(line)
