"""Build a hybrid live ISO and prove it boots under BIOS and UEFI, both as a CD
and written raw to a disk, by logging in on the serial console and checking
that sudo works and that --kernel-append reached the kernel.

The installer entry is started too, until d-i asks its first question.
Slow: six QEMU boots (about 1.5 min each under TCG), run two at a time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.conftest import KERNEL_APPEND, PRESEEDED, LiveBuild, host_state
from vmdebootstrap.boot.boottest import BootReport, boot_test
from vmdebootstrap.boot.console import default_command
from vmdebootstrap.boot.installer import InstallerReport, start_installer
from vmdebootstrap.host.run import SubprocessRunner
from vmdebootstrap.outputs.iso import IsoSpec, build_iso, check_iso

pytestmark = [
    pytest.mark.integration,
    pytest.mark.boot,
    pytest.mark.skipif(os.geteuid() != 0, reason="building and booting the ISO needs root"),
]

USER, PASSWORD = "user", "live"
BOOT_TIMEOUT = 900.0
COMMAND = f"{default_command(USER)} && grep -o {KERNEL_APPEND} /proc/cmdline"
# (media, firmware, password): the boots the tests below look at
BOOTS = [("iso", "bios", PASSWORD), ("iso", "uefi", PASSWORD), ("raw", "bios", PASSWORD),
         ("raw", "uefi", PASSWORD), ("iso", "bios", "not-the-password")]


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


Boots = dict[tuple[str, str, str], BootReport]


@pytest.fixture(scope="session")
def boots(live_iso: Path, iso_on_disk: Path) -> tuple[Boots, InstallerReport]:
    """Every boot of BOOTS and the installer's start, two at a time (TCG
    keeps a core busy per guest)."""
    before = host_state()

    def boot(media: str, firmware: str, password: str) -> BootReport:
        image = live_iso if media == "iso" else iso_on_disk
        report = boot_test(image, firmware=firmware, arch="amd64", user=USER,
                           password=password, command=COMMAND, timeout=BOOT_TIMEOUT,
                           media=media, accel="tcg")
        login = f"{report.seconds_to_login:.1f} s" if report.seconds_to_login else "never"
        print(f"{media} {firmware} ({report.accel}): login after {login}")
        return report

    with ThreadPoolExecutor(max_workers=2) as pool:
        installer = pool.submit(start_installer, live_iso, arch="amd64", firmware="uefi",
                                expect=[re.compile(PRESEEDED)], timeout=BOOT_TIMEOUT,
                                accel="tcg")
        futures = {key: pool.submit(boot, *key) for key in BOOTS}
        reports = {key: f.result() for key, f in futures.items()}
        started = installer.result()
    after = host_state()
    left = {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}
    assert not left, f"the boots left these behind on the host: {left}"
    return reports, started


def extract(iso: Path, member: str, dest: Path) -> bytes:
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", member,
                    str(dest)], capture_output=True, check=True)
    return dest.read_bytes()


def test_iso_has_bios_and_efi_boot_entries(live_iso: Path) -> None:
    check_iso(SubprocessRunner(), live_iso, "amd64")


def test_iso_menus_have_the_splash_and_kernel_append(live_build: LiveBuild,
                                                     tmp_path: Path) -> None:
    iso = live_build.iso
    for member in ("/isolinux/splash.png", "/boot/grub/splash.png"):
        assert extract(iso, member, tmp_path / "splash.png") == live_build.splash, member
    isolinux = extract(iso, "/isolinux/isolinux.cfg", tmp_path / "isolinux.cfg").decode()
    assert "UI vesamenu.c32" in isolinux and "MENU BACKGROUND splash.png" in isolinux
    grub = extract(iso, "/boot/grub/grub.cfg", tmp_path / "grub.cfg").decode()
    assert "background_image /boot/grub/splash.png" in grub
    live_lines = [line for line in (isolinux + grub).splitlines()
                  if "boot=live" in line]
    assert live_lines and all(KERNEL_APPEND in line for line in live_lines)


def _check(report: BootReport) -> None:
    assert report.ok, f"{report.error}\n--- console ---\n{report.console_tail}"
    assert report.seconds_to_login is not None
    lines = report.command_output.splitlines()
    assert lines[0].startswith("12.")  # /etc/debian_version
    assert "sudo-ok" in lines
    assert KERNEL_APPEND in lines  # --kernel-append reached the live kernel


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_iso_boots_as_cd(boots: tuple[Boots, InstallerReport], firmware: str) -> None:
    _check(boots[0][("iso", firmware, PASSWORD)])


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_iso_boots_written_to_a_disk(boots: tuple[Boots, InstallerReport],
                                     firmware: str) -> None:
    _check(boots[0][("raw", firmware, PASSWORD)])


def test_wrong_password_fails_the_boot_test(boots: tuple[Boots, InstallerReport]) -> None:
    report = boots[0][("iso", "bios", "not-the-password")]
    assert not report.ok
    assert report.error and "Login incorrect" in report.error


def test_the_install_entry_starts_the_preseeded_installer(
        boots: tuple[Boots, InstallerReport]) -> None:
    """Its hotkey in the UEFI menu boots d-i, which runs the preseed's early
    command and, with language and keyboard answered, asks something else."""
    report = boots[1]
    assert report.ok, f"{report.error}\n--- console ---\n{report.console_tail}"
    assert report.seen == [PRESEEDED]
    assert "language" not in report.question.lower(), report.question
    assert "keyboard" not in report.question.lower(), report.question
    print(f"installer: first question {report.question!r} after "
          f"{report.seconds_to_question:.0f} s")


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
