"""Build a hybrid BIOS+UEFI live ISO from a ``--squash`` directory.

The ISO follows the Debian live layout (``/live/vmlinuz``,
``/live/initrd.img``, ``/live/filesystem.squashfs``).  BIOS boots isolinux
from El Torito; UEFI boots GRUB from ``/boot/grub/efi.img`` (a small FAT image
that is both the El Torito EFI image and, with the ISO written raw to a disk,
the EFI system partition; outputs/efiboot.py).  With Secure Boot the UEFI
loaders there are Debian's signed shim and grub (outputs/signed.py); BIOS
boot is the same either way.  ``/sha256sum.txt`` lists the ISO's files
for live-boot's ``verify-checksums`` (the menus' "verify the medium"
entry).  The argv of every tool is built by a small pure function so the
layout can be checked without root.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vmdebootstrap.errors import BuildError, NoSpace, UsageError
from vmdebootstrap.host.digest import Digests, sha256sums, tree_sha256
from vmdebootstrap.host.progress import phase
from vmdebootstrap.host.run import Runner, signals_held
from vmdebootstrap.intent.plan import IsoSpec
from vmdebootstrap.outputs import isomenu
from vmdebootstrap.outputs.efiboot import (
    GRUB_LIB,
    EfiTarget,
    efi_boot_files,
    host_has_modules,
    make_efi_image,
)
from vmdebootstrap.outputs.installer import stage_installer
from vmdebootstrap.outputs.layered import FILES as LAYERED_FILES
from vmdebootstrap.outputs.manifest import NAME as MANIFEST
from vmdebootstrap.outputs.sbom import SQUASH_SBOM
from vmdebootstrap.outputs.signed import SIGNED_BOOT

log = logging.getLogger("vmdebootstrap.outputs.iso")

ISOLINUX_DIR = Path("/usr/lib/ISOLINUX")
SYSLINUX_BIOS_DIR = Path("/usr/lib/syslinux/modules/bios")
GRUB_FONT = Path("/usr/share/grub/unicode.pf2")

SQUASH_FILES = ("filesystem.squashfs", "vmlinuz", "initrd.img")

# live-boot's verify-checksums (lib/live/boot/0030-verify-checksums) looks
# in the medium's root for SHA512SUMS, sha512sum.txt, ... SHA256SUMS,
# sha256sum.txt, drops '#' lines and runs the initramfs's /bin/sha256sum -c
# there (busybox's applet: live-boot's own hook copies in only md5sum).
# live-build writes sha256sum.txt with ./ paths; so do we.
ISO_SUMS = "sha256sum.txt"
# Files whose bytes on the ISO are not the staged ones: xorriso patches the
# boot info table into isolinux.bin (-boot-info-table), as live-build's
# list also knows.  The boot catalog is made by xorriso and never staged.
PATCHED_ON_ISO = ("isolinux/isolinux.bin",)


@dataclass(frozen=True)
class ArchInfo:
    bios: bool
    efi: tuple[EfiTarget, ...]


ARCHES: Mapping[str, ArchInfo] = {
    "amd64": ArchInfo(True, (
        EfiTarget("x86_64-efi", "bootx64.efi", "grub-efi-amd64-bin"),
        # 64-bit kernels on 32-bit UEFI (mixed mode), when the modules exist.
        EfiTarget("i386-efi", "bootia32.efi", "grub-efi-ia32-bin", required=False),
    )),
    "i386": ArchInfo(True, (EfiTarget("i386-efi", "bootia32.efi", "grub-efi-ia32-bin"),)),
    "arm64": ArchInfo(False, (EfiTarget("arm64-efi", "bootaa64.efi", "grub-efi-arm64-bin"),)),
}


_VOLID_RE = re.compile(r"[A-Z0-9_]{1,32}")


def validate_volume_id(volume_id: str) -> str | None:
    if not _VOLID_RE.fullmatch(volume_id):
        return (f"ISO volume id {volume_id!r} must be 1-32 characters of A-Z, 0-9 and '_'")
    return None


def validate_spec(spec: IsoSpec) -> list[str]:
    """Every problem with ``spec``, found before anything is written."""
    problems: list[str] = []
    if spec.arch not in ARCHES:
        problems.append(f"ISO architecture {spec.arch!r} is not supported "
                        f"(choose from {', '.join(ARCHES)})")
    if not re.fullmatch(r"[a-z][a-z0-9-]*", spec.distribution):
        problems.append(f"distribution {spec.distribution!r} is not a Debian codename")
    checks = (validate_volume_id(spec.volume_id), isomenu.validate_menu_title(spec.menu_title),
              *map(isomenu.validate_kernel_param, spec.kernel_append))
    for problem in checks:
        if problem:
            problems.append(problem)
    for name, path in (("splash", spec.splash), ("preseed", spec.preseed)):
        if path is not None and not path.is_file():
            problems.append(f"--{name} file {path} does not exist")
    if spec.splash is not None and spec.splash.is_file():
        with spec.splash.open("rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                problems.append(f"--splash file {spec.splash} is not a PNG image")
    if spec.preseed is not None and not spec.installer:
        problems.append("a preseed file needs the installer entries (--installer)")
    if spec.installer and not spec.mirror:
        problems.append("the installer entries need a mirror to fetch the installer from")
    if spec.secure_boot and spec.arch not in SIGNED_BOOT:
        problems.append(f"Secure Boot ISOs are not supported for {spec.arch} "
                        f"(only {', '.join(SIGNED_BOOT)})")
    if spec.secure_boot and not spec.mirror:
        problems.append("Secure Boot needs a mirror to fetch the signed boot loaders from")
    if spec.source_date_epoch is not None and spec.source_date_epoch < 0:
        problems.append("SOURCE_DATE_EPOCH must not be negative")
    return problems


def missing_requirements(spec: IsoSpec, *, grub_lib: Path = GRUB_LIB,
                         isolinux_dir: Path = ISOLINUX_DIR,
                         bios_modules: Path = SYSLINUX_BIOS_DIR,
                         which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """Host tools and files the build needs, as 'what (package)' strings.
    A UEFI platform whose GRUB modules the host lacks takes Debian's CD grub
    from the build's mirror instead (efiboot.debian_cd_grub)."""
    missing = [f"{tool} ({pkg})" for tool, pkg in (
        ("xorriso", "xorriso"), ("mkfs.vfat", "dosfstools"), ("mmd", "mtools"),
        ("mcopy", "mtools"),
    ) if which(tool) is None]
    info = ARCHES.get(spec.arch)
    efi = info.efi if info else ()
    fetched = [t for t in efi if not host_has_modules(t, grub_lib)]
    tools = [("gpgv", "gpgv"), ("dpkg-deb", "dpkg")] if spec.installer else []
    if spec.secure_boot or (spec.mirror and fetched):
        tools += [("apt-get", "apt"), ("dpkg-deb", "dpkg")]
    if len(fetched) < len(efi):
        tools.append(("grub-mkimage", "grub-common"))
    missing += [f"{tool} ({pkg})" for tool, pkg in dict(tools).items()
                if which(tool) is None]
    if not spec.mirror:
        missing += [f"{grub_lib / t.grub_format} ({t.package})" for t in fetched if t.required]
    if info is not None and info.bios:
        for path, pkg in ((isolinux_dir / "isolinux.bin", "isolinux"),
                          (isolinux_dir / "isohdpfx.bin", "isolinux"),
                          (bios_modules / "ldlinux.c32", "syslinux-common")):
            if not path.is_file():
                missing.append(f"{path} ({pkg})")
    return missing


def epoch_time(epoch: int | None) -> dt.datetime:
    if epoch is None:
        return dt.datetime.now(dt.UTC)
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def iso_marker(spec: IsoSpec) -> str:
    """Path of the unique file GRUB searches for to find the ISO's root."""
    if spec.source_date_epoch is None:
        ident = uuid.uuid4()
    else:
        ident = uuid.uuid5(uuid.NAMESPACE_URL, f"vmdebootstrap-iso:{spec.volume_id}:"
                           f"{spec.arch}:{spec.distribution}:{spec.source_date_epoch}")
    return f"/.disk/id/{ident}"


def graft_escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace("=", "\\=")


def xorriso_argv(*, spec: IsoSpec, root: Path, grafts: Mapping[str, Path], output: Path,
                 bios: bool, isolinux_dir: Path = ISOLINUX_DIR) -> list[str]:
    """xorriso -as mkisofs command line for a hybrid ISO (as debian-cd does it)."""
    argv = ["xorriso", "-as", "mkisofs", "-iso-level", "3", "-full-iso9660-filenames",
            "-r", "-J", "-joliet-long", "-V", spec.volume_id, "-o", str(output)]
    if spec.source_date_epoch is not None:
        stamp = epoch_time(spec.source_date_epoch).strftime("%Y%m%d%H%M%S00")
        argv += [f"--modification-date={stamp}",
                 "--set_all_file_dates", f"={spec.source_date_epoch}"]
    if bios:
        argv += ["-isohybrid-mbr", str(isolinux_dir / "isohdpfx.bin"),
                 "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
                 "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
                 "-eltorito-alt-boot"]
    else:
        argv += ["-c", "boot/grub/boot.cat"]
    argv += ["-e", "boot/grub/efi.img", "-no-emul-boot"]
    argv += ["-isohybrid-gpt-basdat"] if bios else ["-append_partition", "2", "0xef",
                                                    str(root / "boot/grub/efi.img")]
    argv += ["-graft-points", f"/={graft_escape(str(root))}"]
    argv += [f"{graft_escape(dest)}={graft_escape(str(src))}"
             for dest, src in sorted(grafts.items())]
    return argv


def xorriso_env(epoch: int | None) -> dict[str, str]:
    return {"SOURCE_DATE_EPOCH": str(epoch)} if epoch is not None else {}


# ---- the build ------------------------------------------------------------------------

@dataclass
class _Layout:
    root: Path
    grafts: dict[str, Path] = field(default_factory=dict)
    efi_files: dict[str, Path] = field(default_factory=dict)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)


def _stage(runner: Runner, spec: IsoSpec, squash_dir: Path, scratch: Path) -> _Layout:
    info = ARCHES[spec.arch]
    lay = _Layout(root=scratch / "root")
    root = lay.root
    for name in (*SQUASH_FILES, *LAYERED_FILES, "filesystem.packages", MANIFEST, SQUASH_SBOM):
        if (squash_dir / name).is_file():
            lay.grafts[f"live/{name}"] = (squash_dir / name).resolve()

    marker = iso_marker(spec)
    date = epoch_time(spec.source_date_epoch).strftime("%Y%m%d-%H:%M")
    _write(root / ".disk/info", isomenu.disk_info(spec.distribution, spec.arch, date))
    _write(root / marker.lstrip("/"), "")

    installer_dir, installer_gtk = None, False
    if spec.installer:
        # The preseed goes only into the installer's initrds: a copy on the
        # ISO would look like it is read from there, and it is not.
        installer_dir = isomenu.INSTALLER_DIRS[spec.arch]
        installer_gtk = stage_installer(runner, spec, root / installer_dir, scratch)
    entries = isomenu.menu_entries(arch=spec.arch, kernel_append=spec.kernel_append,
                                   serial_console=spec.serial_console,
                                   installer_dir=installer_dir, installer_gtk=installer_gtk,
                                   serial_tty=spec.serial_tty)
    splash = spec.splash is not None
    if info.bios:
        iso = root / "isolinux"
        _copy(ISOLINUX_DIR / "isolinux.bin", iso / "isolinux.bin")
        menu = "vesamenu.c32" if splash else "menu.c32"
        for mod in ("ldlinux.c32", "libcom32.c32", "libutil.c32", menu):
            _copy(SYSLINUX_BIOS_DIR / mod, iso / mod)
        if spec.splash:
            _copy(spec.splash, iso / "splash.png")
        _write(iso / "isolinux.cfg", isomenu.isolinux_cfg(
            entries, title=spec.menu_title, serial_console=spec.serial_console, splash=splash))
    font = splash and GRUB_FONT.is_file()
    if spec.splash:
        _copy(spec.splash, root / "boot/grub/splash.png")
    if font:
        _copy(GRUB_FONT, root / "boot/grub/fonts/unicode.pf2")
    _write(root / "boot/grub/grub.cfg", isomenu.grub_cfg(
        entries, title=spec.menu_title, serial_console=spec.serial_console,
        splash=splash, font=font))

    lay.efi_files.update(efi_boot_files(runner, spec, info.efi, root, marker, scratch))
    return lay


def iso_checksums(root: Path, grafts: Mapping[str, Path], digests: Digests) -> str:
    """sha256sum.txt: ``<hash>  ./path`` of every file on the ISO but itself
    and those xorriso changes; the grafted squash files are hashed where
    they are (through ``digests``), never copied."""
    sums = tree_sha256(root, digests, skip=(ISO_SUMS, *PATCHED_ON_ISO))
    sums.update({dest: digests.sha256(src) for dest, src in grafts.items()})
    return sha256sums({f"./{name}": digest for name, digest in sums.items()})


def build_iso(runner: Runner, spec: IsoSpec, squash_dir: Path, output: Path,
              workdir: Path, digests: Digests | None = None) -> None:
    """Write a hybrid live ISO of ``squash_dir`` to ``output`` (atomically);
    ``digests`` may know the squash files' checksums already."""
    problems = validate_spec(spec)
    missing = [f for f in SQUASH_FILES if not (squash_dir / f).is_file()]
    if missing:
        problems.append(f"{squash_dir} lacks {', '.join(missing)} (build it with --squash)")
    if not problems:
        reqs = missing_requirements(spec)
        if reqs:
            problems.append("missing host tools/files for the ISO: " + ", ".join(reqs))
    if problems:
        raise UsageError(problems)

    workdir.mkdir(parents=True, exist_ok=True)
    with signals_held():
        scratch = Path(tempfile.mkdtemp(prefix="iso-", dir=workdir))
    try:
        lay = _stage(runner, spec, squash_dir, scratch)
        make_efi_image(runner, lay.root / "boot/grub/efi.img", lay.efi_files,
                       spec.source_date_epoch)
        # Last of the staged files, so that it lists every other one.
        _write(lay.root / ISO_SUMS, iso_checksums(lay.root, lay.grafts, digests or Digests()))
        if spec.source_date_epoch is not None:
            for path in sorted(lay.root.rglob("*"), reverse=True):
                os.utime(path, (spec.source_date_epoch,) * 2, follow_symlinks=False)
        argv = xorriso_argv(spec=spec, root=lay.root, grafts=lay.grafts, output=output,
                            bios=ARCHES[spec.arch].bios)
        # xorriso refuses to write over an existing file: the staged one is empty.
        output.unlink(missing_ok=True)
        with phase("xorriso"):
            runner.run(argv, env=xorriso_env(spec.source_date_epoch), what="writing the ISO")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("wrote the ISO (%d MiB)", output.stat().st_size >> 20)


ISO_OVERHEAD = 64 * 1024 * 1024  # boot loaders, EFI image, menus; installer files are extra


def check_room_for_iso(squash_dir: Path, final: Path) -> None:
    """Refuse before xorriso starts rather than fill the disk half-way: the
    ISO is staged beside ``final`` while a previous ISO of that name stays."""
    need = sum(f.stat().st_size for f in squash_dir.iterdir() if f.is_file()) + ISO_OVERHEAD
    free = shutil.disk_usage(final.parent).free
    if free < need:
        raise NoSpace(
            f"--iso: not enough free space in {final.parent} for the ISO: {free >> 20} MiB "
            f"free, about {need >> 20} MiB needed; free some space there or write the ISO "
            "elsewhere" + (f" (the previous {final.name} is kept)" if final.exists() else ""))


# ---- checking a result ----------------------------------------------------------------

@dataclass(frozen=True)
class ElTorito:
    bios: bool
    efi: bool


def parse_el_torito(report: str) -> ElTorito:
    """Read ``xorriso -report_el_torito plain`` output."""
    bios = efi = False
    for line in report.splitlines():
        m = re.match(r"El Torito boot img\s*:\s*\d+\s+(\S+)\s+y", line)
        if m:
            bios |= m.group(1) == "BIOS"
            efi |= m.group(1) == "UEFI"
    return ElTorito(bios=bios, efi=efi)


MIN_ISO_BYTES = 16 * 1024 * 1024


def check_iso(runner: Runner, iso: Path, arch: str) -> None:
    """Raise BuildError unless ``iso`` reads back with the boot entries ``arch`` needs."""
    if not iso.is_file():
        raise BuildError(f"{iso} does not exist")
    size = iso.stat().st_size
    if size < MIN_ISO_BYTES or size % 2048:
        raise BuildError(f"{iso} has an implausible size ({size} bytes)")
    result = runner.run(["xorriso", "-indev", iso, "-report_el_torito", "plain"],
                        capture=True, what=f"reading {iso}")
    boot = parse_el_torito(result.stdout)
    info = ARCHES.get(arch)
    need_bios = info.bios if info else arch in ("amd64", "i386")
    if need_bios and not boot.bios:
        raise BuildError(f"{iso} has no BIOS El Torito boot entry")
    if not boot.efi:
        raise BuildError(f"{iso} has no EFI El Torito boot entry")
