"""Outputs written from a finished root: tarball, squashfs directory, lists.

Each output is written under a temporary name beside its final place and
renamed only when complete, so a failed build never leaves a half-written
file under the name the user asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.resources import staged_file
from vmdebootstrap.host.run import Runner
from vmdebootstrap.plan import Plan

log = logging.getLogger("vmdebootstrap")

MIN_SQUASHFS = 1024 * 1024  # the live-image guide: smaller means mksquashfs failed
PKGLIST_FORMAT = "${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\n"


def tar_argv(root: Path, output: Path, name: str | None = None,
             epoch: int | None = None) -> list[str]:
    """``name``: the final file name, which picks the compressor (``output``
    may be a temporary name)."""
    name = name or output.name
    compress: list[str] = []
    if name.endswith((".tar.gz", ".tgz")):
        compress = ["--use-compress-program=gzip -n"]
    elif name.endswith((".tar.xz", ".txz")):
        compress = ["--use-compress-program=xz -T0"]
    elif name.endswith(".tar.zst"):
        compress = ["--use-compress-program=zstd -T0 -q"]
    elif name.endswith(".tar.bz2"):
        compress = ["--bzip2"]
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
    argv = ["mksquashfs", str(root), str(output), "-noappend", "-comp", comp,
            "-no-progress"]
    if level:
        argv += ["-Xcompression-level", level]
    if comp == "xz":
        argv += ["-b", "1M"]  # live-build's choice: smaller for little extra time
    argv += ["-processors", str(processors or os.cpu_count() or 1)]
    return argv


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Files written into a hidden dir beside ``final`` move in on success."""
    created = not final.exists()
    final.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".vmdebootstrap-", dir=final))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                final.rmdir()
        raise
    for f in sorted(stage.iterdir()):
        f.chmod(0o644)
        os.replace(f, final / f.name)
    stage.rmdir()


def write_tarball(runner: Runner, root: Path, output: Path, name: str | None = None,
                  epoch: int | None = None) -> None:
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
        raise BuildError(
            f"not enough free space in {dest}: {free // 2**20} MiB free, about "
            f"{need // 2**20} MiB needed for the squashfs; free some space or choose "
            "another output directory")


def write_squashfs(runner: Runner, root: Path, output: Path, compression: str) -> None:
    check_free_space(root, output.parent)
    runner.run(mksquashfs_argv(root, output, compression), label="mksquashfs",
               what="mksquashfs failed")
    size = output.stat().st_size if output.exists() else 0
    if size < MIN_SQUASHFS:
        raise BuildError(
            f"mksquashfs wrote only {size} bytes (under 1 MiB): the squashfs is broken, "
            "probably because the disk is full")


def _kernel_version(name: str, prefix: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name[len(prefix):]))


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


def copy_kernel(root: Path, dest: Path) -> None:
    kernel, initrd = find_kernel(root)
    for src, stable in ((kernel, "vmlinuz"), (initrd, "initrd.img")):
        shutil.copyfile(src, dest / src.name)
        shutil.copyfile(src, dest / stable)


def write_pkglist(runner: Runner, root: Path, dest: Path) -> None:
    result = runner.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
                         f"-f={PKGLIST_FORMAT}"], capture=True,
                        what="listing the installed packages failed")
    with staged_file(dest) as tmp:
        tmp.write_text(result.stdout)


def chown_outputs(paths: list[Path], owner: str | None) -> None:
    if not owner:
        return
    pw = pwd.getpwnam(owner)
    for path in paths:
        os.chown(path, pw.pw_uid, pw.pw_gid)
        if path.is_dir():
            for child in path.iterdir():
                os.chown(child, pw.pw_uid, pw.pw_gid)


def output_paths(plan: Plan) -> list[Path]:
    s = plan.settings
    return [Path(p) for p in (s.image, s.tarball, s.squash, s.iso) if p]
