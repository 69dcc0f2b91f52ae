"""The disk image: partition layout, partition table, loop device, filesystems.

The layout is a pure function of the settings (sizes in, partitions out), and
so are the sfdisk script, the ``sfdisk --json`` a finished image must show and
every mkfs argv; unit tests check them without root.  Only loop_attached()
and make_filesystems() touch the system.

Layout rules: an msdos table unless UEFI, arm64, a disk over 2 TiB or
--part-type gpt asks for GPT.  In order: a 1 MiB BIOS boot partition (GPT with
BIOS grub only), the EFI system partition (--use-uefi), /boot (--bootsize),
swap (--swap), then the root filesystem, last so that it can be grown.  The
first partition starts at 1 MiB, or at --bootoffset rounded up to whole MiB;
every partition is a whole number of MiB.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vmdebootstrap.errors import BuildError, UsageError
from vmdebootstrap.host.run import Runner
from vmdebootstrap.intent.plan import DiskSpec

log = logging.getLogger("vmdebootstrap")

SECTOR = 512
MiB = 1024**2
GRAIN = MiB // SECTOR  # partitions start and end on 1 MiB boundaries
GPT_TAIL = 33  # the backup GPT: 32 sectors of entries and a header
MSDOS_MAX_SECTORS = 2**32 - 1
MIN_ROOT = 64 * MiB
FAT32_MIN = 64 * MiB  # smaller FAT partitions get FAT16

BIOS_GRUB_GUID = "21686148-6449-6E6F-744E-656564454649"
ESP_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_GUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
SWAP_GUID = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
LEGACY_BOOT = "LegacyBIOSBootable"

BIOS_ARCHES = ("amd64", "i386")  # arches grub-pc and extlinux boot
GPT_ARCHES = ("arm64",)  # arches that boot from GPT only
LABELS = {"esp": "EFI", "boot": "boot", "swap": "swap", "root": "root"}
GPT_NAMES = {"bios_grub": "BIOS boot", "esp": "EFI system", "boot": "boot", "swap": "swap",
             "root": "root"}
MOUNTPOINTS = {"root": "/", "boot": "/boot", "esp": "/boot/efi"}


class LayoutError(UsageError):
    """The disk options cannot make a bootable layout (found before any write)."""


@dataclass(frozen=True)
class Partition:
    number: int
    role: str  # bios_grub | esp | boot | swap | root
    start: int  # sectors
    size: int  # sectors
    fstype: str | None  # None: no filesystem (BIOS boot partition)
    type: str  # sfdisk's type: "83" on msdos, a type GUID on GPT
    bootable: bool = False  # msdos active flag
    attrs: str | None = None  # GPT attribute
    name: str | None = None  # GPT partition name

    @property
    def mountpoint(self) -> str | None:
        return MOUNTPOINTS.get(self.role)

    @property
    def size_bytes(self) -> int:
        return self.size * SECTOR


@dataclass(frozen=True)
class Layout:
    label: str  # dos | gpt (sfdisk's names)
    total_sectors: int
    partitions: tuple[Partition, ...] = field(default_factory=tuple)

    def get(self, role: str) -> Partition | None:
        return next((p for p in self.partitions if p.role == role), None)



def _mib(nbytes: int) -> int:
    """Bytes rounded up to whole MiB, in sectors."""
    return -(-nbytes // MiB) * GRAIN


def table_type(spec: DiskSpec) -> str:
    if spec.part_type:
        return "dos" if spec.part_type == "msdos" else "gpt"
    if spec.use_uefi or spec.arch in GPT_ARCHES or spec.size // SECTOR > MSDOS_MAX_SECTORS:
        return "gpt"
    return "dos"


def fat_bits(size_bytes: int) -> int:
    return 32 if size_bytes >= FAT32_MIN else 16


def _dos_type(role: str, fstype: str | None, size_bytes: int, lba: bool) -> str:
    if role == "esp":
        return "ef"
    if role == "swap":
        return "82"
    if fstype == "vfat":
        if fat_bits(size_bytes) == 32:
            return "c" if lba else "b"
        return "e" if lba else "6"
    return "83"


def _gpt_type(role: str) -> str:
    return {"bios_grub": BIOS_GRUB_GUID, "esp": ESP_GUID, "swap": SWAP_GUID}.get(role,
                                                                                LINUX_GUID)


def layout_problems(spec: DiskSpec) -> list[str]:
    """Everything wrong with the disk options, named by option."""
    try:
        compute_layout(spec)
    except LayoutError as exc:
        return exc.problems
    return []


def compute_layout(spec: DiskSpec) -> Layout:
    """The partitions for ``spec``; raises LayoutError listing every problem."""
    problems: list[str] = []
    label = table_type(spec)
    total = spec.size // SECTOR
    if label == "dos" and total > MSDOS_MAX_SECTORS:
        problems.append("--part-type msdos: an msdos partition table cannot address more "
                        "than 2 TiB; use --part-type gpt or a smaller --size")
    bios = spec.bootloader != "none" and not spec.use_uefi
    if bios and spec.arch not in BIOS_ARCHES:
        problems.append(f"--{spec.bootloader}: BIOS booting is for {' and '.join(BIOS_ARCHES)}"
                        f" only; for {spec.arch} use --use-uefi with --grub, or --no-grub "
                        "--no-extlinux and install a bootloader in a --customize hook")
    if spec.bootloader == "extlinux":
        target = spec.boottype if spec.bootsize else spec.roottype
        option = "--boottype" if spec.bootsize else "--roottype"
        if target in ("btrfs", "xfs"):
            problems.append(f"{option} {target}: extlinux cannot boot from {target}; use "
                            "ext2, ext3, ext4 (or vfat for /boot), or --grub")

    # (role, fstype, size in sectors or None for the rest)
    wanted: list[tuple[str, str | None, int | None]] = []
    if label == "gpt" and bios and spec.bootloader == "grub":
        wanted.append(("bios_grub", None, GRAIN))
    if spec.use_uefi:
        wanted.append(("esp", "vfat", _mib(spec.esp_size)))
    if spec.bootsize:
        wanted.append(("boot", spec.boottype, _mib(spec.bootsize)))
    wanted.append(("root", spec.roottype, None))
    if spec.swap:
        wanted.append(("swap", "swap", _mib(spec.swap)))

    start = max(GRAIN, _mib(spec.bootoffset or 0))
    end = total - (GPT_TAIL if label == "gpt" else 0)
    end -= end % GRAIN
    after_root = sum(size or 0 for role, _, size in wanted if role == "swap")
    parts: list[Partition] = []
    for number, (role, fstype, size) in enumerate(wanted, 1):
        if size is None:
            size = end - start - after_root
            if size * SECTOR < MIN_ROOT:
                problems.append(
                    f"--size: {spec.size} bytes leaves {max(size, 0) * SECTOR // MiB} MiB for "
                    f"the root filesystem after the other partitions; give a larger --size")
                size = max(size, GRAIN)
        parts.append(Partition(
            number=number, role=role, start=start, size=size, fstype=fstype,
            type=(_gpt_type(role) if label == "gpt"
                  else _dos_type(role, fstype, size * SECTOR, lba=False)),
            name=GPT_NAMES[role] if label == "gpt" else None))
        start += size

    first_index = next(i for i, p in enumerate(parts) if p.role != "bios_grub")
    first, flag_problems = _flag_first(label, parts[first_index], spec.bootflag)
    if label == "gpt" and spec.bootloader == "extlinux":
        # syslinux's gptmbr.bin starts the partition with this attribute
        first = replace(first, attrs=LEGACY_BOOT)
    parts[first_index] = first
    problems += flag_problems
    if problems:
        raise LayoutError(problems)
    return Layout(label=label, total_sectors=total, partitions=tuple(parts))


def _flag_first(label: str, part: Partition, flag: str) -> tuple[Partition, list[str]]:
    """The boot flag on the first partition, plus --bootflag FLAG when it is another."""
    problems: list[str] = []
    where = f"--bootflag {flag}: the first partition ({part.role}, {part.fstype})"
    if flag in ("lba", "esp") and part.fstype != "vfat":
        problems.append(f"{where} is not FAT; {flag} applies to FAT partitions "
                        "(e.g. --bootsize with --boottype vfat)")
    if label == "dos":
        if flag == "legacy_boot":
            problems.append("--bootflag legacy_boot only applies to GPT (--part-type gpt)")
        part = replace(part, bootable=True)
        if flag == "lba" and part.fstype == "vfat" and part.role != "esp":
            part = replace(part, type=_dos_type(part.role, part.fstype, part.size_bytes,
                                                lba=True))
        elif flag == "esp" and part.fstype == "vfat":
            part = replace(part, type="ef")
    else:
        if flag == "lba":
            problems.append("--bootflag lba only applies to msdos partition tables "
                            "(--part-type msdos)")
        if flag == "esp" and part.fstype == "vfat":
            part = replace(part, type=ESP_GUID)
        elif (flag == "boot" and part.role != "esp") or flag == "legacy_boot":
            # parted's "boot" on GPT would turn the partition into an ESP;
            # BIOS bootloaders look for the legacy BIOS bootable attribute.
            part = replace(part, attrs=LEGACY_BOOT)
    return part, problems


# --- the partition table ------------------------------------------------------------


def sfdisk_script(layout: Layout) -> str:
    lines = [f"label: {layout.label}", "unit: sectors", f"sector-size: {SECTOR}", ""]
    for p in layout.partitions:
        words = [f"start={p.start}", f"size={p.size}", f"type={p.type}"]
        if p.name:
            words.append(f'name="{p.name}"')
        if p.attrs:
            words.append(f'attrs="{p.attrs}"')
        if p.bootable:
            words.append("bootable")
        lines.append(", ".join(words))
    return "\n".join(lines) + "\n"


def sfdisk_argv(image: Path) -> list[str]:
    return ["sfdisk", "--quiet", "--wipe", "always", "--no-reread", "--no-tell-kernel",
            str(image)]


def partition(runner: Runner, image: Path, layout: Layout) -> None:
    runner.run(sfdisk_argv(image), input=sfdisk_script(layout).encode(), label="sfdisk",
               what="writing the partition table failed")


MASK = "<masked>"


def expected_sfdisk_json(layout: Layout) -> dict[str, Any]:
    """What ``sfdisk --json IMAGE`` shows for this layout, after mask_sfdisk_json()."""
    table: dict[str, Any] = {"label": layout.label, "id": MASK, "device": "IMAGE",
                             "unit": "sectors"}
    if layout.label == "gpt":
        table["firstlba"] = GRAIN
        table["lastlba"] = layout.total_sectors - GPT_TAIL - 1
    table["sectorsize"] = SECTOR
    parts = []
    for p in layout.partitions:
        entry: dict[str, Any] = {"node": f"IMAGE{p.number}", "start": p.start, "size": p.size,
                                 "type": p.type}
        if layout.label == "gpt":
            entry["uuid"] = MASK
            if p.name:
                entry["name"] = p.name
            if p.attrs:
                entry["attrs"] = p.attrs
        if p.bootable:
            entry["bootable"] = True
        parts.append(entry)
    table["partitions"] = parts
    return {"partitiontable": table}


def mask_sfdisk_json(data: dict[str, Any]) -> dict[str, Any]:
    """Real ``sfdisk --json`` output with ids, UUIDs and file names masked."""
    table = dict(data["partitiontable"])
    device = table.get("device", "")
    table["id"] = MASK
    table["device"] = "IMAGE"
    parts = []
    for entry in table.get("partitions", []):
        entry = dict(entry)
        node = str(entry.get("node", ""))
        entry["node"] = "IMAGE" + node[len(device):] if node.startswith(device) else node
        if "uuid" in entry:
            entry["uuid"] = MASK
        parts.append(entry)
    table["partitions"] = parts
    return {"partitiontable": table}


# --- filesystems --------------------------------------------------------------------


def mkfs_argv(part: Partition, device: str) -> list[str]:
    label = LABELS.get(part.role, part.role)
    fstype = part.fstype
    if fstype == "swap":
        return ["mkswap", "--label", label, device]
    if fstype in ("ext2", "ext3", "ext4"):
        return [f"mkfs.{fstype}", "-q", "-F", "-L", label, device]
    if fstype in ("btrfs", "xfs"):
        return [f"mkfs.{fstype}", "-q", "-f", "-L", label, device]
    if fstype == "vfat":
        return ["mkfs.vfat", "-F", str(fat_bits(part.size_bytes)), "-n", label.upper(), device]
    raise ValueError(f"no mkfs for {fstype!r}")


def make_filesystems(runner: Runner, layout: Layout, devices: dict[str, str]) -> None:
    for part in layout.partitions:
        if part.fstype:
            runner.run(mkfs_argv(part, devices[part.role]), label="mkfs",
                       what=f"making the {part.fstype} filesystem for {part.role} failed")


# --- loop devices -------------------------------------------------------------------


def partition_node(loop: str, number: int) -> str:
    return f"{loop}p{number}" if loop[-1].isdigit() else f"{loop}{number}"


@dataclass
class Loop:
    device: str
    nodes: list[str]  # partition device nodes, in partition order
    used_partx: bool = False


def _wait_for(nodes: list[str], exists: Callable[[str], bool],
              sleep: Callable[[float], None], seconds: float) -> bool:
    deadline = seconds
    while True:
        if all(exists(n) for n in nodes):
            return True
        if deadline <= 0:
            return False
        sleep(0.1)
        deadline -= 0.1


@contextlib.contextmanager
def loop_attached(runner: Runner, image: Path, count: int, *,
                  exists: Callable[[str], bool] = os.path.exists,
                  sleep: Callable[[float], None] = time.sleep,
                  udevadm: str | None = None) -> Iterator[Loop]:
    """Attach ``image`` to a loop device with its ``count`` partitions visible.

    Kernels with partition-table support show /dev/loopNpM after --partscan;
    without it (or with no udev to create the nodes quickly), partx adds them.
    Teardown removes what partx added and detaches, also on failure.
    """
    udevadm = udevadm if udevadm is not None else (shutil.which("udevadm") or "")
    try:
        result = runner.run(["losetup", "--find", "--show", "--partscan", str(image)],
                            capture=True, what=f"attaching {image} to a loop device failed")
    except BaseException:
        _detach_leftovers(runner, image)
        raise
    loop = Loop(result.stdout.strip(), [])
    loop.nodes = [partition_node(loop.device, n) for n in range(1, count + 1)]
    log.debug("%s is on %s", image, loop.device)
    try:
        if udevadm:
            runner.run([udevadm, "settle", "--timeout=10"], check=False, label="udevadm")
        if not _wait_for(loop.nodes, exists, sleep, 2.0):
            log.debug("no partition nodes after --partscan; adding them with partx")
            loop.used_partx = True
            runner.run(["partx", "--add", loop.device],
                       what=f"adding the partitions of {loop.device} failed")
            if not _wait_for(loop.nodes, exists, sleep, 5.0):
                missing = [n for n in loop.nodes if not exists(n)]
                raise BuildError(f"the partitions of {loop.device} did not appear: "
                                 f"{', '.join(missing)}")
        yield loop
    finally:
        _detach(runner, loop)


def _detach(runner: Runner, loop: Loop) -> None:
    if loop.used_partx:
        runner.run(["partx", "--delete", loop.device], check=False, label="partx")
    result = runner.run(["losetup", "--detach", loop.device], check=False, label="losetup")
    if result.returncode != 0:
        log.error("could not detach %s (%s)", loop.device, " ".join(result.tail[-2:]))


def _detach_leftovers(runner: Runner, image: Path) -> None:
    """After an interrupted attach: detach whatever loop device holds ``image``."""
    result = runner.run(["losetup", "--noheadings", "--output", "NAME", "--associated",
                         str(image)], capture=True, check=False, label="losetup")
    for device in result.stdout.split():
        _detach(runner, Loop(device, [], used_partx=True))
