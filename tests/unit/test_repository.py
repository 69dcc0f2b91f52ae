"""The repository's own promises: docs in sync with the code, linters clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vmdebootstrap.intent.reference import BEGIN, END, option_reference

ROOT = Path(__file__).resolve().parents[2]


def test_readme_option_reference_is_current() -> None:
    text = (ROOT / "README.md").read_text()
    block = text[text.index(BEGIN): text.index(END) + len(END)]
    assert block == option_reference(), (
        "README.md's option reference is stale: regenerate it with "
        "python3 -m vmdebootstrap.intent.reference")


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    text = (ROOT / "README.md").read_text()
    assert "sudo tools/setup-host && sudo .venv/bin/pytest" in text
    assert "--config examples/live-console-amd64.conf --iso live.iso --boot-test" in text
    ci = (ROOT / ".ci/run").read_text()
    assert "tools/setup-host" in ci and ".venv/bin/pytest" in ci


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed")
    return found


def test_ruff_is_clean() -> None:
    result = subprocess.run([_tool("ruff"), "check", "src", "tests"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_is_too_long() -> None:
    long = {p.name: n for p in (ROOT / "src/vmdebootstrap").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 550}
    assert not long, f"split these modules: {long}"
