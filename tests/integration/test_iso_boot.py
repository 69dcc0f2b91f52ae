"""Build a hybrid live ISO and prove it boots under BIOS and UEFI, both as a CD
and written raw to a disk, by logging in on the serial console and checking
that sudo works; and under UEFI enforcing Secure Boot (Microsoft's keys
enrolled), where the guest must report Secure Boot enabled and an unsigned
ISO must be refused by the firmware.  Slow: five QEMU boots (about 1.5 to
2.5 min each under TCG) and a refused one (about 15 s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import LiveBuild
from vmdebootstrap.boot.boottest import BootReport, boot_test
from vmdebootstrap.boot.media import efi_loader_signed, pe_signed
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


def _boot(image: Path, firmware: str, media: str) -> BootReport:
    report = boot_test(image, firmware=firmware, arch="amd64", user=USER, password=PASSWORD,
                       command=None, timeout=BOOT_TIMEOUT, media=media)
    login = f"{report.seconds_to_login:.1f} s" if report.seconds_to_login else "never"
    print(f"{media} {firmware} ({report.accel}): login after {login}")
    assert report.ok, f"{report.error}\n--- console ---\n{report.console_tail}"
    assert report.seconds_to_login is not None
    assert report.command_output.splitlines()[0].startswith("12.")  # /etc/debian_version
    assert "sudo-ok" in report.command_output
    return report


def test_iso_has_bios_and_efi_boot_entries(live_iso: Path) -> None:
    check_iso(SubprocessRunner(), live_iso, "amd64")


def _extract(iso: Path, member: str, dest: Path) -> Path:
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", member,
                    str(dest)], check=True, capture_output=True)
    return dest


def test_iso_carries_debians_signed_boot_chain(live_iso: Path, tmp_path: Path) -> None:
    """Secure Boot is on by default: shim, the signed grub and MokManager, in
    /EFI/boot of the ISO and of its El Torito EFI image alike."""
    assert efi_loader_signed(live_iso, "iso", "amd64", SubprocessRunner())
    for name in ("bootx64.efi", "grubx64.efi", "mmx64.efi"):
        loader = _extract(live_iso, f"/EFI/boot/{name}", tmp_path / name)
        assert pe_signed(loader.read_bytes()[:4096]), f"{name} is not signed"
    efi_img = _extract(live_iso, "/boot/grub/efi.img", tmp_path / "efi.img")
    for name in ("bootx64.efi", "grubx64.efi", "mmx64.efi"):
        from_img = tmp_path / f"img-{name}"
        subprocess.run(["mcopy", "-n", "-i", str(efi_img), f"::/EFI/boot/{name}",
                        str(from_img)], check=True)
        assert from_img.read_bytes() == (tmp_path / name).read_bytes()


@pytest.mark.parametrize("firmware", ["bios", "uefi", "uefi-sb"])
def test_iso_boots_as_cd(live_iso: Path, firmware: str) -> None:
    report = _boot(live_iso, firmware, "iso")
    assert report.secure_boot == ("enabled" if firmware == "uefi-sb" else None)


def test_unsigned_iso_is_refused_under_secure_boot(squash_dir: Path, tmp_path: Path) -> None:
    """--no-secure-boot's layout: the firmware refuses our own GRUB, and the
    test says so within seconds instead of waiting for a login prompt."""
    unsigned = tmp_path / "unsigned.iso"
    build_iso(SubprocessRunner(), IsoSpec(arch="amd64", distribution="bookworm",
                                          serial_console=True),
              squash_dir, unsigned, tmp_path / "work")
    assert not efi_loader_signed(unsigned, "iso", "amd64", SubprocessRunner())
    report = boot_test(unsigned, firmware="uefi-sb", arch="amd64", user=USER,
                       password=PASSWORD, command=None, timeout=BOOT_TIMEOUT, media="iso")
    assert not report.ok and report.seconds_to_login is None
    assert report.error and "the firmware refused the boot loader" in report.error, report.error


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_iso_boots_written_to_a_disk(iso_on_disk: Path, firmware: str) -> None:
    _boot(iso_on_disk, firmware, "raw")


def test_wrong_password_fails_the_boot_test(live_iso: Path) -> None:
    report = boot_test(live_iso, firmware="bios", arch="amd64", user=USER,
                       password="not-the-password", command=None, timeout=BOOT_TIMEOUT)
    assert not report.ok
    assert report.error and "Login incorrect" in report.error


@pytest.mark.parametrize("secure_boot", [False, True])
def test_reproducible_iso(squash_dir: Path, tmp_path: Path, mirror: str,
                          secure_boot: bool) -> None:
    spec = IsoSpec(arch="amd64", distribution="bookworm", serial_console=True,
                   source_date_epoch=1700000000, secure_boot=secure_boot, mirror=mirror)
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
