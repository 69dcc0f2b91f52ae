"""The repository's own promises: docs in sync with the code, linters clean."""

from __future__ import annotations

import os
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
    # No sudo: a minimal Debian root shell has none.
    assert "\ntools/setup-host && .venv/bin/pytest\n" in text and "sudo tools/" not in text
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


def test_mypy_is_clean(tmp_path: Path) -> None:
    # A checkout someone else owns (an ordinary user running root's clone)
    # has a .mypy_cache mypy cannot write, and it then fails with an
    # internal error: give it one of its own.
    cache = ROOT / ".mypy_cache"
    own = os.access(cache if cache.exists() else ROOT, os.W_OK)
    argv = [_tool("mypy")] if own else [_tool("mypy"), "--cache-dir", str(tmp_path / "mypy")]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_is_too_long() -> None:
    long = {p.name: n for p in (ROOT / "src/vmdebootstrap").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 550}
    assert not long, f"split these modules: {long}"


# The layers a build's data flows through, bottom first.  A module may import
# from its own layer and the ones below it, never from a layer above.
LAYERS = {
    "errors": 0, "host": 1, "intent": 2, "root": 3, "outputs": 4, "boot": 4,
    "plan": 5, "build": 6, "diagnose": 6, "cli": 7, "__main__": 8, "__init__": 0,
    "__version__": 0, "docs": 7, "verify": 7,
}


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[1] if "." in module else module]


def test_imports_point_one_way() -> None:
    """command line -> plan and build -> stages -> intent -> host: nothing upward."""
    import ast

    src = ROOT / "src" / "vmdebootstrap"
    upward = []
    for path in sorted(src.rglob("*.py")):
        module = "vmdebootstrap." + ".".join(path.relative_to(src).with_suffix("").parts)
        mine = _layer(module)
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] if node.module != "vmdebootstrap" else \
                    [f"vmdebootstrap.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("vmdebootstrap.") and _layer(name) > mine:
                    upward.append(f"{module} imports {name}")
    assert upward == []
