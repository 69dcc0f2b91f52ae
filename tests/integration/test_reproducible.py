"""Two cold builds with --reproducible give the same bits.

No SOURCE_DATE_EPOCH is set: --reproducible takes the mirror's Release date.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.conftest import EXAMPLES, vmdebootstrap
from vmdebootstrap.host.digest import file_sha256 as sha256

EPOCH_LINE = re.compile(r"SOURCE_DATE_EPOCH=(\d+) \(the mirror's Release date\)")


def build(out: Path) -> tuple[int, dict[str, str]]:
    """A cold build: its epoch (from its log) and the hashes of its outputs."""
    out.mkdir()
    run = vmdebootstrap(
        "--no-default-configs", "--config", str(EXAMPLES / "live-console-amd64.conf"),
        "--no-cache",  # two real bootstraps, not one restored twice
        "--reproducible", "--log", str(out / "build.log"),
        "--iso", str(out / "live.iso"), "--squash", str(out / "live"),
        unset=("SOURCE_DATE_EPOCH",),
    )
    assert run.returncode == 0, run.stderr
    epochs = EPOCH_LINE.findall((out / "build.log").read_text())
    assert len(epochs) == 1, "--reproducible did not take the Release date"
    return int(epochs[0]), {
        "squashfs": sha256(out / "live/filesystem.squashfs"),
        "initrd": sha256(out / "live/initrd.img"),
        "iso": sha256(out / "live.iso"),
    }


def test_two_builds_are_bit_identical(tmp_path: Path) -> None:
    first = build(tmp_path / "first")
    second = build(tmp_path / "second")
    if second[0] != first[0]:
        # The mirror published a new Release between the builds (it does a
        # few times a day): the inputs changed, so compare the next build.
        first, second = second, build(tmp_path / "third")
    assert first[0] == second[0], "the mirror moved twice during the test"
    assert first[1] == second[1]
