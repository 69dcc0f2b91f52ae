"""Build a hybrid live ISO and prove it boots under BIOS and UEFI, both as a CD
and written raw to a disk, by logging in on the serial console and checking
that sudo works and that --kernel-append reached the kernel; under UEFI
enforcing Secure Boot (Microsoft's keys enrolled) the guest must report
Secure Boot enabled, and an unsigned ISO must be refused by the firmware;
a 32-bit UEFI boots it through bootia32.efi.
The installer entry is started from both menus, until d-i asks its first
question.  A --layered ISO, built twice from the session's cached root with
two hooks, boots with the second hook's change on top of the base squashfs
made once.  Slow: ten QEMU boots (1 to 2.5 min each under TCG), two at a time, and
a refused one (about 15 s).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import (
    EXAMPLES,
    KERNEL_APPEND,
    PRESEEDED,
    LiveBuild,
    extract,
    host_state,
    vmdebootstrap,
)
from vmdebootstrap.boot.boottest import BootReport, boot_test
from vmdebootstrap.boot.console import default_command
from vmdebootstrap.boot.installer import InstallerReport, start_installer
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
COMMAND = f"{default_command(USER)} && grep -o {KERNEL_APPEND} /proc/cmdline"
# (media, firmware, password): the boots the tests below look at
# The ISO written to a USB stick is booted as a stock PC would, Secure Boot on.
BOOTS = [("iso", "bios", PASSWORD), ("iso", "uefi", PASSWORD), ("iso", "uefi-sb", PASSWORD),
         ("iso", "uefi32", PASSWORD), ("raw", "bios", PASSWORD), ("raw", "uefi-sb", PASSWORD),
         ("iso", "bios", "not-the-password"), ("layered", "bios", PASSWORD)]
LAYER_MARK = "second-hook-was-here"


@dataclass(frozen=True)
class Layered:
    iso: Path
    first_log: str
    second_log: str
    squash: Path


@pytest.fixture(scope="session")
def layered(live_build: LiveBuild, tmp_path_factory: pytest.TempPathFactory) -> Layered:
    """Two --layered builds of the README's console config, the second with
    a hook that adds a file.  The first finds the root cached or caches it
    (which depends on what ran before); the second always finds it."""
    base = tmp_path_factory.mktemp("layered")
    hook = base / "hook.sh"
    hook.write_text((EXAMPLES / "live-console.sh").read_text()
                    + f'echo {LAYER_MARK} > "$rootdir/etc/vmdbt-layer"\n')
    hook.chmod(0o755)
    logs = []
    for n, extra in ((1, ()), (2, ("--customize", str(hook)))):
        log = base / f"build{n}.log"
        run = vmdebootstrap("--no-default-configs", "--config",
                            str(EXAMPLES / "live-console-amd64.conf"), "--layered",
                            "--kernel-append", KERNEL_APPEND, "--log", str(log),
                            "--iso", str(base / "layered.iso"), "--squash", str(base / "live"),
                            *extra)
        assert run.returncode == 0, run.stderr
        logs.append(log.read_text())
    return Layered(base / "layered.iso", logs[0], logs[1], base / "live")


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
AllBoots = tuple[Boots, dict[str, InstallerReport]]  # and the installer's, per firmware


@pytest.fixture(scope="session")
def boots(live_iso: Path, iso_on_disk: Path, layered: Layered) -> AllBoots:
    """Every boot of BOOTS and the installer's start, two at a time (TCG
    keeps a core busy per guest)."""
    before = host_state()

    def boot(media: str, firmware: str, password: str) -> BootReport:
        image = {"iso": live_iso, "raw": iso_on_disk, "layered": layered.iso}[media]
        command = COMMAND
        if media == "layered":
            command += " && cat /etc/vmdbt-layer && command -v curl"
        if firmware == "uefi32":
            command += " && echo efi$(cat /sys/firmware/efi/fw_platform_size)"
        report = boot_test(image, firmware=firmware, arch="amd64", user=USER,
                           password=password, command=command, timeout=BOOT_TIMEOUT,
                           media="raw" if media == "raw" else "iso", accel="tcg")
        login = f"{report.seconds_to_login:.1f} s" if report.seconds_to_login else "never"
        print(f"{media} {firmware} ({report.accel}): login after {login}")
        return report

    with ThreadPoolExecutor(max_workers=2) as pool:
        installers = {fw: pool.submit(start_installer, live_iso, arch="amd64", firmware=fw,
                                      expect=[re.compile(PRESEEDED)], timeout=BOOT_TIMEOUT,
                                      accel="tcg") for fw in ("bios", "uefi")}
        futures = {key: pool.submit(boot, *key) for key in BOOTS}
        reports = {key: f.result() for key, f in futures.items()}
        started = {fw: f.result() for fw, f in installers.items()}
    after = host_state()
    left = {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}
    assert not left, f"the boots left these behind on the host: {left}"
    return reports, started


def test_iso_has_bios_and_efi_boot_entries(live_iso: Path) -> None:
    check_iso(SubprocessRunner(), live_iso, "amd64")


def test_iso_and_its_files_carry_checksums(live_iso: Path, tmp_path: Path) -> None:
    """live.iso.sha256 beside it; inside, sha256sum.txt of its files, which
    is what live-boot's verify-checksums checks (and the menus offer it)."""
    subprocess.run(["sha256sum", "--strict", "-c", f"{live_iso.name}.sha256"],
                   cwd=live_iso.parent, check=True, capture_output=True)
    tree = tmp_path / "tree"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(live_iso), "-extract", "/",
                    str(tree)], check=True, capture_output=True)
    listed = [line.split("  ", 1)[1] for line in
              (tree / "sha256sum.txt").read_text().splitlines()]
    assert {"./live/filesystem.squashfs", "./live/vmlinuz", "./EFI/boot/bootx64.efi",
            "./install.amd/initrd.gz"} <= set(listed)
    subprocess.run(["sha256sum", "--strict", "-c", "sha256sum.txt"], cwd=tree, check=True,
                   capture_output=True)
    grub = (tree / "boot/grub/grub.cfg").read_text()
    assert "verify-checksums" in grub
    subprocess.run(["chmod", "-R", "u+w", str(tree)], check=True)  # xorriso keeps r-o modes


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


def test_iso_carries_debians_signed_boot_chain(live_iso: Path, tmp_path: Path) -> None:
    """Secure Boot is on by default: shim, the signed grub and MokManager, in
    /EFI/boot of the ISO and of its El Torito EFI image alike."""
    assert efi_loader_signed(live_iso, "iso", "amd64", SubprocessRunner())
    for name in ("bootx64.efi", "grubx64.efi", "mmx64.efi"):
        loader = extract(live_iso, f"/EFI/boot/{name}", tmp_path / name)
        assert pe_signed(loader[:4096]), f"{name} is not signed"
    extract(live_iso, "/boot/grub/efi.img", tmp_path / "efi.img")
    for name in ("bootx64.efi", "grubx64.efi", "mmx64.efi"):
        from_img = tmp_path / f"img-{name}"
        subprocess.run(["mcopy", "-n", "-i", str(tmp_path / "efi.img"), f"::/EFI/boot/{name}",
                        str(from_img)], check=True)
        assert from_img.read_bytes() == (tmp_path / name).read_bytes()


def _check(report: BootReport) -> None:
    assert report.ok, f"{report.error}\n--- console ---\n{report.console_tail}"
    assert report.seconds_to_login is not None
    lines = report.command_output.splitlines()
    assert lines[0].startswith("12.")  # /etc/debian_version
    assert "sudo-ok" in lines
    assert KERNEL_APPEND in lines  # --kernel-append reached the live kernel
    assert report.secure_boot == ("enabled" if report.firmware == "uefi-sb" else None)


@pytest.mark.parametrize("firmware", ["bios", "uefi", "uefi-sb"])
def test_iso_boots_as_cd(boots: AllBoots, firmware: str) -> None:
    _check(boots[0][("iso", firmware, PASSWORD)])


def test_amd64_iso_boots_on_32_bit_uefi(boots: AllBoots) -> None:
    """bootia32.efi beside bootx64.efi: 32-bit UEFI (OVMF32, as on cheap
    tablets) starts grub-efi-ia32, which boots the 64-bit kernel (EFI mixed
    mode); the guest's firmware is 32-bit."""
    report = boots[0][("iso", "uefi32", PASSWORD)]
    _check(report)
    assert "efi32" in report.command_output.splitlines()


@pytest.mark.parametrize("firmware", ["bios", "uefi-sb"])
def test_iso_boots_written_to_a_disk(boots: AllBoots,
                                     firmware: str) -> None:
    _check(boots[0][("raw", firmware, PASSWORD)])


def test_layered_iso_stacks_the_hooks_layer_on_the_base(layered: Layered,
                                                       boots: AllBoots) -> None:
    """The second build squashed only its layer; live-boot stacked it: the
    second hook's file and the package the hook installed are there."""
    assert "root cache: hit" in layered.second_log
    assert "--layered: squashed the cached root once" in layered.first_log
    assert "--layered: the base squashfs is cached" in layered.second_log
    assert "phase base-squashfs" not in layered.second_log
    live = layered.squash
    assert (live / "filesystem.module").read_text() == \
        "filesystem.squashfs\nfilesystem.layer.squashfs\n"
    assert (live / "filesystem.layer.squashfs").stat().st_size < \
        (live / "filesystem.squashfs").stat().st_size / 4
    listing = subprocess.run(["xorriso", "-indev", str(layered.iso), "-ls", "/live/"],
                             capture_output=True, text=True, check=True).stdout
    for name in ("filesystem.squashfs", "filesystem.layer.squashfs", "filesystem.module"):
        assert f"'{name}'" in listing.splitlines()
    report = boots[0][("layered", "bios", PASSWORD)]
    _check(report)
    lines = report.command_output.splitlines()
    assert LAYER_MARK in lines and "/usr/bin/curl" in lines


def test_wrong_password_fails_the_boot_test(boots: AllBoots) -> None:
    report = boots[0][("iso", "bios", "not-the-password")]
    assert not report.ok
    assert report.error and "Login incorrect" in report.error


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_the_install_entry_starts_the_preseeded_installer(
        boots: AllBoots, firmware: str) -> None:
    """The entry's hotkey in the menu (isolinux, or the signed grub) boots
    d-i, which runs the preseed's early command and asks for the language."""
    report = boots[1][firmware]
    assert report.ok, f"{report.error}\n--- console ---\n{report.console_tail}"
    assert report.seen == [PRESEEDED]
    assert report.question == "[!!] Select a language", report.question
    print(f"installer ({firmware}): {report.question!r} after "
          f"{report.seconds_to_question:.0f} s")


def test_unsigned_iso_is_refused_under_secure_boot(squash_dir: Path, tmp_path: Path) -> None:
    """--no-secure-boot's layout: the firmware refuses our own GRUB, and the
    test says so within seconds instead of waiting for a login prompt."""
    unsigned = tmp_path / "unsigned.iso"
    build_iso(SubprocessRunner(), IsoSpec(arch="amd64", distribution="bookworm",
                                          serial_console=True),
              squash_dir, unsigned, tmp_path / "work")
    assert not efi_loader_signed(unsigned, "iso", "amd64", SubprocessRunner())
    report = boot_test(unsigned, firmware="uefi-sb", arch="amd64", user=USER,
                       password=PASSWORD, command=None, timeout=BOOT_TIMEOUT, media="iso",
                       accel="tcg")
    assert not report.ok and report.seconds_to_login is None
    assert report.error and "the firmware refused the boot loader" in report.error, report.error


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
