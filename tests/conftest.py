"""Time per test module, printed at the end of every run.

Session fixtures (the shared live build) are set up inside the first test
that asks for them, so their time counts against that test's module: the
table says where the wall-clock time of a CI run goes, not what each module
would take alone.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

_SECONDS: defaultdict[str, float] = defaultdict(float)
_TESTS: defaultdict[str, int] = defaultdict(int)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module = report.nodeid.split("::", 1)[0]
    _SECONDS[module] += report.duration
    if report.when == "call" or (report.when == "setup" and report.skipped):
        _TESTS[module] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _SECONDS:
        return
    terminalreporter.section("time per test module")
    terminalreporter.write_line("   m:ss  tests  module")
    for module, seconds in sorted(_SECONDS.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{_clock(seconds)}  {_TESTS[module]:5d} tests  {module}")
    total = sum(_SECONDS.values())
    terminalreporter.write_line(f"{_clock(total)}  {sum(_TESTS.values()):5d} tests  total")


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes:4d}:{rest:02d}"
