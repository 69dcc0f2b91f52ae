"""Host architecture and qemu-user binfmt_misc checks for foreign --arch builds.

A foreign root filesystem can only run its maintainer scripts if the kernel
hands its binaries to a qemu-user emulator.  These checks run before anything
is written so that a missing emulator is reported up front, with the command
that fixes it, instead of as a cryptic "Exec format error" deep in debootstrap.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.errors import UsageError, VmdebootstrapError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")

VALID_ARCHES: tuple[str, ...] = (
    "amd64", "arm64", "armel", "armhf", "i386",
    "mips64el", "mipsel", "ppc64el", "riscv64", "s390x",
)
valid_arches = VALID_ARCHES

# Kernel machine name (uname -m) -> Debian architecture.
MACHINE_TO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "armhf",
    "armv8l": "armhf",
    "i386": "i386",
    "i486": "i386",
    "i586": "i386",
    "i686": "i386",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
    "riscv64": "riscv64",
}

QEMU_NAMES = {
    "amd64": "qemu-x86_64",
    "arm64": "qemu-aarch64",
    "armel": "qemu-arm",
    "armhf": "qemu-arm",
    "i386": "qemu-i386",
    "mips64el": "qemu-mips64el",
    "mipsel": "qemu-mipsel",
    "ppc64el": "qemu-ppc64le",
    "riscv64": "qemu-riscv64",
    "s390x": "qemu-s390x",
}

# 32-bit companions the 64-bit CPU runs directly.  Assumed present: Debian
# kernels enable IA32 emulation and AArch32 EL0 (x32 is off by default, so
# it is not listed).
COMPAT_ARCHES = {
    "amd64": frozenset({"i386"}),
    "arm64": frozenset({"armhf", "armel"}),
}


def host_arch(machine: str | None = None) -> str:
    """The host's Debian architecture, from uname's machine name."""
    name = machine if machine is not None else platform.machine()
    try:
        return MACHINE_TO_ARCH[name]
    except KeyError:
        raise VmdebootstrapError(
            f"unknown host machine type {name!r}: cannot tell its Debian architecture"
        ) from None


def native_arches(host: str) -> set[str]:
    return {host, *COMPAT_ARCHES.get(host, ())}


@dataclass(frozen=True)
class BinfmtEntry:
    name: str
    enabled: bool
    interpreter: str
    flags: str

    @property
    def fix_binary(self) -> bool:
        """F flag: the kernel opened the interpreter at registration time, so
        it need not exist inside the chroot."""
        return "F" in self.flags


def parse_entry(name: str, text: str) -> BinfmtEntry:
    """Parse a /proc/sys/fs/binfmt_misc/<name> file."""
    lines = text.splitlines()
    enabled = bool(lines) and lines[0].strip() == "enabled"
    interpreter = ""
    flags = ""
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        if key == "interpreter":
            interpreter = value.strip()
        elif key == "flags:":
            flags = value.strip()
    return BinfmtEntry(name=name, enabled=enabled, interpreter=interpreter, flags=flags)


def read_entry(name: str, binfmt_dir: Path = BINFMT_DIR) -> BinfmtEntry | None:
    try:
        text = (binfmt_dir / name).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    return parse_entry(name, text)


def binfmt_mounted(binfmt_dir: Path = BINFMT_DIR) -> bool:
    return (binfmt_dir / "status").exists()


@dataclass(frozen=True)
class ForeignSetup:
    arch: str
    entry: BinfmtEntry
    handler: Path  # host file to copy into the root when not fix_binary
    copy_to: str  # absolute path inside the root (== entry.interpreter)


NOT_MOUNTED = (
    "binfmt_misc is not mounted: run 'mount -t binfmt_misc binfmt_misc "
    "/proc/sys/fs/binfmt_misc' and 'update-binfmts --enable' (package binfmt-support)"
)


def _install_hint(qemu: str) -> str:
    return ("install the Debian packages qemu-user-static and binfmt-support "
            "('apt-get install qemu-user-static binfmt-support'), then run "
            f"'update-binfmts --enable {qemu}'")


def _check_foreign_option(foreign: str) -> Path:
    path = Path(foreign)
    if not path.is_file():
        raise UsageError(f"--foreign {foreign}: no such file")
    if not os.access(path, os.X_OK):
        raise UsageError(f"--foreign {foreign}: not executable")
    return path


def check_foreign(arch: str, host: str, foreign: str | None,
                  binfmt_dir: Path = BINFMT_DIR) -> ForeignSetup | None:
    """None when arch runs natively; otherwise how to run its binaries under qemu."""
    if arch in native_arches(host):
        return None
    qemu = QEMU_NAMES.get(arch)
    if qemu is None:
        raise UsageError(f"--arch {arch}: not supported; use one of {', '.join(VALID_ARCHES)}")
    if not binfmt_mounted(binfmt_dir):
        raise UsageError(NOT_MOUNTED)
    entry = read_entry(qemu, binfmt_dir)
    if entry is None or not entry.enabled or not entry.interpreter:
        state = "is disabled" if entry is not None else "is not registered"
        raise UsageError(
            f"--arch {arch} needs the binfmt_misc handler {qemu}, which {state} "
            f"on this {host} host: {_install_hint(qemu)}")
    if foreign is not None:
        handler = _check_foreign_option(foreign)
    else:
        handler = Path(entry.interpreter)
        # Without F the kernel opens the interpreter inside the chroot, so we
        # must be able to copy it there.
        if not entry.fix_binary and not handler.is_file():
            raise UsageError(
                f"--arch {arch}: the {qemu} interpreter {handler} is missing on the "
                f"host: {_install_hint(qemu)}")
    return ForeignSetup(arch=arch, entry=entry, handler=handler, copy_to=entry.interpreter)
