"""Disk images: UEFI, the bootloader and its packages, filesystems, sizes and
the partition layout."""

from __future__ import annotations

from vmdebootstrap.intent.plan import DiskSpec, ImageSpec
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.outputs.bootloaders import bootloader_packages
from vmdebootstrap.outputs.isomenu import validate_kernel_param
from vmdebootstrap.outputs.partitions import layout_problems
from vmdebootstrap.outputs.signed import SIGNED_BOOT
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.target import Target

UEFI_ARCHES = ("amd64", "i386", "arm64", "armhf")
# Where grub-pc and extlinux boot a BIOS machine.
BIOS_ARCHES = ("amd64", "i386")
MiB = 1024**2
MIN_SWAP = 256 * MiB
# mkfs.vfat makes FAT32, which UEFI firmware reads, from 32 MiB up; the ESP
# holds shim and grub (a few MiB) and needs room for their updates.
MIN_ESP = 32 * MiB
# Debian signs its boot chain from buster on.
NO_SECURE_BOOT = ("wheezy", "jessie", "stretch")


def check_bootloader(s: Settings, arch: str, output: str, found: Findings) -> Settings:
    """The bootloader an image gets, decided once: grub by default, but on an
    architecture where vmdebootstrap installs none (arm boards boot u-boot,
    which the hook installs, as with 1.x's board examples) the image gets
    none unless --use-uefi asks for UEFI grub.  Naming --grub or --extlinux
    there is an error."""
    if output != "image" or s.use_uefi or arch in BIOS_ARCHES or arch == "arm64":
        return s  # arm64 images need --use-uefi: image_problems says so
    asked = "--grub" if s.grub else "--extlinux" if s.extlinux else None
    if asked:
        found.problems.append(
            f"{asked}: vmdebootstrap installs no BIOS bootloader on {arch}; use --use-uefi "
            "(UEFI grub) where the board has UEFI, or install u-boot or flash-kernel in the "
            "customisation hook")
        return s
    found.notes.append(f"--image for {arch}: no bootloader is installed (there is none for "
                       f"{arch} without --use-uefi); the customisation hook must install one "
                       "(u-boot or flash-kernel)")
    return s.with_values(grub=False, extlinux=False)


def check_disk(s: Settings, target: Target, output: str, variant: str | None,
               found: Findings) -> None:
    problems = []
    if output == "image":  # other outputs ignore these options (plan.ignored says so)
        problems += uefi_problems(s, target) + image_problems(s, target) + \
            size_problems(s, variant) + mbr_problems(s, found)
    elif s.convert_qcow2 and output != "none":
        problems.append("--convert-qcow2 only applies to --image")
    found.problems.extend(problems)
    if output == "image" and target.known_arch and not problems:
        found.problems.extend(layout_problems(DiskSpec.from_settings(s, target.arch)))


def uefi_problems(s: Settings, target: Target) -> list[str]:
    if not s.use_uefi:
        return []
    arch, problems = target.arch, []
    if arch not in UEFI_ARCHES:
        problems.append(f"--use-uefi: no UEFI grub for {arch} (UEFI is supported on "
                        f"{', '.join(UEFI_ARCHES)})")
    if s.bootloader != "grub":
        problems.append("--use-uefi needs --grub (not --extlinux or --no-grub)")
    if s.bootoffset:
        problems.append("--bootoffset cannot be combined with --use-uefi")
    if s.esp_size < MIN_ESP:
        problems.append(f"--esp-size: {s.esp_size} bytes is too small for the EFI system "
                        "partition: at least 32MiB, as FAT32 (what UEFI firmware reads) "
                        "starts there, and it holds shim and grub; e.g. --esp-size 128MiB")
    if target.codename == "wheezy" and arch != "amd64":
        problems.append(f"--use-uefi: wheezy supports UEFI only on amd64, not {arch}")
    return problems


def image_problems(s: Settings, target: Target) -> list[str]:
    """What the bootloader and filesystems of an image cannot do."""
    problems = []
    if target.arch == "arm64" and not s.use_uefi:
        problems.append("--image for arm64 needs --use-uefi (arm64 boots with UEFI)")
    if target.codename == "wheezy" and s.roottype == "ext4":
        problems.append("--roottype ext4: wheezy images using ext4 will not boot; "
                        "use --roottype ext3")
    if s.bootloader == "extlinux" and s.roottype == "btrfs":
        problems.append("--roottype btrfs cannot be used with --extlinux")
    if s.swap and s.swap < MIN_SWAP:  # 0 is no swap, 1.x's default
        problems.append("--swap: at least 256MiB")
    for param in s.kernel_params:
        problem = validate_kernel_param(param)
        if problem:
            problems.append(f"--kernel-append: {problem}")
    return problems


def mbr_problems(s: Settings, found: Findings) -> list[str]:
    """--mbr writes syslinux's MBR boot code, which starts extlinux.  1.x's
    default bootloader was extlinux, so a 1.x --mbr alone meant extlinux:
    here it would silently build a grub image instead.  With --grub named
    (as 1.x scripts also did), grub writes its own boot code: a warning."""
    if not s.mbr or s.bootloader != "grub":
        return []
    if s.grub:
        found.notes.append("--mbr is ignored with --grub: grub writes its own boot code "
                           "(--mbr writes extlinux's)")
        return []
    return ["--mbr writes extlinux's MBR boot code, but this image boots with grub (the "
            "default bootloader; 1.x's was extlinux), which writes its own: add --extlinux, "
            "or leave out --mbr"]


def size_problems(s: Settings, variant: str | None) -> list[str]:
    """--size against a rough floor (bookworm: ~250 MB minbase, ~400 MB default,
    ~300 MB for a kernel); a build that still fills the image says so clearly."""
    need = (250 if variant == "minbase" else 400) * MiB
    if not s.no_kernel:
        need += 300 * MiB
    extra = (s.bootsize or 0) + (s.swap or 0) + (s.bootoffset or 0)
    extra += s.esp_size if s.use_uefi else 0
    total = need + extra
    if s.size >= total:
        return []
    return [f"--size: {s.size} bytes is too small; this build needs at least "
            f"{-(-total // MiB)} MiB (e.g. --size {-(-total // 10**9)}G)"]


def image_secure_boot(s: Settings, arch: str, codename: str) -> bool:
    """Whether a UEFI image gets Debian's signed shim and grub (--secure-boot,
    on by default), installed from the mirror like any package."""
    return (s.secure_boot and s.use_uefi and s.bootloader == "grub" and arch in SIGNED_BOOT
            and codename not in NO_SECURE_BOOT)


def boot_packages(s: Settings, arch: str, output: str, codename: str = "") -> list[str]:
    """What an image's bootloader and filesystems need in the root."""
    if output != "image" or (s.use_uefi and arch not in UEFI_ARCHES):
        return []  # no UEFI grub for arch: uefi_problems says so
    signed = SIGNED_BOOT[arch].packages if image_secure_boot(s, arch, codename) else ()
    return [*bootloader_packages(arch, s.bootloader, s.use_uefi, s.roottype,
                                 s.boottype if s.bootsize else None), *signed]


def image_spec_of(s: Settings, arch: str, output: str, codename: str = "") -> ImageSpec | None:
    if output != "image":
        return None
    return ImageSpec(DiskSpec.from_settings(s, arch), mbr=s.mbr, sparse=s.sparse,
                     qcow2=s.convert_qcow2, kernel_append=s.kernel_params,
                     secure_boot=image_secure_boot(s, arch, codename))
