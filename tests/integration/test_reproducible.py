"""Two cold builds with the same SOURCE_DATE_EPOCH give the same bits."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import EXAMPLES, vmdebootstrap
from vmdebootstrap.host.digest import file_sha256 as sha256

EPOCH = "1700000000"


def test_two_builds_are_bit_identical(tmp_path: Path) -> None:
    results = []
    for name in ("first", "second"):
        out = tmp_path / name
        out.mkdir()
        run = vmdebootstrap(
            "--no-default-configs", "--config", str(EXAMPLES / "live-console-amd64.conf"),
            "--no-cache",  # two real bootstraps, not one restored twice
            "--iso", str(out / "live.iso"), "--squash", str(out / "live"),
            env={"SOURCE_DATE_EPOCH": EPOCH},
        )
        assert run.returncode == 0, run.stderr
        results.append({
            "squashfs": sha256(out / "live/filesystem.squashfs"),
            "initrd": sha256(out / "live/initrd.img"),
            "iso": sha256(out / "live.iso"),
        })
    assert results[0] == results[1]
