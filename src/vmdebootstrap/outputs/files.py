"""Outputs written from a finished root: tarball, squashfs directory, lists.

These write into paths they are given; vmdebootstrap.outputs.kinds decides
which, and vmdebootstrap.host.publish renames them into place once checked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from vmdebootstrap.errors import BuildError, NoSpace
from vmdebootstrap.host.progress import phase
from vmdebootstrap.host.run import Runner

log = logging.getLogger("vmdebootstrap")

MIN_SQUASHFS = 1024 * 1024  # the live-image guide: smaller means mksquashfs failed
PKGLIST_FORMAT = "${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\n"


def tar_argv(root: Path, output: Path, name: str | None = None,
             epoch: int | None = None) -> list[str]:
    """``name``: the final file name, whose suffix picks the compressor as
    1.x's ``tar -a`` did (``output`` may be a temporary name); a name with no
    compressing suffix (outputs.kinds.TARBALL_SUFFIXES) is a plain tar."""
    name = name or output.name
    compress: list[str] = []
    if name.endswith((".gz", ".tgz", ".taz")):
        compress = ["--use-compress-program=gzip -n"]
    elif name.endswith((".xz", ".txz")):
        compress = ["--use-compress-program=xz -T0"]
    elif name.endswith((".zst", ".tzst")):
        compress = ["--use-compress-program=zstd -T0 -q"]
    elif name.endswith((".bz2", ".tbz", ".tbz2", ".tz2")):
        compress = ["--bzip2"]
    elif name.endswith((".lzma", ".tlz")):
        compress = ["--use-compress-program=xz --format=lzma"]
    stable: list[str] = []
    if epoch is not None:
        stable = [f"--mtime=@{epoch}", "--clamp-mtime",
                  "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime"]
    return ["tar", "--create", "--file", str(output), "--numeric-owner", "--xattrs",
            "--xattrs-include=*", "--acls", "--sort=name", *stable, *compress,
            "--directory", str(root), "."]


def mksquashfs_argv(root: Path, output: Path, compression: str,
                    processors: int | None = None) -> list[str]:
    """Reproducible builds need no option here: mksquashfs takes every
    timestamp from SOURCE_DATE_EPOCH in its environment (and refuses
    -mkfs-time / -all-time alongside it)."""
    comp, _, level = compression.partition(":")
    # Its progress bar stays on: the status line shows its percentage.
    argv = ["mksquashfs", str(root), str(output), "-noappend", "-comp", comp]
    if level:
        argv += ["-Xcompression-level", level]
    if comp == "xz":
        argv += ["-b", "1M"]  # live-build's choice: smaller for little extra time
    argv += ["-processors", str(processors or os.cpu_count() or 1)]
    return argv


def write_tarball(runner: Runner, root: Path, output: Path, name: str | None = None,
                  epoch: int | None = None) -> None:
    with phase("tarball"):
        runner.run(tar_argv(root, output, name, epoch), label="tar",
                   what="writing the tarball failed")


def tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total


def check_free_space(root: Path, dest: Path, ratio: float = 0.6) -> None:
    """Refuse before compressing rather than let mksquashfs fail silently."""
    need = int(tree_size(root) * ratio)
    free = shutil.disk_usage(dest).free
    if free < need:
        raise NoSpace(
            f"not enough free space in {dest}: {free // 2**20} MiB free, about "
            f"{need // 2**20} MiB needed for the squashfs; free some space or choose "
            "another output directory")


def write_squashfs(runner: Runner, root: Path, output: Path, compression: str,
                   name: str = "squashfs") -> None:
    """``name``: the phase the log times it as."""
    check_free_space(root, output.parent)
    with phase(name):
        runner.run(mksquashfs_argv(root, output, compression), label="mksquashfs",
                   what="mksquashfs failed")


def _kernel_version(name: str, prefix: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name[len(prefix):]))


def has_kernel(root: Path) -> bool:
    return any((root / "boot").glob("vmlinu[xz]-*"))


def find_kernel(root: Path) -> tuple[Path, Path]:
    """The newest kernel and its initrd in the root's /boot."""
    boot = root / "boot"
    kernels = sorted(boot.glob("vmlinu[xz]-*"), key=lambda p: _kernel_version(p.name, "vmlinuz-"))
    if not kernels:
        raise BuildError(f"no kernel in {boot}: was the kernel package installed?")
    kernel = kernels[-1]
    version = kernel.name.split("-", 1)[1]
    initrd = boot / f"initrd.img-{version}"
    if not initrd.exists():
        raise BuildError(f"no initrd for kernel {version} in {boot}")
    return kernel, initrd


def write_squash_dir(runner: Runner, root: Path, dest: Path, compression: str,
                     kernel_required: bool = True,
                     squash: Callable[[Path], None] | None = None) -> None:
    """filesystem.squashfs, the kernel and initrd (versioned and stable
    names) and filesystem.packages: what the live-image guide's --squash
    directory holds.  With --no-kernel (not ``kernel_required``) the kernel
    is copied only if the hook installed one.  ``squash(dest)``, if given,
    writes the squashfs images instead (--layered)."""
    if kernel_required or has_kernel(root):
        copy_kernel(root, dest)
    else:
        log.warning("--no-kernel: the root has no kernel, so the squash directory has none")
    write_pkglist(runner, root, dest / "filesystem.packages")
    if squash is not None:
        squash(dest)
    else:
        write_squashfs(runner, root, dest / "filesystem.squashfs", compression)


def check_squash_dir(runner: Runner, stage: Path, kernel_required: bool = True) -> None:
    """mksquashfs can exit 0 and leave junk (the live-image guide): the
    squashfs must be over 1 MiB and its superblock must read back."""
    squashfs = stage / "filesystem.squashfs"
    size = squashfs.stat().st_size if squashfs.exists() else 0
    if size < MIN_SQUASHFS:
        raise BuildError(
            f"mksquashfs wrote only {size} bytes (under 1 MiB): the squashfs is broken, "
            "probably because the disk is full")
    runner.run(["unsquashfs", "-s", str(squashfs)], capture=True,
               what="the squashfs does not read back")
    for name in ("vmlinuz", "initrd.img") if kernel_required else ():
        if not (stage / name).is_file():
            raise BuildError(f"the squash directory lacks {name}")


def check_tarball(runner: Runner, tarball: Path, name: str) -> None:
    """The tarball must list back whole (a truncated stream fails here),
    through the compressor its name picked; a plain tar (any other name)
    is listed as it is."""
    argv = tar_argv(Path("/"), tarball, name)
    compress = [a for a in argv if a.startswith("--use-compress-program") or a == "--bzip2"]
    runner.run(["tar", "--list", "--file", str(tarball), *compress], capture=True,
               what="the tarball does not read back")


def copy_kernel(root: Path, dest: Path) -> None:
    kernel, initrd = find_kernel(root)
    for src, stable in ((kernel, "vmlinuz"), (initrd, "initrd.img")):
        shutil.copyfile(src, dest / src.name)
        # The stable name is the same file: written once.
        (dest / stable).unlink(missing_ok=True)
        os.link(dest / src.name, dest / stable)


def package_list(runner: Runner, root: Path) -> str:
    """package, version, architecture, source, source version: a line each."""
    result = runner.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
                         f"-f={PKGLIST_FORMAT}"], capture=True,
                        what="listing the installed packages failed")
    return result.stdout


def write_pkglist(runner: Runner, root: Path, dest: Path) -> None:
    dest.write_text(package_list(runner, root))
