"""The reliability suite's closing line: what it injected, killed and fed the loader."""

from __future__ import annotations

import pytest

from .support import TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    faults = sum(n for k, n in TALLY.items() if "fault" in k)
    parts = ", ".join(f"{k} {n}" for k, n in sorted(TALLY.items()))
    terminalreporter.write_line(f"reliability: {faults} faults injected; {parts}")
