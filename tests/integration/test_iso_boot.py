"""Build a hybrid live ISO and prove it boots under BIOS and UEFI, both as a CD
and written raw to a disk, by logging in on the serial console and checking
that sudo works.  Slow: four QEMU boots (about 1.5 min each under TCG).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import LiveBuild
from vmdebootstrap.boot.boottest import boot_test
from vmdebootstrap.host.run import SubprocessRunner
from vmdebootstrap.outputs.iso import IsoSpec, build_iso, check_iso

pytestmark = [
    pytest.mark.integration,
    pytest.mark.boot,
    pytest.mark.skipif(os.geteuid() != 0, reason="building and booting the ISO needs root"),
]

USER, PASSWORD = "user", "live"
BOOT_TIMEOUT = 900.0


@pytest.fixture(scope="session")
def squash_dir(live_build: LiveBuild) -> Path:
    return live_build.squash


@pytest.fixture(scope="session")
def live_iso(live_build: LiveBuild) -> Path:
    """vmdebootstrap's own --iso build (debian-cd options, serial console)."""
    return live_build.iso


@pytest.fixture(scope="session")
def iso_on_disk(live_iso: Path) -> Iterator[Path]:
    """The ISO written raw to a disk image that is larger than the ISO."""
    disk = live_iso.with_name("disk.img")
    shutil.copyfile(live_iso, disk)
    with disk.open("r+b") as f:
        f.truncate(disk.stat().st_size + (64 << 20))
    yield disk
    disk.unlink(missing_ok=True)


def _boot(image: Path, firmware: str, media: str) -> None:
    report = boot_test(image, firmware=firmware, arch="amd64", user=USER, password=PASSWORD,
                       command=None, timeout=BOOT_TIMEOUT, media=media)
    login = f"{report.seconds_to_login:.1f} s" if report.seconds_to_login else "never"
    print(f"{media} {firmware} ({report.accel}): login after {login}")
    assert report.ok, f"{report.error}\n--- console ---\n{report.console_tail}"
    assert report.seconds_to_login is not None
    assert report.command_output.splitlines()[0].startswith("12.")  # /etc/debian_version
    assert "sudo-ok" in report.command_output


def test_iso_has_bios_and_efi_boot_entries(live_iso: Path) -> None:
    check_iso(SubprocessRunner(), live_iso, "amd64")


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_iso_boots_as_cd(live_iso: Path, firmware: str) -> None:
    _boot(live_iso, firmware, "iso")


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_iso_boots_written_to_a_disk(iso_on_disk: Path, firmware: str) -> None:
    _boot(iso_on_disk, firmware, "raw")


def test_wrong_password_fails_the_boot_test(live_iso: Path) -> None:
    report = boot_test(live_iso, firmware="bios", arch="amd64", user=USER,
                       password="not-the-password", command=None, timeout=BOOT_TIMEOUT)
    assert not report.ok
    assert report.error and "Login incorrect" in report.error


def test_reproducible_iso(squash_dir: Path, tmp_path: Path) -> None:
    spec = IsoSpec(arch="amd64", distribution="bookworm", serial_console=True,
                   source_date_epoch=1700000000)
    first, second = tmp_path / "a.iso", tmp_path / "b.iso"
    build_iso(SubprocessRunner(), spec, squash_dir, first, tmp_path / "work")
    time.sleep(1.1)  # a different wall clock must not matter
    build_iso(SubprocessRunner(), spec, squash_dir, second, tmp_path / "work")
    with first.open("rb") as a, second.open("rb") as b:
        while True:
            chunk_a, chunk_b = a.read(1 << 20), b.read(1 << 20)
            assert chunk_a == chunk_b, "the two ISOs differ"
            if not chunk_a:
                break
