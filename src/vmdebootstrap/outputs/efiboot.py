"""The ISO's UEFI boot: the loaders in /EFI/boot and the FAT image El Torito
points at (boot/grub/efi.img, also the EFI system partition of the ISO
written raw to a disk).

The loaders are GRUB images built here with grub-mkimage from the host's
modules; where the host has none for a platform (arm64-efi on an amd64
host: grub-efi-arm64-bin exists only for arm64), Debian's own monolithic
CD grub from the target suite's package, fetched through the helper apt
and never run; with Secure Boot, Debian's signed shim and grub
(vmdebootstrap.outputs.signed) in place of the image they stand for.  All
of them read /boot/grub/grub.cfg of the ISO.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.helper_apt import HelperApt
from vmdebootstrap.host.run import Runner
from vmdebootstrap.intent.plan import IsoSpec
from vmdebootstrap.outputs import isomenu
from vmdebootstrap.outputs.signed import archive_of, fetch_signed_boot

log = logging.getLogger("vmdebootstrap.outputs.efiboot")

GRUB_LIB = Path("/usr/lib/grub")
EFI_PREFIX = "/EFI/boot"

# Modules built into the EFI GRUB image (the prefix holds no modules).
GRUB_MODULES = (
    "part_gpt", "part_msdos", "fat", "iso9660", "normal", "configfile", "linux", "search",
    "search_fs_file", "search_fs_uuid", "search_label", "echo", "test", "all_video",
    "efi_gop", "efi_uga", "video_bochs", "video_cirrus", "font", "gfxterm",
    "gfxterm_background", "png", "serial", "terminal", "terminfo", "sleep", "reboot",
    "halt", "ls", "cat", "gzio", "loadenv", "regexp", "chain",
)


@dataclass(frozen=True)
class EfiTarget:
    grub_format: str
    efi_name: str
    package: str  # the modules, and Debian's monolithic images
    required: bool = True

    @property
    def cd_image(self) -> str:
        """Debian's monolithic grub for CDs in ``package`` (gcdaa64.efi for
        bootaa64.efi): its built-in config finds the medium by /.disk/info
        and reads /boot/grub/grub.cfg there."""
        name = "gcd" + self.efi_name.removeprefix("boot")
        return f"usr/lib/grub/{self.grub_format}/monolithic/{name}"


def host_has_modules(target: EfiTarget, grub_lib: Path = GRUB_LIB) -> bool:
    return (grub_lib / target.grub_format / "linux.mod").is_file()


def grub_modules(available: set[str]) -> list[str]:
    return [m for m in GRUB_MODULES if m in available]


def grub_mkimage_argv(grub_format: str, output: Path, modules: Sequence[str],
                      grub_lib: Path = GRUB_LIB) -> list[str]:
    return ["grub-mkimage", "--directory", str(grub_lib / grub_format), "--format", grub_format,
            "--prefix", EFI_PREFIX, "--output", str(output), *modules]


def efi_image_size_kib(payload_bytes: int) -> int:
    """FAT12/16 image large enough for the payload plus FAT overhead."""
    kib = payload_bytes // 1024 + payload_bytes // 10240 + 512
    return max(1440, -(-kib // 64) * 64)


def efi_serial(epoch: int | None) -> str:
    """FAT volume serial: fixed for reproducible builds, else random."""
    value = (epoch & 0xFFFFFFFF) if epoch is not None else int.from_bytes(os.urandom(4), "big")
    return f"{value:08X}"


def efi_image_argvs(image: Path, size_kib: int, files: Mapping[str, Path], serial: str,
                    reproducible: bool) -> list[list[str]]:
    """mkfs.vfat + mmd + mcopy; ``files`` maps FAT paths (``EFI/boot/x``) to sources."""
    mkfs = ["mkfs.vfat", "-C", "-n", "EFIBOOT", "-i", serial]
    if reproducible:
        mkfs.append("--invariant")
    argvs = [[*mkfs, str(image), str(size_kib)]]
    dirs = sorted({str(Path(p).parent) for p in files} - {"."})
    parents: list[str] = []
    for d in dirs:
        parts = Path(d).parts
        parents += ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for d in sorted(set(parents), key=lambda p: (p.count("/"), p)):
        argvs.append(["mmd", "-i", str(image), f"::/{d}"])
    for dest, src in sorted(files.items()):
        argvs.append(["mcopy", "-m", "-i", str(image), str(src), f"::/{dest}"])
    return argvs


def efi_boot_files(runner: Runner, spec: IsoSpec, targets: Sequence[EfiTarget], root: Path,
                   marker: str, scratch: Path) -> dict[str, Path]:
    """Write /EFI/boot under the ISO's ``root``; return its files by FAT path."""
    efi_dir = root / EFI_PREFIX.lstrip("/")
    efi_dir.mkdir(parents=True, exist_ok=True)
    # Read by our GRUB images, and by Debian's only when they find no
    # /boot/grub/grub.cfg: both then look for this ISO's own marker.
    cfg = efi_dir / "grub.cfg"
    cfg.write_text(isomenu.efi_search_cfg(marker), encoding="utf-8")
    files = {"grub.cfg": cfg}
    apt = HelperApt(runner, scratch / "apt", spec.arch, archive_of(spec)) if spec.mirror else None
    signed = fetch_signed_boot(runner, spec, scratch / "signed", apt) if spec.secure_boot \
        else None
    for name, src in (signed or {}).items():
        shutil.copyfile(src, efi_dir / name)
        files[name] = efi_dir / name
    for target in targets:
        if target.efi_name in files:
            continue  # shim's
        image = efi_dir / target.efi_name
        if host_has_modules(target):
            moddir = GRUB_LIB / target.grub_format
            modules = grub_modules({p.stem for p in moddir.glob("*.mod")})
            runner.run(grub_mkimage_argv(target.grub_format, image, modules),
                       what=f"building the {target.grub_format} GRUB image")
        elif apt is not None and (found := debian_cd_grub(apt, target, scratch)):
            shutil.copyfile(found, image)
        elif target.required:  # missing_requirements refuses this before the build
            raise BuildError(f"no {target.grub_format} GRUB for the ISO: install "
                             f"{target.package} or build from a mirror that has it")
        else:
            continue
        files[target.efi_name] = image
    return {f"{EFI_PREFIX.lstrip('/')}/{name}": path for name, path in files.items()}


def debian_cd_grub(apt: HelperApt, target: EfiTarget, scratch: Path) -> Path | None:
    """Debian's monolithic CD grub of ``target`` from the suite's package for
    the ISO's architecture; None (said once) for an optional target the
    suite lacks.  Nothing in it runs on the host."""
    debs = scratch / f"grub-{target.grub_format}"
    apt.update()
    if apt.download([target.package], debs):
        if target.required:
            raise BuildError(f"{apt.archive.suite} on the build's mirror has no "
                             f"{target.package} for {apt.arch}: the ISO has no "
                             f"{target.grub_format} boot loader")
        log.info("%s has no %s for %s: the ISO has no %s", apt.archive.suite, target.package,
                 apt.arch, target.efi_name)
        return None
    unpacked = debs / "unpacked"
    apt.unpack(sorted(debs.glob("*.deb")), unpacked)
    image = unpacked / target.cd_image
    if not image.is_file():
        raise BuildError(f"{target.package} for {apt.arch} has no {target.cd_image} "
                         "(has Debian's packaging changed?)")
    log.info("UEFI %s: Debian's %s from %s", target.efi_name, image.name, target.package)
    return image


def make_efi_image(runner: Runner, image: Path, files: Mapping[str, Path],
                   epoch: int | None) -> Path:
    """The FAT image of ``files``; with an epoch, its bytes depend on nothing else
    (mcopy -m keeps the files' mtimes, set to the epoch here)."""
    if epoch is not None:
        for src in files.values():
            os.utime(src, (epoch, epoch))
    env = {"SOURCE_DATE_EPOCH": str(epoch)} if epoch is not None else {}
    size = efi_image_size_kib(sum(p.stat().st_size for p in files.values()))
    for argv in efi_image_argvs(image, size, files, efi_serial(epoch), epoch is not None):
        runner.run(argv, env=env, what="building the EFI boot image")
    return image
