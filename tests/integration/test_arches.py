"""arm64 and i386 live ISOs built on this amd64 host and booted in QEMU.

arm64 is a foreign build through qemu-user binfmt, from the shipped
examples/live-arm64.conf: its UEFI boot is Debian's signed shim and grub
from the target's own packages (none exist for the host), it boots under
AAVMF enforcing Secure Boot with Microsoft's keys to a sudo shell on
ttyAMA0, and its initramfs, made with the host's file tools standing in
(vmdebootstrap.host.native), holds only the target's programs.  A hook
change rebuilds it from the cached root.  An arm64 --image --use-uefi
(Debian's shim and grub installed in it) boots under Secure Boot too.
i386 builds natively: isolinux for BIOS and grub-efi-ia32 for 32-bit UEFI,
both booted.  Slow: three cold builds (about 2.5, 3 and 1 min) and four
boots (about 1 min each under TCG), two at a time.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import (
    EXAMPLES,
    Run,
    elf_machine,
    extract,
    host_state,
    unsquash_cat,
    vmdebootstrap,
)
from vmdebootstrap.boot.boottest import BootReport, boot_test
from vmdebootstrap.boot.console import default_command
from vmdebootstrap.boot.media import efi_loader_signed, pe_signed
from vmdebootstrap.host.native import INTERP, carries_host_tools, initramfs_payload
from vmdebootstrap.host.run import SubprocessRunner
from vmdebootstrap.outputs.iso import check_iso

pytestmark = [
    pytest.mark.integration,
    pytest.mark.boot,
    pytest.mark.skipif(os.geteuid() != 0, reason="building and booting ISOs needs root"),
]

USER, PASSWORD = "user", "live"
BOOT_TIMEOUT = 900.0
# The machine, and the firmware's word size (efi32 or efi64; efi under BIOS).
COMMAND = (f"{default_command(USER)} && uname -m && "
           "echo efi$(cat /sys/firmware/efi/fw_platform_size 2>/dev/null)")
EM_AARCH64, EM_386 = 183, 3
HOOK_MARK = "arm64-second-hook"


@dataclass(frozen=True)
class Built:
    iso: Path
    squash: Path
    log: str
    run: Run


def build(base: Path, name: str, *args: str) -> Built:
    iso, squash, log = base / f"{name}.iso", base / name, base / f"{name}.log"
    run = vmdebootstrap("--no-default-configs", *args, "--log", str(log),
                        "--iso", str(iso), "--squash", str(squash))
    assert run.returncode == 0, run.stderr
    return Built(iso, squash, log.read_text(), run)


@pytest.fixture(scope="session")
def arm64(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("arm64"), "live-arm64",
                 "--config", str(EXAMPLES / "live-arm64.conf"))


@pytest.fixture(scope="session")
def arm64_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("arm64-image")
    image = base / "arm64.img"
    run = vmdebootstrap("--no-default-configs", "--arch", "arm64", "--distribution", "bookworm",
                        "--debootstrapopts", "variant=minbase", "--image", str(image),
                        "--size", "2G", "--use-uefi", "--user", f"{USER}/{PASSWORD}", "--sudo",
                        "--serial-console", "--log", str(base / "build.log"))
    assert run.returncode == 0, run.stderr
    return image


@pytest.fixture(scope="session")
def i386(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("i386"), "live-i386",
                 "--config", str(EXAMPLES / "live-console-amd64.conf"), "--arch", "i386")


Boots = dict[tuple[str, str], BootReport]


@pytest.fixture(scope="session")
def boots(arm64: Built, i386: Built, arm64_image: Path) -> Boots:
    before = host_state()

    def boot(what: str, firmware: str) -> BootReport:
        image = {"arm64": arm64.iso, "i386": i386.iso, "arm64-image": arm64_image}[what]
        arch = what.removesuffix("-image")
        report = boot_test(image, firmware=firmware, arch=arch, user=USER, password=PASSWORD,
                           command=COMMAND, timeout=BOOT_TIMEOUT,
                           media="raw" if what.endswith("-image") else "iso", accel="tcg")
        login = f"{report.seconds_to_login:.1f} s" if report.seconds_to_login else "never"
        print(f"{what} {firmware} ({report.accel}): login after {login}")
        return report

    keys = [("arm64", "uefi-sb"), ("i386", "bios"), ("i386", "uefi"), ("arm64-image", "uefi-sb")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(boot, *key) for key in keys}
        reports = {key: f.result() for key, f in futures.items()}
    after = host_state()
    left = {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}
    assert not left, f"the boots left these behind on the host: {left}"
    return reports


def iso_listing(iso: Path, directory: str) -> list[str]:
    out = subprocess.run(["xorriso", "-indev", str(iso), "-ls", directory],
                         capture_output=True, text=True, check=False).stdout
    return [line.strip("'") for line in out.splitlines() if line.startswith("'")]


def _check(report: BootReport, machine: str, firmware_bits: str | None = None) -> None:
    assert report.ok, f"{report.error}\n--- console ---\n{report.console_tail}"
    lines = report.command_output.splitlines()
    assert lines[0].startswith("12.")  # /etc/debian_version
    assert "sudo-ok" in lines and machine in lines, lines
    if firmware_bits:
        assert f"efi{firmware_bits}" in lines, lines


def test_arm64_iso_boots_uefi_only_through_debians_signed_chain(arm64: Built,
                                                                tmp_path: Path) -> None:
    check_iso(SubprocessRunner(), arm64.iso, "arm64")
    assert "isolinux" not in iso_listing(arm64.iso, "/")
    assert efi_loader_signed(arm64.iso, "iso", "arm64", SubprocessRunner())
    for name in ("bootaa64.efi", "grubaa64.efi", "mmaa64.efi"):
        assert pe_signed(extract(arm64.iso, f"/EFI/boot/{name}", tmp_path / name)[:4096]), name
    assert "Secure Boot: the ISO boots grub-efi-arm64-signed" in arm64.log
    grub = extract(arm64.iso, "/boot/grub/grub.cfg", tmp_path / "grub.cfg").decode()
    live = [line for line in grub.splitlines() if "boot=live" in line]
    assert live and all("console=ttyAMA0,115200n8" in line for line in live)
    assert "ttyS0" not in grub
    kernel = extract(arm64.iso, "/live/vmlinuz", tmp_path / "vmlinuz")
    assert kernel[0x38:0x3C] == b"ARM\x64"  # the arm64 Image header's magic
    dash = unsquash_cat(arm64.squash / "filesystem.squashfs", "usr/bin/dash")
    assert elf_machine(dash) == EM_AARCH64


def test_arm64_initramfs_made_fast_holds_only_the_targets_programs(arm64: Built) -> None:
    """The host's shell and file tools ran mkinitramfs (host.native); what it
    copied in is the target's: no program asks for our private interpreter,
    the initramfs's kmod is arm64's, and live-boot's scripts are there."""
    assert "foreign build: the host's " in arm64.log
    assert arm64.log.count("phase initramfs: ") == 1
    assert "making it again with the target's own tools" not in arm64.log
    initrd = arm64.squash / "initrd.img"
    assert carries_host_tools(initrd, SubprocessRunner()) is False
    payload = initramfs_payload(initrd.read_bytes(), SubprocessRunner())
    assert payload is not None and INTERP.encode() not in payload
    assert b"/lib/ld-linux-aarch64.so.1" in payload and b"ld-linux-x86-64" not in payload
    assert b"scripts/live" in payload


def test_arm64_rebuild_after_a_hook_change_starts_from_the_cached_root(
        arm64: Built, tmp_path: Path) -> None:
    hook = tmp_path / "hook.sh"
    hook.write_text((EXAMPLES / "live-arm64.sh").read_text()
                    + f'echo {HOOK_MARK} > "$rootdir/etc/vmdbt-hook"\n')
    hook.chmod(0o755)
    again = build(tmp_path, "again", "--config", str(EXAMPLES / "live-arm64.conf"),
                  "--customize", str(hook))
    assert "root cache: hit" in again.log
    assert "phase bootstrap" not in again.log and "phase initramfs" not in again.log
    squashfs = again.squash / "filesystem.squashfs"
    assert unsquash_cat(squashfs, "etc/vmdbt-hook").decode().strip() == HOOK_MARK
    print(f"arm64 warm rebuild after a hook change: {again.run.seconds:.0f} s "
          f"(cold: {arm64.run.seconds:.0f} s)")


def test_arm64_iso_boots_under_aavmf_with_secure_boot(boots: Boots) -> None:
    report = boots[("arm64", "uefi-sb")]
    _check(report, "aarch64", "64")
    assert report.secure_boot == "enabled"


def test_arm64_disk_image_boots_under_aavmf_with_secure_boot(arm64_image: Path,
                                                             boots: Boots) -> None:
    """--image --use-uefi for arm64: a GPT disk whose EFI system partition
    holds Debian's shim (installed in the image from the mirror, so later
    upgrades keep it current); AAVMF enforcing Secure Boot boots it."""
    assert efi_loader_signed(arm64_image, "raw", "arm64", SubprocessRunner())
    report = boots[("arm64-image", "uefi-sb")]
    _check(report, "aarch64", "64")
    assert report.secure_boot == "enabled"


def test_i386_iso_has_isolinux_and_grub_for_32_bit_uefi(i386: Built, tmp_path: Path) -> None:
    check_iso(SubprocessRunner(), i386.iso, "i386")
    assert "bootia32.efi" in iso_listing(i386.iso, "/EFI/boot/")
    assert "bootx64.efi" not in iso_listing(i386.iso, "/EFI/boot/")
    assert "isolinux.bin" in iso_listing(i386.iso, "/isolinux/")
    dash = unsquash_cat(i386.squash / "filesystem.squashfs", "usr/bin/dash")
    assert elf_machine(dash) == EM_386
    assert "foreign build" not in i386.log  # the host runs i386 programs itself


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_i386_iso_boots(boots: Boots, firmware: str) -> None:
    _check(boots[("i386", firmware)], "i686", "32" if firmware == "uefi" else None)
