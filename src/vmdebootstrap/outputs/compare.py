"""Comparing an output with its rebuild (vmdebootstrap verify): which
files differ, which packages changed, and diffoscope's report."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from vmdebootstrap.host.digest import file_sha256


def compare(original: Path, rebuilt: Path) -> list[str]:
    """What differs between the two outputs; [] when they are identical."""
    if original.is_dir():
        mine = {p.name: file_sha256(p) for p in original.iterdir() if p.is_file()}
        theirs = {p.name: file_sha256(p) for p in rebuilt.iterdir() if p.is_file()}
        return [f"{name}: " + ("only in the rebuild" if name not in mine else
                               "missing from the rebuild" if name not in theirs else
                               "the bytes differ")
                for name in sorted(set(mine) | set(theirs)) if mine.get(name) != theirs.get(name)]
    a, b = file_sha256(original), file_sha256(rebuilt)
    if a == b:
        return []
    lines = [f"{original.name}: sha256 {a[:16]}... ({original.stat().st_size} bytes), "
             f"rebuilt {b[:16]}... ({rebuilt.stat().st_size} bytes)"]
    lines += _iso_members(original, rebuilt)
    return lines


def _iso_members(original: Path, rebuilt: Path) -> list[str]:
    """For ISOs: the files whose sha256 in /sha256sum.txt differ."""
    sums = [_iso_sums(p) for p in (original, rebuilt)]
    if not all(sums):
        return []
    mine, theirs = sums
    return [f"  {name}: differs" for name in sorted(set(mine) | set(theirs))
            if mine.get(name) != theirs.get(name)]


def iso_member(iso: Path, member: str) -> bytes | None:
    """A file of an ISO 9660 image (None: not an ISO, or no such file)."""
    with tempfile.TemporaryDirectory(prefix="vmdebootstrap-verify-") as tmp:
        dest = Path(tmp) / "member"
        run = subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract",
                              member, str(dest)], capture_output=True)
        return dest.read_bytes() if run.returncode == 0 and dest.is_file() else None


def _iso_sums(iso: Path) -> dict[str, str]:
    text = iso_member(iso, "/sha256sum.txt")
    if text is None:
        return {}
    pairs = (line.split("  ", 1) for line in text.decode("utf-8", "replace").splitlines())
    return {name: digest for digest, name in pairs}


def changed_packages(doc: Mapping[str, object], rebuilt: Mapping[str, object]) -> list[str]:
    def versions(d: Mapping[str, object]) -> dict[str, str]:
        pkgs = d.get("packages") or []
        assert isinstance(pkgs, list)
        return {f"{p['name']}:{p['architecture']}": p["version"] for p in pkgs}
    mine, theirs = versions(doc), versions(rebuilt)
    return [f"package {name}: {mine.get(name, '(none)')} -> {theirs.get(name, '(none)')}"
            for name in sorted(set(mine) | set(theirs)) if mine.get(name) != theirs.get(name)]


def diffoscope(original: Path, rebuilt: Path, report: Path) -> Path | None:
    """diffoscope's text report, when diffoscope is installed."""
    if shutil.which("diffoscope") is None:
        return None
    subprocess.run(["diffoscope", "--text", str(report), "--no-progress", str(original),
                    str(rebuilt)], capture_output=True, timeout=3600, check=False)
    return report if report.is_file() else None
