"""What the boot test needs from the host, per architecture and firmware,
and the Debian package each problem names (guests.GUESTS, missing_boot_tools)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vmdebootstrap.boot import guests, qemu


def _files(arch: str, *, secure: bool = False) -> set[str]:
    table = guests.UEFI_SB_FIRMWARE if secure else guests.UEFI_FIRMWARE
    return {f for pair in table[arch] for f in pair if f}


def everything(name: str) -> str | None:
    return "/usr/bin/" + name


def test_nothing_missing() -> None:
    present = _files("amd64") | _files("amd64", secure=True)
    assert guests.missing_boot_tools("amd64", ["bios", "uefi", "uefi-sb"], which=everything,
                                   exists=present.__contains__) == []
    assert guests.missing_boot_tools("arm64", ["uefi"], which=everything,
                                   exists=_files("arm64").__contains__) == []
    assert guests.missing_boot_tools("i386", [], which=everything) == []


@pytest.mark.parametrize(("arch", "binary", "package"), [
    ("amd64", "qemu-system-x86_64", "qemu-system-x86"),
    ("i386", "qemu-system-i386", "qemu-system-x86"),
    ("arm64", "qemu-system-aarch64", "qemu-system-arm"),
    ("armhf", "qemu-system-arm", "qemu-system-arm"),
])
def test_missing_emulator_names_its_package(arch: str, binary: str, package: str) -> None:
    asked: list[str] = []

    def which(name: str) -> str | None:
        asked.append(name)
        return None

    assert guests.missing_boot_tools(arch, [], which=which) == [
        f"{binary} is not installed: install the {package} package"]
    assert asked == [binary]


@pytest.mark.parametrize(("arch", "firmware", "package", "code"), [
    ("amd64", "uefi", "ovmf", "/usr/share/OVMF/OVMF_CODE_4M.fd"),
    ("amd64", "uefi-sb", "ovmf", "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"),
    ("i386", "uefi", "ovmf-ia32", "/usr/share/OVMF/OVMF32_CODE_4M.secboot.fd"),
    ("arm64", "uefi", "qemu-efi-aarch64", "/usr/share/AAVMF/AAVMF_CODE.fd"),
    ("armhf", "uefi", "qemu-efi-arm", "/usr/share/AAVMF/AAVMF32_CODE.fd"),
])
def test_missing_firmware_names_its_package(arch: str, firmware: str, package: str,
                                            code: str) -> None:
    problems = guests.missing_boot_tools(arch, [firmware], which=everything,
                                       exists=lambda f: False)
    assert len(problems) == 1
    assert problems[0].startswith(f"no UEFI firmware{' with Secure Boot' * (firmware == 'uefi-sb')}"
                                  f" for {arch} ({code}")
    assert problems[0].endswith(f": install the {package} package")


def test_plain_ovmf_is_not_secure_boot_firmware() -> None:
    # without the .ms variable store (Microsoft's keys) Secure Boot is not enforced
    present = _files("amd64")
    assert guests.missing_boot_tools("amd64", ["uefi", "uefi-sb"], which=everything,
                                   exists=present.__contains__) == [
        "no UEFI firmware with Secure Boot for amd64 (/usr/share/OVMF/OVMF_CODE_4M.secboot.fd "
        "with /usr/share/OVMF/OVMF_VARS_4M.ms.fd): install the ovmf package"]


def test_each_problem_once_emulator_first() -> None:
    problems = guests.missing_boot_tools("amd64", ["bios", "uefi", "uefi", "bios"],
                                       which=lambda n: None, exists=lambda f: False)
    assert problems == [
        "qemu-system-x86_64 is not installed: install the qemu-system-x86 package",
        "no UEFI firmware for amd64 (/usr/share/OVMF/OVMF_CODE_4M.fd with "
        "/usr/share/OVMF/OVMF_VARS_4M.fd): install the ovmf package"]


def test_what_cannot_be_booted_at_all() -> None:
    assert guests.missing_boot_tools("arm64", ["bios"], which=everything,
                                     exists=lambda f: True) == [
        "arm64 boots only with UEFI firmware, not bios"]
    assert guests.missing_boot_tools("armhf", ["uefi-sb"], which=everything,
                                   exists=lambda f: True) == [
        "there is no UEFI firmware with Secure Boot for armhf guests"]
    assert guests.missing_boot_tools("arm64", ["uefi32"], which=everything,
                                   exists=lambda f: True) == [
        "there is no 32-bit UEFI firmware for arm64 guests"]
    assert guests.missing_boot_tools("i386", ["uefi32"], which=everything,
                                   exists=lambda f: True) == [
        "there is no 32-bit UEFI firmware for i386 guests (its uefi is 32-bit)"]
    assert guests.missing_boot_tools("armel", ["uefi"]) == [
        "the boot test cannot boot armel guests, only amd64, i386, arm64, armhf"]
    assert guests.missing_boot_tools("amd64", ["coreboot"], which=everything) == [
        "firmware must be one of bios, uefi, uefi-sb, uefi32, not 'coreboot'"]


def test_defaults_look_at_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(qemu.os.path, "isfile", lambda f: False)
    assert len(guests.missing_boot_tools("amd64", ["uefi"])) == 2
    monkeypatch.setattr(shutil, "which", everything)
    monkeypatch.setattr(qemu.os.path, "isfile", lambda f: True)
    assert guests.missing_boot_tools("amd64", ["bios", "uefi", "uefi-sb"]) == []


def test_uefi_vars_copy_says_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qemu.os.path, "isfile", lambda f: False)
    with pytest.raises(qemu.BootTestError, match=r"^no UEFI firmware for arm64 .*: install "
                       r"the qemu-efi-aarch64 package$"):
        qemu.uefi_vars_copy("arm64", tmp_path)


def test_armhf_boots_like_arm64_with_its_own_emulator() -> None:
    plan = qemu.QemuPlan(arch="armhf", firmware="uefi", accel="tcg", media="iso",
                         image=Path("/i/live.iso"), uefi_code="/usr/share/AAVMF/AAVMF32_CODE.fd",
                         uefi_vars=Path("/t/v.fd"))
    argv = qemu.qemu_argv(plan)
    assert argv[0] == "qemu-system-arm"
    assert argv[argv.index("-machine") + 1] == "virt"
    assert "scsi-cd,drive=cd0" in argv
    assert guests.serial_console("armhf") == "ttyAMA0"
