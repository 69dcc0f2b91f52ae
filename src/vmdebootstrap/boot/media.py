"""What is being booted: an ISO (booted as a CD) or a raw or qcow2 disk, and
which firmware (BIOS, UEFI or both) its first sectors say it is made for;
an ISO whose UEFI loader is signed is made for Secure Boot too."""

from __future__ import annotations

import shutil
import struct
import uuid
from pathlib import Path

from vmdebootstrap.boot.guests import UEFI_SB_FIRMWARE
from vmdebootstrap.boot.qemu import BootTestRefused, scratch_dir
from vmdebootstrap.host.run import Runner

ESP_TYPE_GUID = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").bytes_le
HEADER_BYTES = 64 * 1024
# The loader UEFI firmware starts from removable media, by architecture.
EFI_LOADERS = {"amd64": "/EFI/boot/bootx64.efi", "i386": "/EFI/boot/bootia32.efi",
               "arm64": "/EFI/boot/bootaa64.efi"}


# What the first sectors of a bootable file start with.
QCOW2_MAGIC = b"QFI\xfb"                 # at 0
ISO9660_MAGIC = (0x8001, b"CD001")       # the primary volume descriptor, sector 16
MBR_SIGNATURE = (510, b"\x55\xaa")
GPT_SIGNATURE = (512, b"EFI PART")       # LBA 1, for a GPT without a protective MBR
_KINDS = {"qcow2": "a qcow2 image", "iso": "an ISO 9660 image",
          "disk": "a disk image with a partition table"}


def _at(header: bytes, where: tuple[int, bytes]) -> bool:
    offset, magic = where
    return header[offset:offset + len(magic)] == magic


def contents(header: bytes) -> set[str]:
    """What the first sectors say the file holds: 'qcow2', 'iso' (ISO 9660)
    and/or 'disk' (an MBR or GPT partition table); a hybrid ISO is both
    'iso' and 'disk'; empty for anything else."""
    if header[:len(QCOW2_MAGIC)] == QCOW2_MAGIC:
        return {"qcow2"}
    found = {"iso"} if _at(header, ISO9660_MAGIC) else set()
    if _at(header, MBR_SIGNATURE) or _at(header, GPT_SIGNATURE):
        found.add("disk")
    return found


def describe_contents(kinds: set[str]) -> str:
    if kinds == {"iso", "disk"}:
        return "a hybrid ISO (an ISO 9660 image with a partition table)"
    return " and ".join(_KINDS[k] for k in sorted(kinds)) or "not a bootable image"


def detect_media(path: Path, header: bytes) -> str:
    """'iso' (boot as a CD), 'qcow2' or 'raw' (boot as a disk), from the
    contents; the name decides only for a hybrid ISO (both a CD and a disk):
    copied to a file not named ``.iso`` it is booted as a disk."""
    kinds = contents(header)
    if "qcow2" in kinds:
        return "qcow2"
    if kinds == {"iso"}:
        return "iso"
    # a hybrid ISO, or contents not checked (check_image refuses those)
    hybrid_or_unknown = "iso" in kinds or not kinds
    return "iso" if hybrid_or_unknown and path.suffix.lower() == ".iso" else "raw"


def _media_problem(path: Path, media: str, kinds: set[str]) -> str | None:
    """Why --media ``media`` contradicts what ``path`` holds, if it does."""
    wanted = {"iso": "iso", "raw": "disk", "qcow2": "qcow2"}[media]
    if wanted in kinds:
        return None
    hint = {"iso": "boot it as a CD with --media iso", "disk": "boot it as a disk with "
            "--media raw", "qcow2": "boot it with --media qcow2"}
    other = sorted(kinds)[0]
    return (f"--media {media}, but {path} is {describe_contents(kinds)}, not "
            f"{_KINDS[wanted]}: {hint[other]}, or leave --media out")


def check_image(path: Path, media: str | None = None) -> tuple[str, bytes]:
    """(media to boot ``path`` as, its first HEADER_BYTES) after checking that
    it is a readable ISO, disk image with a partition table or qcow2, and
    that ``media`` (--media) agrees with its contents; BootTestRefused says why not."""
    if not path.exists():
        raise BootTestRefused(f"{path} does not exist")
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file"
        raise BootTestRefused(f"{path} is {what}: the boot test boots image files")
    try:
        header = read_header(path)
    except OSError as e:
        raise BootTestRefused(f"cannot read {path}: {e.strerror or e}") from e
    kinds = contents(header)
    if not kinds:
        raise BootTestRefused(f"{path} is not an ISO, a disk image with a partition table, "
                              "or a qcow2 image")
    problem = _media_problem(path, media, kinds) if media else None
    if problem:
        raise BootTestRefused(problem)
    return media or detect_media(path, header), header


def esp_offset(header: bytes) -> int | None:
    """Byte offset of a disk's EFI system partition (GPT or MBR type 0xEF)."""
    if len(header) < 512 or header[510:512] != b"\x55\xaa":
        return None
    if header[512:520] == b"EFI PART":
        entries_lba = int.from_bytes(header[512 + 72:512 + 80], "little")
        count = int.from_bytes(header[512 + 80:512 + 84], "little")
        size = int.from_bytes(header[512 + 84:512 + 88], "little")
        for i in range(min(count, 256)):
            off = entries_lba * 512 + i * size
            if off + 48 <= len(header) and header[off:off + 16] == ESP_TYPE_GUID:
                return int.from_bytes(header[off + 32:off + 40], "little") * 512
    for i in range(4):  # an MBR, or a hybrid ISO's MBR beside its GPT
        entry = header[446 + 16 * i:446 + 16 * (i + 1)]
        if entry[4] == 0xEF:
            return int.from_bytes(entry[8:12], "little") * 512
    return None


def disk_firmwares(header: bytes) -> list[str]:
    """Which firmware a raw disk's first sectors say it is made for."""
    if len(header) < 512 or header[510:512] != b"\x55\xaa":
        return ["bios"]
    esp = esp_offset(header) is not None
    bios = any(header[:440])
    if esp and bios:
        return ["bios", "uefi"]
    return ["uefi"] if esp else ["bios"]


def default_firmwares(media: str, arch: str, header: bytes, *, signed: bool = False
                      ) -> list[str]:
    """``signed``: the UEFI loader carries a signature (efi_loader_signed), so
    the boot test also boots with Secure Boot, where it has firmware for it."""
    secure = ["uefi-sb"] if signed and arch in UEFI_SB_FIRMWARE else []
    if arch == "arm64":
        return ["uefi", *secure]
    if media == "iso":
        return ["bios", "uefi", *secure]
    found = disk_firmwares(header)
    return [*found, *secure] if "uefi" in found else found


def pe_signed(head: bytes) -> bool:
    """Whether the PE image starting with ``head`` (its first KiB do) has an
    Authenticode signature: a certificate table in its data directories."""
    if len(head) < 0x40 or head[:2] != b"MZ":
        return False
    (pe,) = struct.unpack_from("<I", head, 0x3C)
    if len(head) < pe + 24 + 2 or head[pe:pe + 4] != b"PE\0\0":
        return False
    optional = pe + 24
    (magic,) = struct.unpack_from("<H", head, optional)
    # The data directories follow 96 (PE32) or 112 (PE32+) bytes of the
    # optional header; the certificate table is the fifth.
    entry = optional + {0x10B: 96, 0x20B: 112}.get(magic, 0) + 4 * 8
    if magic not in (0x10B, 0x20B) or len(head) < entry + 8:
        return False
    _, size = struct.unpack_from("<II", head, entry)
    return size > 0


def efi_loader_signed(path: Path, media: str, arch: str, runner: Runner) -> bool:
    """Whether the removable-media UEFI loader is signed: an ISO's read with
    xorriso, a raw disk's from its EFI system partition with mtools (qcow2
    disks are not looked into)."""
    loader = EFI_LOADERS.get(arch)
    if loader is None or media == "qcow2":
        return False
    tool = "xorriso" if media == "iso" else "mcopy"
    if shutil.which(tool) is None:
        return False
    with scratch_dir() as tmp:
        out = tmp / "loader.efi"
        argv = loader_copy_argv(path, media, loader, out)
        if argv is None:
            return False
        runner.run(argv, check=False,
                   env={"MTOOLS_SKIP_CHECK": "1"}, what=f"reading {loader} from {path}")
        if not out.is_file():
            return False
        with out.open("rb") as f:
            return pe_signed(f.read(4096))


def loader_copy_argv(path: Path, media: str, loader: str, out: Path) -> list[str] | None:
    """The argv that copies ``loader`` out of ``path`` (None: a disk with no ESP)."""
    if media == "iso":
        return ["xorriso", "-osirrox", "on", "-indev", str(path), "-extract", loader, str(out)]
    offset = esp_offset(read_header(path))
    if offset is None:
        return None
    # mtools reads the FAT at an offset into the disk: no loop device, no mount
    return ["mcopy", "-n", "-i", f"{path}@@{offset}", f"::{loader}", str(out)]


def read_header(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(HEADER_BYTES)


def disk_header(path: Path, media: str, runner: Runner) -> bytes:
    """The first sectors as the guest sees them (qcow2 decoded by qemu-img)."""
    if media != "qcow2":
        return read_header(path)
    if shutil.which("qemu-img") is None:
        return b""
    with scratch_dir() as tmp:
        out = tmp / "head.raw"
        runner.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", f"bs={HEADER_BYTES}",
                    "count=1", f"if={path}", f"of={out}"], what=f"reading {path}")
        return out.read_bytes() if out.is_file() else b""
