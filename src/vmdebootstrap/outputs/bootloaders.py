"""/etc/fstab and the bootloaders: grub (BIOS and UEFI) and extlinux.

The texts (fstab, grub's defaults, extlinux.conf) and every argv come from
pure functions; install_grub() and install_extlinux() run the image's own
grub-install, update-grub and extlinux in a chroot, through qemu-user for a
foreign architecture, so the boot code matches what the image's packages
update later.  Only the image's loop device and its partitions are made
visible in the chroot's /dev, never the host's /dev.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.chroot import chroot_argv, chroot_env
from vmdebootstrap.host.run import Runner

log = logging.getLogger("vmdebootstrap")

# Debian architecture -> (grub target, UEFI grub package, removable EFI file name)
EFI = {
    "amd64": ("x86_64-efi", "grub-efi-amd64", "BOOTX64.EFI"),
    "i386": ("i386-efi", "grub-efi-ia32", "BOOTIA32.EFI"),
    "arm64": ("arm64-efi", "grub-efi-arm64", "BOOTAA64.EFI"),
    "armhf": ("arm-efi", "grub-efi-arm", "BOOTARM.EFI"),
}
FS_PACKAGES = {"btrfs": "btrfs-progs", "xfs": "xfsprogs", "vfat": "dosfstools",
               "ext2": "e2fsprogs", "ext3": "e2fsprogs", "ext4": "e2fsprogs"}
SERIAL_SPEED = 115200
EXTLINUX_DIR = "boot/extlinux"
MBR_BLOBS = {  # partition table -> where the image (or the host) keeps syslinux's MBR
    "dos": ("usr/lib/EXTLINUX/mbr.bin", "usr/lib/syslinux/mbr/mbr.bin"),
    "gpt": ("usr/lib/EXTLINUX/gptmbr.bin", "usr/lib/syslinux/mbr/gptmbr.bin"),
}
MBR_CODE_BYTES = 440  # boot code only: the disk signature and table stay


def bootloader_packages(arch: str, bootloader: str, use_uefi: bool, roottype: str,
                        boottype: str | None = None) -> list[str]:
    """Packages the image needs at bootstrap time for its bootloader and filesystems.

    ``boottype`` is the filesystem of a separate /boot (None without one)."""
    wanted: list[str] = []
    if bootloader == "grub":
        if use_uefi:
            if arch not in EFI:
                raise ValueError(f"no UEFI grub for {arch}")
            wanted.append(EFI[arch][1])
        else:
            wanted.append("grub-pc")
    elif bootloader == "extlinux":
        wanted += ["extlinux", "syslinux-common"]
    for fstype in (roottype, boottype, "vfat" if use_uefi else None):
        if fstype:
            wanted.append(FS_PACKAGES[fstype])
    return list(dict.fromkeys(wanted))


# --- /etc/fstab ---------------------------------------------------------------------


@dataclass(frozen=True)
class FstabEntry:
    uuid: str
    mountpoint: str  # "none" for swap
    fstype: str


FSTAB_HEADER = ("# /etc/fstab: static file system information, written by vmdebootstrap.\n"
                "# <file system> <mount point> <type> <options> <dump> <pass>\n")


def fstab_line(entry: FstabEntry) -> str:
    if entry.fstype == "swap":
        return f"UUID={entry.uuid} none swap sw 0 0"
    root = entry.mountpoint == "/"
    if entry.fstype.startswith("ext"):
        options = "errors=remount-ro" if root else "defaults"
        passno = 1 if root else 2
    elif entry.fstype == "vfat":
        options = "umask=0077" if entry.mountpoint == "/boot/efi" else "defaults"
        passno = 2
    else:  # btrfs and xfs check themselves when mounted
        options, passno = "defaults", 0
    return f"UUID={entry.uuid} {entry.mountpoint} {entry.fstype} {options} 0 {passno}"


def fstab_text(entries: Sequence[FstabEntry], existing: str = "") -> str:
    """Our entries, root first, then any entry the hook or a package already
    wrote for another mount point."""
    order = {"/": 0, "/boot": 1, "/boot/efi": 2, "none": 3}
    ours = sorted(entries, key=lambda e: order.get(e.mountpoint, 4))
    taken = {e.mountpoint for e in ours}
    kept = []
    for line in existing.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) >= 3 and (words[1] in taken or (words[2] == "swap" and "none" in taken)):
            continue
        kept.append(line)
    text = FSTAB_HEADER + "".join(fstab_line(e) + "\n" for e in ours)
    if kept:
        text += "# kept from the image\n" + "".join(line + "\n" for line in kept)
    return text


# --- the kernel command line ------------------------------------------------------------


def serial_unit(tty: str) -> int:
    m = re.search(r"(\d+)$", tty)
    return int(m.group(1)) if m else 0


def kernel_cmdline(serial_tty: str | None, no_ifnames: bool) -> list[str]:
    """What vmdebootstrap adds to the kernel command line; the last console=
    is /dev/console, so boot messages and emergency shells reach the serial port."""
    words: list[str] = []
    if serial_tty:
        words += ["console=tty0", f"console={serial_tty},{SERIAL_SPEED}n8"]
    if no_ifnames:
        words.append("net.ifnames=0")
    return words


def grub_default_text(cmdline: Sequence[str], serial_tty: str | None) -> str:
    """/etc/default/grub.d/vmdebootstrap.cfg, sourced after /etc/default/grub."""
    lines = ["# Written by vmdebootstrap; update-grub reads it after /etc/default/grub."]
    if cmdline:
        lines.append('GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX:+$GRUB_CMDLINE_LINUX }'
                     + " ".join(cmdline) + '"')
    if serial_tty:
        lines.append('GRUB_TERMINAL="console serial"')
        if serial_tty.startswith("ttyS"):
            lines.append(f'GRUB_SERIAL_COMMAND="serial --speed={SERIAL_SPEED} '
                         f'--unit={serial_unit(serial_tty)} --word=8 --parity=no --stop=1"')
        else:
            lines.append(f'GRUB_SERIAL_COMMAND="serial --speed={SERIAL_SPEED}"')
    # The image is built on a host whose other disks are none of its business.
    lines.append("GRUB_DISABLE_OS_PROBER=true")
    return "\n".join(lines) + "\n"


# --- grub ---------------------------------------------------------------------------


def grub_install_argvs(arch: str, use_uefi: bool, disk: str,
                       secure_boot: bool = False) -> list[list[str]]:
    """grub-install as run in the chroot: BIOS to the disk, or UEFI twice, to
    EFI/debian and to the removable path EFI/BOOT that firmware without boot
    entries (a fresh VM) starts.  With ``secure_boot`` Debian's grub-install
    puts the signed shim first (BOOTX64.EFI), the signed grub beside it and
    MokManager; without, its own unsigned image, whatever is installed."""
    if not use_uefi:
        return [["grub-install", "--target=i386-pc", "--boot-directory=/boot", disk]]
    target = EFI[arch][0]
    common = ["grub-install", f"--target={target}", "--efi-directory=/boot/efi",
              "--boot-directory=/boot", "--no-nvram",
              "--uefi-secure-boot" if secure_boot else "--no-uefi-secure-boot"]
    return [[*common, "--bootloader-id=debian"], [*common, "--removable"]]


UPDATE_GRUB = ["grub-mkconfig", "-o", "/boot/grub/grub.cfg"]


def grub_debconf(arch: str, use_uefi: bool) -> str:
    """Later grub upgrades in the image keep the removable EFI path up to date."""
    if not use_uefi:
        return ""
    return f"{EFI[arch][1]} grub2/force_efi_extra_removable boolean true\n"


@dataclass(frozen=True)
class Devices:
    """The image's block devices: the whole disk and each partition's node,
    with its filesystem UUID (for /dev/disk/by-uuid in the chroot)."""

    disk: str
    partitions: tuple[str, ...]
    uuids: dict[str, str]  # node -> UUID


@contextlib.contextmanager
def devices_in_chroot(runner: Runner, root: Path, devices: Devices) -> Iterator[None]:
    """Bind-mount the loop device and its partitions onto files in ROOT/dev and
    add /dev/disk/by-uuid links (grub-mkconfig writes root=UUID= only when the
    link exists); all removed again afterwards."""
    dev = root / "dev"
    with contextlib.ExitStack() as stack:
        for node in (devices.disk, *devices.partitions):
            target = dev / Path(node).name
            if not target.exists():
                target.touch()
                stack.callback(_unlink, target)
            runner.run(["mount", "--bind", node, str(target)],
                       what=f"making {node} visible in the chroot failed")
            stack.callback(runner.run, ["umount", str(target)], check=False, label="umount")
        by_uuid = dev / "disk" / "by-uuid"
        created = [d for d in (dev / "disk", by_uuid) if not d.exists()]
        for d in created:
            d.mkdir()
        for d in created:  # callbacks run last first: by-uuid, then disk
            stack.callback(_rmdir, d)
        for node, uuid in devices.uuids.items():
            link = by_uuid / uuid
            if not link.exists() and not link.is_symlink():
                link.symlink_to(f"../../{Path(node).name}")
                stack.callback(_unlink, link)
        yield


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _rmdir(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def install_grub(runner: Runner, root: Path, *, arch: str, use_uefi: bool, disk: str,
                 default_text: str, secure_boot: bool = False) -> None:
    """Run in chroot_mounts() and devices_in_chroot()."""
    target = EFI[arch][0] if use_uefi else "i386-pc"
    if not (root / "usr/lib/grub" / target).is_dir():
        pkg = EFI[arch][1] if use_uefi else "grub-pc"
        raise BuildError(f"grub for {target} is not installed in the image: add the package "
                         f"{pkg} (--package {pkg})")
    grub_d = root / "etc/default/grub.d"
    grub_d.mkdir(parents=True, exist_ok=True)
    (grub_d / "vmdebootstrap.cfg").write_text(default_text)
    selections = grub_debconf(arch, use_uefi)
    if selections:
        runner.run(chroot_argv(root, ["debconf-set-selections"]), env=chroot_env(),
                   input=selections.encode(),
                   label="debconf", what="setting grub's debconf answers failed")
    for argv in grub_install_argvs(arch, use_uefi, disk, secure_boot):
        runner.run(chroot_argv(root, argv), env=chroot_env(), label="grub-install",
                   what="installing grub failed")
    runner.run(chroot_argv(root, UPDATE_GRUB), env=chroot_env(), label="grub-mkconfig",
               what="writing grub.cfg failed")


# --- extlinux -----------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    version: str
    kernel: str  # path as extlinux sees it (from the root of the /boot filesystem)
    initrd: str | None


def _version_key(version: str) -> list[tuple[int, object]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", version) if p]


def find_kernels(boot_dir: Path, prefix: str) -> list[Kernel]:
    """Kernels in ``boot_dir``, newest first; ``prefix`` is /boot's path as
    extlinux sees it ("" when /boot is its own filesystem, else "/boot")."""
    found = []
    for vmlinuz in boot_dir.glob("vmlinuz-*"):
        version = vmlinuz.name[len("vmlinuz-"):]
        initrd = boot_dir / f"initrd.img-{version}"
        found.append(Kernel(version, f"{prefix}/{vmlinuz.name}",
                            f"{prefix}/{initrd.name}" if initrd.exists() else None))
    return sorted(found, key=lambda k: _version_key(k.version), reverse=True)


def extlinux_conf_text(kernels: Sequence[Kernel], root_uuid: str, cmdline: Sequence[str],
                       serial_tty: str | None, distribution: str = "Debian GNU/Linux") -> str:
    if not kernels:
        raise BuildError("no kernel in /boot for extlinux to boot")
    lines = ["# Written by vmdebootstrap.  Kernel upgrades do not change this file:",
             "# add an entry for a new kernel here."]
    if serial_tty:
        lines.append(f"SERIAL {serial_unit(serial_tty)} {SERIAL_SPEED}")
    lines += [f"DEFAULT linux-{kernels[0].version}", "PROMPT 0", "TIMEOUT 10", ""]
    append = " ".join([f"root=UUID={root_uuid}", "ro", "quiet", *cmdline])
    for k in kernels:
        lines += [f"LABEL linux-{k.version}",
                  f"  MENU LABEL {distribution}, kernel {k.version}",
                  f"  LINUX {k.kernel}"]
        if k.initrd:
            lines.append(f"  INITRD {k.initrd}")
        lines += [f"  APPEND {append}", ""]
    return "\n".join(lines)


def install_extlinux(runner: Runner, root: Path, conf_text: str) -> None:
    """Run in chroot_mounts() and devices_in_chroot(); the MBR comes after."""
    if not (root / "usr/bin/extlinux").exists() and not (root / "bin/extlinux").exists():
        raise BuildError("extlinux is not installed in the image: add the packages "
                         "extlinux and syslinux-common (--package extlinux)")
    (root / EXTLINUX_DIR).mkdir(parents=True, exist_ok=True)
    runner.run(chroot_argv(root, ["extlinux", "--install", "/" + EXTLINUX_DIR]),
               env=chroot_env(),
               label="extlinux", what="installing extlinux failed")
    (root / EXTLINUX_DIR / "extlinux.conf").write_text(conf_text)


def mbr_blob(root: Path, label: str, host_root: Path = Path("/")) -> Path:
    for base in (root, host_root):
        for rel in MBR_BLOBS[label]:
            if (base / rel).is_file():
                return base / rel
    raise BuildError(f"no syslinux MBR ({Path(MBR_BLOBS[label][1]).name}) in the image or "
                     "on the host: install syslinux-common")


def write_mbr(blob: Path, disk: str) -> None:
    """syslinux's boot code into the first 440 bytes of ``disk``; it starts the
    active partition (msdos) or the legacy-BIOS-bootable one (GPT)."""
    code = blob.read_bytes()[:MBR_CODE_BYTES]
    log.debug("writing %s to %s", blob, disk)
    fd = os.open(disk, os.O_WRONLY)
    try:
        os.pwrite(fd, code, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
