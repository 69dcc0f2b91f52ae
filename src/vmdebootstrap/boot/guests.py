"""What booting each guest architecture needs from the host: the QEMU
emulator, the machine, the serial console, and the UEFI firmware (plain,
with Secure Boot enforced, and 32-bit for 64-bit x86 guests), each with
the Debian package that provides it; and what this host lacks of it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Firmware:
    """UEFI firmware files for one architecture and the Debian package that
    ships them: (code, vars template) pairs, best first; vars None = one
    combined writable image."""
    files: tuple[tuple[str, str | None], ...]
    package: str
    # OVMF built with Secure Boot support keeps its variables where only SMM
    # code can write them, so that a booted OS cannot change the keys: the
    # machine needs SMM and a secure flash (q35).
    smm: bool = False


@dataclass(frozen=True)
class Guest:
    """What booting one architecture needs from the host and which Debian
    package provides it.  BIOS needs no check of its own: SeaBIOS comes with
    qemu-system-x86 (a dependency)."""
    qemu: str                # the emulator binary
    qemu_package: str
    machine: str             # QEMU's -machine
    # The guest's name for the first UART, which "-serial stdio" connects to:
    # the getty and console= the guest needs.
    serial: str
    uefi: Firmware
    bios: bool = False
    # Secure Boot: firmware built to enforce it with a variable store that
    # has Microsoft's keys enrolled, as a PC sold with Windows has; Debian's
    # ovmf and qemu-efi-aarch64 ship both.
    uefi_sb: Firmware | None = None
    # 32-bit UEFI starting a 64-bit system through bootia32.efi, as on the
    # cheap x86 tablets Debian's amd64 ISOs boot.
    uefi32: Firmware | None = None
    # -cpu under TCG: every feature, but the pointer authentication that an
    # arm64 kernel uses everywhere computed with QEMU's cheap hash instead of
    # QARMA (the guest cannot tell; its boot takes far less time).
    tcg_cpu: str = "max"


_OVMF = "/usr/share/OVMF/"
_AAVMF = "/usr/share/AAVMF/"
# Debian's ovmf-ia32 has only the build with Secure Boot support (its
# variable store has no keys enrolled, so nothing is enforced).
_OVMF32 = Firmware(((_OVMF + "OVMF32_CODE_4M.secboot.fd", _OVMF + "OVMF32_VARS_4M.fd"),),
                   "ovmf-ia32", smm=True)
# The one table of what each guest architecture needs; the dicts below are views of it.
GUESTS: dict[str, Guest] = {
    "amd64": Guest(
        "qemu-system-x86_64", "qemu-system-x86", "q35", "ttyS0", bios=True,
        uefi=Firmware(((_OVMF + "OVMF_CODE_4M.fd", _OVMF + "OVMF_VARS_4M.fd"),
                       (_OVMF + "OVMF_CODE.fd", _OVMF + "OVMF_VARS.fd"),
                       ("/usr/share/ovmf/OVMF.fd", None)), "ovmf"),
        uefi_sb=Firmware(((_OVMF + "OVMF_CODE_4M.secboot.fd", _OVMF + "OVMF_VARS_4M.ms.fd"),
                          (_OVMF + "OVMF_CODE.secboot.fd", _OVMF + "OVMF_VARS.ms.fd")),
                         "ovmf", smm=True),
        uefi32=_OVMF32),
    "i386": Guest(
        "qemu-system-i386", "qemu-system-x86", "q35", "ttyS0", bios=True, uefi=_OVMF32),
    "arm64": Guest(
        "qemu-system-aarch64", "qemu-system-arm", "virt", "ttyAMA0",
        uefi=Firmware(((_AAVMF + "AAVMF_CODE.fd", _AAVMF + "AAVMF_VARS.fd"),),
                      "qemu-efi-aarch64"),
        uefi_sb=Firmware(((_AAVMF + "AAVMF_CODE.ms.fd", _AAVMF + "AAVMF_VARS.ms.fd"),),
                         "qemu-efi-aarch64"),
        tcg_cpu="max,pauth-impdef=on"),
    "armhf": Guest(
        "qemu-system-arm", "qemu-system-arm", "virt", "ttyAMA0",
        uefi=Firmware(((_AAVMF + "AAVMF32_CODE.fd", _AAVMF + "AAVMF32_VARS.fd"),),
                      "qemu-efi-arm")),
}
QEMU_BINARIES = {arch: g.qemu for arch, g in GUESTS.items()}
SERIAL_CONSOLES = {arch: g.serial for arch, g in GUESTS.items()}
UEFI_FIRMWARE = {arch: list(g.uefi.files) for arch, g in GUESTS.items()}
UEFI_SB_FIRMWARE = {arch: list(g.uefi_sb.files) for arch, g in GUESTS.items() if g.uefi_sb}
# What --firmware boots with; uefi-sb is UEFI with Secure Boot enforced,
# uefi32 a 32-bit UEFI booting a 64-bit guest.
FIRMWARES = ("bios", "uefi", "uefi-sb", "uefi32")
_FIRMWARE_WORDS = {"uefi": "UEFI firmware", "uefi-sb": "UEFI firmware with Secure Boot",
                   "uefi32": "32-bit UEFI firmware"}


def serial_console(arch: str) -> str:
    return SERIAL_CONSOLES.get(arch, "ttyS0")



def guest_firmware(arch: str, firmware: str) -> Firmware | None:
    """The UEFI firmware ``firmware`` (uefi|uefi-sb|uefi32) is for ``arch``."""
    guest = GUESTS.get(arch)
    if guest is None:
        return None
    return {"uefi": guest.uefi, "uefi-sb": guest.uefi_sb, "uefi32": guest.uefi32}.get(firmware)


def guest_firmwares(arch: str) -> list[str]:
    """Every firmware ``arch`` guests boot under (--firmware all), in FIRMWARES' order."""
    guest = GUESTS.get(arch)
    if guest is None:
        return []
    return [f for f in FIRMWARES if (guest.bios if f == "bios" else guest_firmware(arch, f))]


def find_uefi_firmware(arch: str, exists: Callable[[str], bool] | None = None, *,
                       secure_boot: bool = False, firmware: str | None = None
                       ) -> tuple[str, str | None] | None:
    exists = exists or os.path.isfile
    fw = guest_firmware(arch, firmware or ("uefi-sb" if secure_boot else "uefi"))
    for code, vars_ in fw.files if fw else ():
        if exists(code) and (vars_ is None or exists(vars_)):
            return code, vars_
    return None


def _unsupported(arch: str) -> str:
    return f"the boot test cannot boot {arch} guests, only {', '.join(GUESTS)}"


def firmware_problem(arch: str, firmware: str, exists: Callable[[str], bool]) -> str | None:
    guest = GUESTS.get(arch)
    if guest is None:
        return _unsupported(arch)
    if firmware == "bios":
        return None if guest.bios else f"{arch} boots only with UEFI firmware, not bios"
    if firmware not in FIRMWARES:
        return f"firmware must be one of {', '.join(FIRMWARES)}, not {firmware!r}"
    what = _FIRMWARE_WORDS[firmware]
    fw = guest_firmware(arch, firmware)
    if fw is None:
        hint = " (its uefi is 32-bit)" if firmware == "uefi32" and arch == "i386" else ""
        return f"there is no {what} for {arch} guests{hint}"
    if find_uefi_firmware(arch, exists, firmware=firmware) is not None:
        return None
    code, vars_ = fw.files[0]
    files = f"{code} with {vars_}" if vars_ else code
    return f"no {what} for {arch} ({files}): install the {fw.package} package"


def missing_boot_tools(arch: str, firmwares: Sequence[str], *,
                       which: Callable[[str], str | None] | None = None,
                       exists: Callable[[str], bool] | None = None) -> list[str]:
    """What the host lacks to boot ``arch`` under each of ``firmwares``
    (bios|uefi|uefi-sb), each problem naming the Debian package to install;
    empty when everything is there.  ``which``/``exists`` default to
    shutil.which and os.path.isfile."""
    guest = GUESTS.get(arch)
    if guest is None:
        return [_unsupported(arch)]
    which = which or shutil.which
    exists = exists or os.path.isfile
    problems = []
    if which(guest.qemu) is None:
        problems.append(f"{guest.qemu} is not installed: install the "
                        f"{guest.qemu_package} package")
    for firmware in dict.fromkeys(firmwares):  # each once, in order
        problem = firmware_problem(arch, firmware, exists)
        if problem:
            problems.append(problem)
    return problems
